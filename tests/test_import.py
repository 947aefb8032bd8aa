"""Import of small generated HDF5 files in the MSDN feature-map layout."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io

from zsl_bench.cli.main import main
from zsl_bench.data.importer import import_msdn_hdf5
from zsl_bench.data.store import FeatureStore
from zsl_bench.errors import DataError


def _msdn_file(path: Path, n: int = 10, f: int = 32, side: int = 3, seed: int = 0, **override: object) -> np.ndarray:
    """Write an MSDN-layout file; ``override`` replaces or (value None) drops datasets. Returns feature_map."""
    rng = np.random.default_rng(seed)
    fmap = rng.gamma(1.0, 2.0, size=(n, f, side, side)).astype(np.float32)  # ReLU-like, non-negative
    data: dict[str, object] = {
        "feature_map": fmap, "labels": rng.integers(0, 5, n).astype(np.int64),
        "trainval_loc": np.arange(0, n // 2, dtype=np.uint16),
        "test_seen_loc": np.arange(n // 2, 3 * n // 4, dtype=np.uint16),
        "test_unseen_loc": np.arange(3 * n // 4, n, dtype=np.uint16),
        "att": rng.random((5, 7)), "original_att": rng.random((5, 7)) * 100, "w2v_att": rng.random((7, 300)),
    }
    data.update(override)
    with h5py.File(path, "w") as h5:
        for k, v in data.items():
            if v is not None:
                h5.create_dataset(k, data=v)
    return fmap


def test_import_matches_value_by_value(tmp_path: Path) -> None:
    src = tmp_path / "feature_map_ResNet_101_CUB.hdf5"
    fmap = _msdn_file(src)
    out = import_msdn_hdf5(src, "cub", tmp_path / "root", chunk=3, progress=False)
    assert out == tmp_path / "root" / "CUB" / "features.h5"
    with FeatureStore(out) as st:
        assert (st.num_rows, st.feature_dim, st.num_regions, st.grid_side) == (10, 32, 9, 3)
        assert st.dtype == np.float16
        assert st.provenance["grid"] == [3, 3] and st.provenance["source"] == "real"
        idx = np.arange(10)
        regions = st.read_regions(idx)
        pooled = st.read_pooled(idx)
    want = fmap.reshape(10, 32, 9)
    np.testing.assert_allclose(regions, want, rtol=1e-3, atol=1e-3)  # fp16: 11-bit mantissa
    np.testing.assert_allclose(pooled, want.mean(axis=2), rtol=1e-6)  # pooled kept in float32
    # Regions are (N, F, h·w) in row-major (h, w) order, as the methods' attention expects.
    assert regions[4, 7, 5] == pytest.approx(fmap[4, 7, 1, 2], rel=1e-3)


@pytest.mark.parametrize("override,match", [
    ({"feature_map": None}, r"missing dataset\(s\) \['feature_map'\].*keys present"),
    ({"labels": None}, r"missing dataset\(s\) \['labels'\]"),
    ({"feature_map": np.zeros((10, 32, 9), np.float32)}, r"'feature_map' must be \(N, F, h, h\)"),
    ({"labels": np.zeros(9, np.int64)}, "'labels' has 9 entries but 'feature_map' has 10 rows"),
    ({"labels": np.full(10, -1, np.int64)}, "0-based"),
    ({"test_unseen_loc": np.array([8, 10], np.uint16)}, r"'test_unseen_loc' indexes rows outside \[0, 10\)"),
])
def test_malformed_layout_is_clear(tmp_path: Path, override: dict, match: str) -> None:
    src = tmp_path / "bad.hdf5"
    _msdn_file(src, **override)
    with pytest.raises(DataError, match=match):
        import_msdn_hdf5(src, "cub", tmp_path / "root", progress=False)
    assert not (tmp_path / "root" / "CUB").exists() or not any((tmp_path / "root" / "CUB").iterdir())


def test_nan_found_mid_stream_leaves_nothing(tmp_path: Path) -> None:
    src = tmp_path / "nan.hdf5"
    fmap = np.ones((10, 8, 2, 2), np.float32)
    fmap[7, 3, 1, 0] = np.nan
    _msdn_file(src, feature_map=fmap)
    with pytest.raises(DataError, match="NaN/Inf \\(first at row 7\\)"):
        import_msdn_hdf5(src, "sun", tmp_path / "root", chunk=4, progress=False)
    assert list((tmp_path / "root" / "SUN").iterdir()) == []  # the .tmp store was removed


def test_not_hdf5_and_missing(tmp_path: Path) -> None:
    junk = tmp_path / "junk.hdf5"
    junk.write_text("hello")
    with pytest.raises(DataError, match="not a readable HDF5"):
        import_msdn_hdf5(junk, "cub", tmp_path, progress=False)
    with pytest.raises(DataError, match="no such file"):
        import_msdn_hdf5(tmp_path / "absent.hdf5", "cub", tmp_path, progress=False)


def _release_consistent_file(shared_root: Path, path: Path, permute_labels: bool = False) -> None:
    """A full-height CUB file (11,788 rows, 4 features, 1×1 grid) with the release's labels and locs."""
    with np.load(shared_root / "CUB" / "image_index.npz") as z:
        labels = z["labels"].astype(np.int64)
    if permute_labels:
        labels = np.roll(labels, 1)
    splits = scipy.io.loadmat(shared_root / "CUB" / "att_splits.mat")
    locs = {k: (splits[k].ravel() - 1).astype(np.uint16) for k in ("trainval_loc", "test_seen_loc", "test_unseen_loc")}
    n = len(labels)
    fmap = np.random.default_rng(0).random((n, 4, 1, 1), dtype=np.float32)
    _msdn_file(path, feature_map=fmap, labels=labels, **locs)


def test_checked_against_real_release(shared_root: Path, tmp_path: Path) -> None:
    good = tmp_path / "cub_full.hdf5"
    _release_consistent_file(shared_root, good)
    out = import_msdn_hdf5(good, "cub", shared_root, out=tmp_path / "features.h5", chunk=4096, progress=False)
    with FeatureStore(out) as st:
        assert st.num_rows == 11788
    bad = tmp_path / "cub_rolled.hdf5"
    _release_consistent_file(shared_root, bad, permute_labels=True)
    with pytest.raises(DataError, match=r"'labels' differ from .*image_index\.npz"):
        import_msdn_hdf5(bad, "cub", shared_root, out=tmp_path / "bad.h5", chunk=4096, progress=False)
    assert not (tmp_path / "bad.h5").exists()


def test_small_file_is_not_the_release(shared_root: Path, tmp_path: Path) -> None:
    src = tmp_path / "small.hdf5"
    _msdn_file(src)
    with pytest.raises(DataError, match="10 rows, but .*att_splits.mat indexes 11788 images"):
        import_msdn_hdf5(src, "cub", shared_root, out=tmp_path / "f.h5", progress=False)


def test_cli_import(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "fm.hdf5"
    _msdn_file(src, n=6, f=16, side=2)
    assert main(["data", "import", "awa2", str(src), "--data-root", str(tmp_path / "root")]) == 0
    assert capsys.readouterr().out.strip().endswith("AWA2/features.h5")
    _msdn_file(src, feature_map=None)
    assert main(["data", "import", "awa2", str(src), "--data-root", str(tmp_path / "root2")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("zsl-bench: error:") and "feature_map" in err and "\n" not in err
