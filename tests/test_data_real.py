"""The real metadata of CUB, SUN, AWA2 and FLO (``shared_root``): counts, splits, shapes, honest
validation split sizes (expected values recomputed here from the raw ``.mat``), ``data info/verify``."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from zsl_bench.cli.main import main
from zsl_bench.data.datasets import get_spec
from zsl_bench.data.loader import load_dataset
from zsl_bench.data.zsldata import ZSLData
from zsl_bench.errors import DataError

LABELLED = ("cub", "sun", "awa2")


@pytest.fixture(scope="module")
def loaded(shared_root: Path) -> dict[str, ZSLData]:
    return {name: load_dataset(name, shared_root) for name in (*LABELLED, "flo")}


def _raw(shared_root: Path, dirname: str) -> dict[str, np.ndarray]:
    mat = scipy.io.loadmat(str(shared_root / dirname / "att_splits.mat"))
    return {k: v for k, v in mat.items() if not k.startswith("__")}


@pytest.mark.parametrize("name", LABELLED)
def test_published_counts_and_shapes(name: str, loaded: dict[str, ZSLData]) -> None:
    data, spec = loaded[name], get_spec(name)
    assert data.source == "real" and data.has_labels
    assert data.num_images == spec.images
    assert data.att.shape == (spec.seen + spec.unseen, spec.semantic_dim)  # [K, A]
    assert data.original_att is not None and data.original_att.shape == data.att.shape
    assert data.w2v is not None and data.w2v.shape == (spec.semantic_dim, 300)
    assert data.class_names is not None and len(data.class_names) == data.num_classes
    assert data.attribute_names is not None and len(data.attribute_names) == spec.semantic_dim
    assert (len(data.seen_classes), len(data.unseen_classes)) == (spec.seen, spec.unseen)
    sizes = {s: len(data.splits[s]) for s in ("trainval", "test_seen", "test_unseen")}
    assert sizes == {"trainval": spec.trainval, "test_seen": spec.test_seen, "test_unseen": spec.test_unseen}
    assert data.features is None  # no feature files in the shared metadata


@pytest.mark.parametrize("name", (*LABELLED, "flo"))
def test_final_splits_partition_images(name: str, loaded: dict[str, ZSLData], shared_root: Path) -> None:
    data = loaded[name]
    raw = _raw(shared_root, get_spec(name).dirname)
    allidx = np.concatenate([data.splits[s] for s in ("trainval", "test_seen", "test_unseen")])
    np.testing.assert_array_equal(np.sort(allidx), np.arange(data.num_images))
    for s in ("trainval", "test_seen", "test_unseen"):
        np.testing.assert_array_equal(data.splits[s], np.sort(raw[f"{s}_loc"].ravel().astype(np.int64) - 1))
        assert data.splits[s].dtype == np.int64


@pytest.mark.parametrize("name", LABELLED)
def test_class_sets(name: str, loaded: dict[str, ZSLData], shared_root: Path) -> None:
    data = loaded[name]
    with np.load(shared_root / get_spec(name).dirname / "image_index.npz") as z:
        np.testing.assert_array_equal(data.seen_classes, np.sort(z["seenclasses"]))
        np.testing.assert_array_equal(data.unseen_classes, np.sort(z["unseenclasses"]))
    assert not np.intersect1d(data.seen_classes, data.unseen_classes).size
    np.testing.assert_array_equal(np.unique(data.labels[data.splits["test_seen"]]), data.seen_classes)


@pytest.mark.parametrize("name", LABELLED)
def test_honest_validation_split(name: str, loaded: dict[str, ZSLData], shared_root: Path) -> None:
    """Sizes recomputed from the raw file: train = train_loc − test_seen, val = val_loc − test_seen,
    val_seen = per class floor(0.2 n + 0.5) clipped to [1, n − 1]."""
    data = loaded[name]
    raw = _raw(shared_root, get_spec(name).dirname)
    test_seen = set((raw["test_seen_loc"].ravel().astype(int) - 1).tolist())
    train = sorted(set((raw["train_loc"].ravel().astype(int) - 1).tolist()) - test_seen)
    val = sorted(set((raw["val_loc"].ravel().astype(int) - 1).tolist()) - test_seen)
    assert data.splits["train"].tolist() == train
    assert data.splits["val"].tolist() == val
    assert data.splits["val_unseen"].tolist() == val
    # the published quirk: train_loc ∪ val_loc = trainval ∪ test_seen, so the honest pair is trainval
    assert sorted(train + val) == data.splits["trainval"].tolist()
    counts: dict[int, int] = {}
    for i in train:
        counts[int(data.labels[i])] = counts.get(int(data.labels[i]), 0) + 1
    want_seen = sum(min(max(int(0.2 * n + 0.5), 1), n - 1) for n in counts.values())
    assert len(data.splits["val_seen"]) == want_seen
    assert len(data.splits["val_train"]) == len(train) - want_seen
    assert not set(data.splits["val_seen"].tolist()) & set(data.splits["val_train"].tolist())
    assert sorted(data.splits["val_seen"].tolist() + data.splits["val_train"].tolist()) == train
    assert data.val_seen_classes.tolist() == sorted(counts)
    assert data.val_unseen_classes.tolist() == sorted(set(data.labels[val].tolist()))
    assert not set(data.val_seen_classes.tolist()) & set(data.val_unseen_classes.tolist())
    # every validation-seen class keeps images on both sides
    assert set(data.labels[data.splits["val_seen"]].tolist()) == set(counts)
    assert set(data.labels[data.splits["val_train"]].tolist()) == set(counts)


def test_honest_validation_is_fixed(shared_root: Path, loaded: dict[str, ZSLData]) -> None:
    again = load_dataset("cub", shared_root)
    for split in ("val_train", "val_seen"):
        np.testing.assert_array_equal(again.splits[split], loaded["cub"].splits[split])


def test_expected_split_sizes_cub(loaded: dict[str, ZSLData]) -> None:
    """Absolute numbers for CUB, so a change of the rule shows up in review."""
    sizes = {s: len(v) for s, v in loaded["cub"].splits.items()}
    assert sizes == {"trainval": 7057, "test_seen": 1764, "test_unseen": 2967, "train": 4702, "val": 2355,
                     "val_train": 3760, "val_seen": 942, "val_unseen": 2355}
    assert (len(loaded["cub"].val_seen_classes), len(loaded["cub"].val_unseen_classes)) == (100, 50)


def test_flo_without_labels(loaded: dict[str, ZSLData]) -> None:
    data = loaded["flo"]
    assert not data.has_labels and data.num_images == 8189
    assert data.att.shape == (102, 1024) and data.w2v is None and data.class_names is None
    assert len(data.splits["train"]) + len(data.splits["val"]) == 5631
    assert len(data.splits["val_seen"]) == 0
    with pytest.raises(DataError, match="FLO: per-image labels are unknown"):
        data.require_labels()
    with pytest.raises(DataError, match="FLO: no features"):
        data.require_features("pooled")


def test_cli_info_flo_and_cub(shared_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "info", "flo", "--data-root", str(shared_root)]) == 0
    out = capsys.readouterr().out
    assert "102 (seen/unseen unknown" in out and "1024-d sentence embedding" in out and "word vectors    no" in out
    assert re.search(r"test_unseen\s+1155\n", out)
    assert main(["data", "info", "cub", "--data-root", str(shared_root)]) == 0
    out = capsys.readouterr().out
    assert "200 (150 seen / 50 unseen)" in out and re.search(r"val_seen\s+942\n", out) and "source          real" in out


def test_cli_verify_hashes_match_manifest(shared_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = {}
    for line in (shared_root / "MANIFEST.tsv").read_text().splitlines()[1:]:
        parts = line.split("\t")
        manifest[parts[0]] = parts[2]
    assert main(["data", "verify", "sun", "--data-root", str(shared_root)]) == 0
    out = capsys.readouterr().out
    hashes = [ln.split() for ln in out.splitlines() if ln.startswith("sha256 ")]
    assert len(hashes) == 3  # att_splits.mat, image_index.npz, w2v
    digests = {str(Path(h[2]).relative_to(shared_root)): h[1] for h in hashes}
    assert digests["SUN/att_splits.mat"] == manifest["SUN/att_splits.mat"]
    assert "SUN/att_splits.mat  (matches MANIFEST.tsv)" in out


def test_cli_verify_detects_manifest_mismatch(shared_root: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "SUN").mkdir()
    for fname in ("att_splits.mat", "image_index.npz"):
        (tmp_path / "SUN" / fname).write_bytes((shared_root / "SUN" / fname).read_bytes())
    (tmp_path / "MANIFEST.tsv").write_text("file\tbytes\tsha256\nSUN/att_splits.mat\t1\t" + "0" * 64 + "\n")
    assert main(["data", "info", "sun", "--data-root", str(tmp_path)]) == 0  # info does not hash
    capsys.readouterr()
    assert main(["data", "verify", "sun", "--data-root", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "att_splits.mat: sha256" in err[0] and "differs from MANIFEST.tsv" in err[0]
