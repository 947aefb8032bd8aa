"""Every kind of bad dataset input: a one-line DataError naming the file and field, and through the
CLI an exit code != 0, exactly one line on stderr and no traceback."""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from test_data_formats import PRESET, tiny_arrays, write_tiny

from zsl_bench.cli.main import main
from zsl_bench.data import root
from zsl_bench.data.loader import load_dataset
from zsl_bench.data.readers import read_word_vectors
from zsl_bench.errors import DataError, ZSLError


def _loc(values: np.ndarray) -> np.ndarray:
    return np.asarray(values).astype(np.uint16).reshape(-1, 1)


def _one_based(arr: dict[str, Any], key: str) -> np.ndarray:
    return arr["locs"][key] + 1


def case_zero_based(d: Path, arr: dict[str, Any]) -> None:
    write_tiny(d, arr, test_seen_loc=_loc(arr["locs"]["test_seen_loc"]))  # written without the +1


def case_out_of_range(d: Path, arr: dict[str, Any]) -> None:
    tu = _one_based(arr, "test_unseen_loc")
    tu[0] = 61
    write_tiny(d, arr, test_unseen_loc=_loc(tu))


def case_overlap(d: Path, arr: dict[str, Any]) -> None:
    tv = _one_based(arr, "trainval_loc")
    write_tiny(d, arr, test_seen_loc=_loc(np.concatenate([_one_based(arr, "test_seen_loc"), tv[:1]])))


def case_not_covering(d: Path, arr: dict[str, Any]) -> None:
    write_tiny(d, arr, trainval_loc=_loc(_one_based(arr, "trainval_loc")[1:]))


def case_seen_class_without_test_image(d: Path, arr: dict[str, Any]) -> None:
    # move the two test_seen images of class 0 into trainval
    labels, ts = arr["labels"], arr["locs"]["test_seen_loc"]
    moved = ts[labels[ts] == 0]
    write_tiny(d, arr, test_seen_loc=_loc(np.setdiff1d(ts, moved) + 1),
               trainval_loc=_loc(np.concatenate([arr["locs"]["trainval_loc"], moved]) + 1))


def case_seen_and_unseen(d: Path, arr: dict[str, Any]) -> None:
    # one trainval image of class 0 moved to test_unseen: class 0 becomes both seen and unseen
    tv = arr["locs"]["trainval_loc"]
    first = tv[arr["labels"][tv] == 0][:1]
    write_tiny(d, arr, trainval_loc=_loc(np.setdiff1d(tv, first) + 1),
               test_unseen_loc=_loc(np.concatenate([arr["locs"]["test_unseen_loc"], first]) + 1))


def case_class_without_images(d: Path, arr: dict[str, Any]) -> None:
    arr = dict(arr, names=arr["names"] + ["006.no_images"])
    arr["att"] = np.concatenate([arr["att"], arr["att"][:, :1]], axis=1)
    arr["original_att"] = np.concatenate([arr["original_att"], arr["original_att"][:, :1]], axis=1)
    write_tiny(d, arr)


def case_nan_att(d: Path, arr: dict[str, Any]) -> None:
    att = arr["att"].copy()
    att[2, 3] = np.nan
    write_tiny(d, arr, att=att)


def case_transposed_att(d: Path, arr: dict[str, Any]) -> None:
    write_tiny(d, arr, att=arr["att"].T, original_att=arr["original_att"].T)


def case_missing_key(d: Path, arr: dict[str, Any]) -> None:
    write_tiny(d, arr, drop=("val_loc",))


def case_truncated_mat(d: Path, arr: dict[str, Any]) -> None:
    write_tiny(d, arr)
    raw = (d / "att_splits.mat").read_bytes()
    (d / "att_splits.mat").write_bytes(raw[: len(raw) // 3])


def case_not_matlab(d: Path, arr: dict[str, Any]) -> None:
    write_tiny(d, arr)
    (d / "att_splits.mat").write_text("this is not a MATLAB file\n")


def case_hdf5_wrong_layout(d: Path, arr: dict[str, Any]) -> None:
    write_tiny(d, arr)
    with h5py.File(d / "feature_map_ResNet_101_CUB.hdf5", "w") as h5:
        h5["feature_map"] = np.zeros((60, 16, 4), dtype=np.float32)  # (N, F, R): not MSDN's (N, F, h, w)


def case_features_wrong_rows(d: Path, arr: dict[str, Any]) -> None:
    write_tiny(d, arr)
    with h5py.File(d / "feature_map_ResNet_101_CUB.hdf5", "w") as h5:
        h5["feature_map"] = np.zeros((59, 16, 2, 2), dtype=np.float32)


def case_w2v_wrong_shape(d: Path, arr: dict[str, Any]) -> None:
    write_tiny(d, arr)
    np.save(d / "w2v" / "CUB_attribute.npy", np.ones((7, 4), dtype=np.float32))


def case_train_val_class_overlap(d: Path, arr: dict[str, Any]) -> None:
    tr, va = arr["locs"]["train_loc"], arr["locs"]["val_loc"]
    write_tiny(d, arr, val_loc=_loc(np.concatenate([va, tr[arr["labels"][tr] == 0]]) + 1))


def case_bad_sim_json(d: Path, arr: dict[str, Any]) -> None:
    write_tiny(d, arr)
    (d / "sim.json").write_text("{not json")


def case_labels_not_int(d: Path, arr: dict[str, Any]) -> None:
    write_tiny(d, arr)
    np.savez(d / "image_index.npz", labels=np.full(60, 0.5))


CASES: dict[str, tuple[Callable[[Path, dict[str, Any]], None], str, str]] = {
    # name: (writer, file named in the message, text the message must contain)
    "zero_based": (case_zero_based, "att_splits.mat", "'test_seen_loc' contains index 0"),
    "out_of_range": (case_out_of_range, "att_splits.mat", "'test_unseen_loc' has index 61, out of range 1..60"),
    "overlap": (case_overlap, "att_splits.mat", "'trainval_loc' and 'test_seen_loc' share 1 image"),
    "not_covering": (case_not_covering, "att_splits.mat", "cover 59 of 60 images"),
    "seen_class_no_test": (case_seen_class_without_test_image, "att_splits.mat",
                           "class 0 ('000.class_0') has trainval images but no test_seen image"),
    "seen_and_unseen": (case_seen_and_unseen, "att_splits.mat", "is both seen (trainval) and unseen"),
    "class_without_images": (case_class_without_images, "att_splits.mat", "class 6 ('006.no_images') has no test image"),
    "nan_att": (case_nan_att, "att_splits.mat", "field 'att' has 1 NaN/Inf"),
    "transposed_att": (case_transposed_att, "att_splits.mat", "field 'att' has shape (6, 5), which looks transposed"),
    "missing_key": (case_missing_key, "att_splits.mat", "missing key 'val_loc'"),
    "truncated_mat": (case_truncated_mat, "att_splits.mat", "not a readable MATLAB .mat file"),
    "not_matlab": (case_not_matlab, "att_splits.mat", "not a readable MATLAB .mat file"),
    "hdf5_wrong_layout": (case_hdf5_wrong_layout, "feature_map_ResNet_101_CUB.hdf5",
                          "'feature_map' must be (N, feature_dim, h, w)"),
    "features_wrong_rows": (case_features_wrong_rows, "feature_map_ResNet_101_CUB.hdf5", "holds 59 rows, expected 60"),
    "w2v_wrong_shape": (case_w2v_wrong_shape, "CUB_attribute.npy", "expected (5, D)"),
    "train_val_overlap": (case_train_val_class_overlap, "att_splits.mat", "in both 'train_loc' and 'val_loc'"),
    "bad_sim_json": (case_bad_sim_json, "sim.json", "not valid JSON"),
    "labels_not_int": (case_labels_not_int, "image_index.npz", "'labels' must hold integer indices"),
}


@pytest.fixture()
def sim_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ZSL_BENCH_CACHE", str(tmp_path / "cache"))
    return root.sim_root(PRESET, 0) / "CUB"


def _assert_one_line_error(argv: list[str], capsys: pytest.CaptureFixture[str], *needles: str) -> str:
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err and lines[0].startswith("zsl-bench: error: ")
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_dataset_file(case: str, sim_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    writer, fname, needle = CASES[case]
    writer(sim_dir, tiny_arrays())
    with pytest.raises(DataError) as info:
        load_dataset("cub", sim_preset=PRESET)
    msg = str(info.value)
    assert "\n" not in msg and fname in msg and needle in msg, msg
    _assert_one_line_error(["data", "info", "cub", "--sim", PRESET], capsys, fname, needle)
    _assert_one_line_error(["data", "verify", "cub", "--sim", PRESET], capsys, fname, needle)


def test_nan_in_features_found_by_verify(sim_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    arr = tiny_arrays()
    arr["features"][37, 3, 1, 0] = np.inf
    write_tiny(sim_dir, arr, features="msdn")
    data = load_dataset("cub", sim_preset=PRESET)  # not scanned at load: that reads every row
    assert data.features is not None
    data.features.close()
    _assert_one_line_error(["data", "verify", "cub", "--sim", PRESET, "--batch-size", "16"], capsys,
                           "feature_map_ResNet_101_CUB.hdf5", "NaN/Inf in regions features of row 37")


def test_published_counts_checked_for_real_data(shared_root: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """Real CUB metadata with its last test_unseen image dropped from every file."""
    src = shared_root / "CUB"
    dst = tmp_path / "CUB"
    dst.mkdir()
    import scipy.io

    mat = {k: v for k, v in scipy.io.loadmat(str(src / "att_splits.mat")).items() if not k.startswith("__")}
    last = int(mat["test_unseen_loc"].max())
    assert last == 11788  # the last image is a test_unseen image in the published file
    for key in ("test_unseen_loc", "train_loc", "val_loc"):
        mat[key] = mat[key][mat[key] != last].reshape(-1, 1)
    scipy.io.savemat(str(dst / "att_splits.mat"), mat)
    with np.load(src / "image_index.npz") as z:
        np.savez(dst / "image_index.npz", labels=z["labels"][:-1], image_files=z["image_files"][:-1])
    with pytest.raises(DataError, match=r"att_splits.mat: counts differ from the published CUB: images 11787 "
                                        r"\(published 11788\), test_unseen 2966 \(published 2967\)"):
        load_dataset("cub", tmp_path)
    _assert_one_line_error(["data", "info", "cub", "--data-root", str(tmp_path)], capsys, "counts differ")


def test_missing_data_root_and_unknown_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(DataError, match="CUB/att_splits.mat: file not found; point --data-root"):
        load_dataset("cub", tmp_path / "nowhere")
    _assert_one_line_error(["data", "info", "cub", "--data-root", str(tmp_path / "nowhere")], capsys,
                           "att_splits.mat: file not found")
    with pytest.raises(ZSLError, match="Did you mean cub"):
        load_dataset("cubb", tmp_path)
    _assert_one_line_error(["data", "verify", "awa", "--data-root", str(tmp_path)], capsys,
                           "unknown dataset 'awa'", "awa2")


class _RunsCode:
    """A pickle payload that would call os.system on load (the classic pickle exploit)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


def test_pickle_that_runs_code_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          sim_dir: Path) -> None:
    marker = tmp_path / "pwned"
    evil = pickle.dumps(_RunsCode(marker), protocol=3)
    (tmp_path / "evil.pkl").write_bytes(evil)
    with pytest.raises(DataError, match=r"evil.pkl: pickle refused: only a plain numpy array .*posix.system"):
        read_word_vectors(tmp_path / "evil.pkl")
    assert not marker.exists()
    # the same through a dataset's w2v file, via the CLI
    write_tiny(sim_dir)
    (sim_dir / "w2v" / "CUB_attribute.npy").unlink()
    (sim_dir / "w2v" / "CUB_attribute.pkl").write_bytes(evil)
    _assert_one_line_error(["data", "info", "cub", "--sim", PRESET], capsys, "CUB_attribute.pkl", "pickle refused")
    assert not marker.exists()
    # a pickled object array is not a plain numeric array either
    (tmp_path / "obj.pkl").write_bytes(pickle.dumps(np.array([{"a": 1}], dtype=object)))
    with pytest.raises(DataError, match="obj.pkl"):
        read_word_vectors(tmp_path / "obj.pkl")


def test_res101_transposed_features(tmp_path: Path) -> None:
    import scipy.io

    from zsl_bench.data.readers import read_res101

    scipy.io.savemat(str(tmp_path / "res101.mat"), {"features": np.ones((60, 16)),
                                                    "labels": np.arange(1, 61).reshape(-1, 1)})
    with pytest.raises(DataError, match=r"res101.mat: field 'features' has shape \(60, 16\).*looks transposed"):
        read_res101(tmp_path / "res101.mat")
    scipy.io.savemat(str(tmp_path / "res101.mat"), {"features": np.ones((16, 60)),
                                                    "labels": np.arange(0, 60).reshape(-1, 1)})
    with pytest.raises(DataError, match="res101.mat: field 'labels' contains index 0"):
        read_res101(tmp_path / "res101.mat")


def test_failed_writer_leaves_nothing(tmp_path: Path) -> None:
    from zsl_bench.data.store import StoreWriter

    with pytest.raises(DataError, match="NaN/Inf in region features"):
        with StoreWriter(tmp_path / "features.h5", 4, 3, 2, {}) as w:
            w.write(0, regions=np.full((4, 3, 2), np.nan, dtype=np.float32))
    assert list(tmp_path.iterdir()) == []

