"""Small generated files in the published formats (att_splits.mat, res101.mat, MSDN HDF5, w2v .pkl),
the simulated-data path of ``load_dataset``, and ``data info`` / ``data verify`` on them."""

from __future__ import annotations

import json
import pickle
import sys
import types
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import scipy.io

from zsl_bench.cli.main import main
from zsl_bench.data import root
from zsl_bench.data.loader import load_dataset, load_from_dir
from zsl_bench.data.readers import read_att_splits, read_word_vectors
from zsl_bench.data.store import FeatureStore, MemoryStore, StoreWriter

K, SEEN, A, PER_CLASS, F, HW = 6, 4, 5, 10, 16, 2
N = K * PER_CLASS
PRESET = "tinytest"


def tiny_arrays(seed: int = 0) -> dict[str, Any]:
    """A consistent tiny dataset: 6 classes (0-3 seen, 4-5 unseen), 10 images each, shuffled rows.

    Seen classes: 2 test_seen + 8 trainval images each. Train classes 0-2, validation class 3;
    ``train_loc``/``val_loc`` include the test_seen images (the published quirk). 0-based here.
    """
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.repeat(np.arange(K), PER_CLASS))
    trainval, test_seen, test_unseen, train, val = [], [], [], [], []
    for c in range(K):
        rows = np.flatnonzero(labels == c)
        if c < SEEN:
            test_seen += list(rows[:2])
            trainval += list(rows[2:])
            (train if c < 3 else val).extend(rows)
        else:
            test_unseen += list(rows)
    att = rng.random((A, K)) + 0.1  # [A, K]
    return {"labels": labels.astype(np.int64), "att": att / np.linalg.norm(att, axis=0),
            "original_att": att * 100, "names": [f"{c:03d}.class_{c}" for c in range(K)],
            "locs": {"trainval_loc": np.array(trainval), "test_seen_loc": np.array(test_seen),
                     "test_unseen_loc": np.array(test_unseen), "train_loc": np.array(train),
                     "val_loc": np.array(val)},
            "features": rng.random((N, F, HW, HW)).astype(np.float32)}  # [N, F, h, w]


def write_att_splits(path: Path, arr: dict[str, Any], *, drop: tuple[str, ...] = (), **override: Any) -> None:
    mat: dict[str, Any] = {"att": arr["att"], "original_att": arr["original_att"],
                           "allclasses_names": np.array([[np.array([n])] for n in arr["names"]], dtype=object)}
    mat.update({k: (v + 1).astype(np.uint16).reshape(-1, 1) for k, v in arr["locs"].items()})  # 1-based
    mat.update(override)
    for key in drop:
        mat.pop(key)
    scipy.io.savemat(str(path), mat)


def write_tiny(ddir: Path, arr: dict[str, Any] | None = None, *, features: str = "none", index: bool = True,
               sim_meta: bool = True, **att_override: Any) -> dict[str, Any]:
    """Write the tiny dataset into ``ddir`` in the published formats; ``features`` picks the file."""
    arr = arr or tiny_arrays()
    ddir.mkdir(parents=True, exist_ok=True)
    write_att_splits(ddir / "att_splits.mat", arr, **att_override)
    if index:
        np.savez(ddir / "image_index.npz", labels=arr["labels"],
                 image_files=np.array([f"img_{i:03d}.jpg" for i in range(N)]))
    (ddir / "w2v").mkdir(exist_ok=True)
    np.save(ddir / "w2v" / f"{ddir.name}_attribute.npy", np.ones((A, 7), dtype=np.float32))
    if sim_meta:
        (ddir / "sim.json").write_text(json.dumps({"generator_version": "test-1", "seed": 0, "preset": PRESET,
                                                   "parameters": {"classes": K}}))
    feats = arr["features"]
    if features in ("res101", "all"):
        scipy.io.savemat(str(ddir / "res101.mat"), {
            "features": feats.mean(axis=(2, 3)).T.astype(np.float64),  # [F, N]
            "labels": (arr["labels"] + 1).reshape(-1, 1).astype(np.float64),  # 1-based, as published
            "image_files": np.array([[np.array([f"img_{i:03d}.jpg"])] for i in range(N)], dtype=object)})
    if features in ("msdn", "all"):
        with h5py.File(ddir / f"feature_map_ResNet_101_{ddir.name}.hdf5", "w") as h5:
            h5["feature_map"] = feats
            h5["labels"] = arr["labels"]
            for key in ("trainval_loc", "test_seen_loc", "test_unseen_loc"):
                h5[key] = arr["locs"][key].astype(np.uint16)  # 0-based in MSDN files
            h5["att"] = arr["att"].T
            h5["original_att"] = arr["original_att"].T
            h5["w2v_att"] = np.ones((A, 300), dtype=np.float32)
    if features in ("store", "all"):
        with StoreWriter(ddir / "features.h5", N, F, HW * HW, {"source": "simulated"}) as w:
            w.write(0, regions=feats.reshape(N, F, HW * HW))
    return arr


@pytest.fixture()
def sim_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private cache so ``load_dataset(..., sim_preset=PRESET)`` reads ``<cache>/sim/<PRESET>-seed0/CUB``."""
    monkeypatch.setenv("ZSL_BENCH_CACHE", str(tmp_path / "cache"))
    return root.sim_root(PRESET, 0) / "CUB"


# ------------------------------------------------------------------------------------ readers
def test_att_splits_locs_become_zero_based(tmp_path: Path) -> None:
    arr = tiny_arrays()
    write_att_splits(tmp_path / "att_splits.mat", arr)
    got = read_att_splits(tmp_path / "att_splits.mat")
    for key, want in arr["locs"].items():
        np.testing.assert_array_equal(got.locs[key], want)
        assert got.locs[key].dtype == np.int64
    assert got.class_names == arr["names"]
    assert got.att.shape == (A, K)


def test_word_vectors_pickle_of_plain_array(tmp_path: Path) -> None:
    vec = np.arange(12, dtype=np.float64).reshape(4, 3)
    (tmp_path / "w.pkl").write_bytes(pickle.dumps(vec, protocol=3))
    np.save(tmp_path / "w.npy", vec)
    np.testing.assert_array_equal(read_word_vectors(tmp_path / "w.pkl"), vec)
    np.testing.assert_array_equal(read_word_vectors(tmp_path / "w.npy"), vec)


# ------------------------------------------------------------------------------------ loader
def test_simulated_without_features(sim_cache: Path) -> None:
    arr = write_tiny(sim_cache)
    data = load_dataset("cub", sim_preset=PRESET)
    assert data.source == "simulated" and data.is_simulated
    assert data.provenance["generator_version"] == "test-1" and data.provenance["preset"] == PRESET
    assert data.features is None
    np.testing.assert_array_equal(data.labels, arr["labels"])
    np.testing.assert_array_equal(data.seen_classes, np.arange(SEEN))
    np.testing.assert_array_equal(data.unseen_classes, np.arange(SEEN, K))
    np.testing.assert_allclose(data.att, arr["att"].T, rtol=1e-6)  # [K, A]
    assert data.w2v is not None and data.w2v.shape == (A, 7)
    # honest validation: test_seen removed, classes 0-2 play seen, class 3 plays unseen
    ts = set(arr["locs"]["test_seen_loc"].tolist())
    assert not ts & set(data.splits["train"].tolist()) and not ts & set(data.splits["val"].tolist())
    assert len(data.splits["train"]) == 3 * 8 and len(data.splits["val"]) == 8
    np.testing.assert_array_equal(data.val_seen_classes, [0, 1, 2])
    np.testing.assert_array_equal(data.val_unseen_classes, [3])
    for c in range(3):  # 20% of 8 -> 2 per class, stratified
        assert (data.labels[data.splits["val_seen"]] == c).sum() == 2
    assert not set(data.splits["val_seen"].tolist()) & set(data.splits["val_train"].tolist())
    np.testing.assert_array_equal(np.sort(np.concatenate([data.splits["val_seen"], data.splits["val_train"]])),
                                  data.splits["train"])
    np.testing.assert_array_equal(data.splits["val_unseen"], data.splits["val"])
    with pytest.raises(Exception, match="no features"):
        data.require_features("pooled")


def test_res101_features_and_labels(tmp_path: Path) -> None:
    arr = write_tiny(tmp_path / "CUB", features="res101", index=False)
    data = load_from_dir("cub", tmp_path / "CUB", source="simulated")
    np.testing.assert_array_equal(data.labels, arr["labels"])  # 1-based in the file
    assert data.image_files is not None and data.image_files[3] == "img_003.jpg"
    store = data.require_features("pooled")
    assert isinstance(store, MemoryStore) and not store.has_regions
    idx = np.array([5, 1, 5, 40])
    np.testing.assert_allclose(store.read_pooled(idx), arr["features"].mean(axis=(2, 3))[idx], rtol=1e-6)
    with pytest.raises(Exception, match="region features"):
        data.require_features("regions")


def test_msdn_hdf5_is_a_store_handle(tmp_path: Path) -> None:
    arr = write_tiny(tmp_path / "CUB", features="msdn", index=False)
    data = load_from_dir("cub", tmp_path / "CUB", source="simulated")
    np.testing.assert_array_equal(data.labels, arr["labels"])
    store = data.require_features("regions")
    assert isinstance(store, FeatureStore) and store.num_regions == HW * HW and store.grid_side == HW
    idx = np.array([7, 2, 7, 3, 59])  # unsorted, repeated, contiguous run 2-3
    want = arr["features"].reshape(N, F, HW * HW)[idx]
    np.testing.assert_array_equal(store.read_regions(idx), want)
    np.testing.assert_allclose(store.read_pooled(idx), want.mean(axis=2), rtol=1e-6)
    store.close()


def test_store_preferred_over_msdn_over_res101(tmp_path: Path) -> None:
    write_tiny(tmp_path / "CUB", features="all")
    data = load_from_dir("cub", tmp_path / "CUB", source="simulated")
    assert data.features is not None and data.features.path.name == "features.h5"
    assert data.features.dtype == np.float16
    data.features.close()
    (tmp_path / "CUB" / "features.h5").unlink()
    data = load_from_dir("cub", tmp_path / "CUB", source="simulated")
    assert data.features is not None and data.features.path.name.startswith("feature_map_ResNet_101")
    data.features.close()


def test_missing_sim_files_call_the_generator(sim_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, str, int]] = []

    def generate(name: str, preset: str, seed: int = 0, data_root: object = None) -> Path:
        calls.append((name, preset, seed))
        write_tiny(sim_cache)
        return sim_cache

    fake = types.ModuleType("zsl_bench.data.sim")
    fake.generate = generate  # type: ignore[attr-defined]
    fake.dataset_semantics = lambda ddir, meta: "generated"  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "zsl_bench.data.sim", fake)
    monkeypatch.setattr("zsl_bench.data.sim", fake, raising=False)
    data = load_dataset("cub", sim_preset=PRESET)
    assert calls == [("cub", PRESET, 0)] and data.source == "simulated"
    load_dataset("cub", sim_preset=PRESET)  # now present: not generated again
    assert len(calls) == 1


# ------------------------------------------------------------------------------------ CLI
def test_cli_info_and_verify_on_simulated(sim_cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_tiny(sim_cache, features="store")
    assert main(["data", "info", "cub", "--sim", PRESET]) == 0
    out = capsys.readouterr().out
    assert "simulated" in out and "6 (4 seen / 2 unseen)" in out and "features.h5: 60 × 16, 4 regions" in out
    assert main(["data", "verify", "cub", "--sim", PRESET, "--batch-size", "7"]) == 0
    out = capsys.readouterr().out
    assert out.count("sha256 ") == 4  # att_splits, image_index, features, w2v
    assert "60 rows scanned, no NaN/Inf" in out and out.rstrip().endswith("OK")


def test_real_generator_output_loads(shared_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Contract with zsl_bench.data.sim: its files are read by this loader, labelled simulated."""
    monkeypatch.setenv("ZSL_BENCH_CACHE", str(tmp_path / "cache"))
    data = load_dataset("sun", shared_root, sim_preset="tiny", sim_seed=1)
    assert data.is_simulated and data.has_labels and data.provenance["seed"] == 1
    assert data.provenance["dir"] == str(root.sim_root("tiny", 1) / "SUN")
    store = data.require_features("regions")
    block = store.read_regions(data.splits["val_seen"][:5])  # [B, F, R]
    assert block.shape[0] == 5 and np.isfinite(block).all()
    store.close()
