"""The simulated benchmark generator (``zsl_bench.data.sim``) and ``zsl-bench data sim``."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io

from zsl_bench.cli.main import main as cli_main
from zsl_bench.data.sim import DEFAULT_GENERATOR, GENERATORS, generate
from zsl_bench.errors import ConfigError, DataError

GENERATOR_VERSION = GENERATORS[DEFAULT_GENERATOR]  # the default generator's version string

ARRAY_FILES = ("image_index.npz", "ground_truth.npz")


def _digest(ddir: Path) -> dict[str, str]:
    """sha256 of every array the generator writes (file bytes may hold timestamps; arrays not)."""
    out: dict[str, str] = {}
    for fname in ARRAY_FILES:
        with np.load(ddir / fname, allow_pickle=False) as z:
            for k in z.files:
                out[f"{fname}:{k}"] = hashlib.sha256(np.ascontiguousarray(z[k]).tobytes()).hexdigest()
    mat = scipy.io.loadmat(ddir / "att_splits.mat")
    for k in ("att", "original_att", "trainval_loc", "test_seen_loc", "test_unseen_loc", "train_loc", "val_loc"):
        if k in mat:
            out[f"mat:{k}"] = hashlib.sha256(np.ascontiguousarray(mat[k]).tobytes()).hexdigest()
    with h5py.File(ddir / "features.h5", "r") as h5:
        out["regions"] = hashlib.sha256(h5["regions"][()].tobytes()).hexdigest()
    return out


def _mat_splits(ddir: Path) -> dict[str, np.ndarray]:
    mat = scipy.io.loadmat(ddir / "att_splits.mat")
    return {k: mat[f"{k}_loc"].ravel().astype(np.int64) - 1
            for k in ("trainval", "test_seen", "test_unseen", "train", "val")}


@pytest.fixture(scope="module")
def tiny_cub(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate("cub", "tiny", seed=0, out_root=tmp_path_factory.mktemp("sim"))


def test_tiny_is_deterministic_and_seed_dependent(tmp_path: Path, tiny_cub: Path) -> None:
    again = generate("cub", "tiny", seed=0, out_root=tmp_path / "a")
    other = generate("cub", "tiny", seed=1, out_root=tmp_path / "b")
    assert _digest(again) == _digest(tiny_cub)
    assert _digest(other)["regions"] != _digest(tiny_cub)["regions"]


def test_tiny_files_and_shapes(tiny_cub: Path) -> None:
    mat = scipy.io.loadmat(tiny_cub / "att_splits.mat")
    att = mat["att"]  # [A, K]
    assert att.shape == (12, 8)
    np.testing.assert_allclose(np.linalg.norm(att, axis=0), 1.0, rtol=1e-6)
    assert mat["original_att"].shape == (12, 8) and mat["allclasses_names"].shape == (8, 1)
    assert mat["trainval_loc"].dtype == np.uint16 and mat["trainval_loc"].min() >= 1
    idx = np.load(tiny_cub / "image_index.npz", allow_pickle=False)
    n = len(idx["labels"])
    assert n == 160 and idx["labels"].dtype == np.int64
    assert str(idx["image_files"][3]) == "sim/cub/000003.jpg"
    assert len(idx["seenclasses"]) == 5 and len(idx["unseenclasses"]) == 3
    assert np.load(tiny_cub / "w2v" / "CUB_attribute.npy").shape == (12, 300)
    with h5py.File(tiny_cub / "features.h5", "r") as h5:
        regions = h5["regions"]
        assert regions.shape == (n, 32, 16) and regions.dtype == np.float16
        assert regions.chunks is not None
        prov = json.loads(h5.attrs["provenance"])
        feats = regions[()]
    assert prov["source"] == "simulated" and prov["generator"] == GENERATOR_VERSION
    assert prov["seed"] == 0 and prov["preset"] == "tiny" and "rho" in prov["parameters"]
    assert np.isfinite(feats).all() and feats.min() >= 0 and (feats > 0).mean() > 0.2
    meta = json.loads((tiny_cub / "sim.json").read_text())
    assert meta["real_semantics"] is False and meta["source"] == "simulated"
    assert not any(p.name.endswith(".tmp") for p in tiny_cub.parent.iterdir())


def test_tiny_splits_valid(tiny_cub: Path) -> None:
    sp = _mat_splits(tiny_cub)
    idx = np.load(tiny_cub / "image_index.npz", allow_pickle=False)
    labels = idx["labels"]
    final = np.concatenate([sp["trainval"], sp["test_seen"], sp["test_unseen"]])
    assert np.array_equal(np.sort(final), np.arange(len(labels)))  # disjoint and covering
    for key in ("trainval", "test_seen", "test_unseen"):
        np.testing.assert_array_equal(idx[f"{key}_loc"], sp[key])
    seen, unseen = idx["seenclasses"], idx["unseenclasses"]
    assert not set(seen) & set(unseen)
    np.testing.assert_array_equal(np.unique(labels[sp["trainval"]]), seen)
    np.testing.assert_array_equal(np.unique(labels[sp["test_seen"]]), seen)
    np.testing.assert_array_equal(np.unique(labels[sp["test_unseen"]]), unseen)
    # The published validation quirk: train ∪ val = trainval ∪ test_seen, class-disjoint.
    np.testing.assert_array_equal(np.union1d(sp["train"], sp["val"]), np.union1d(sp["trainval"], sp["test_seen"]))
    assert not set(labels[sp["train"]]) & set(labels[sp["val"]])
    assert len(np.unique(labels[sp["val"]])) == 2


def test_ground_truth_consistent(tiny_cub: Path) -> None:
    gt = np.load(tiny_cub / "ground_truth.npz", allow_pickle=False)
    n, a = 160, 12
    side = int(gt["grid_side"])
    g = len(gt["group_names"])
    assert side == 4 and gt["centres"].shape == (n, g, 2) and gt["visible"].shape == (n, g)
    assert gt["att_group"].shape == (a,) and set(gt["att_group"]) == set(range(g))
    assert gt["centres"].min() >= 0 and gt["centres"].max() <= side - 1
    assert 0.5 < gt["visible"].mean() < 1.0  # some occlusion, mostly visible
    # Evidence is localised: regions near a visible part centre are stronger than far ones.
    with h5py.File(tiny_cub / "features.h5", "r") as h5:
        x = h5["regions"][()].astype(np.float32).sum(axis=1)  # [N, R]
    yy, xx = np.divmod(np.arange(side * side), side)
    near, far = [], []
    for i in range(n):
        for c, v in zip(gt["centres"][i], gt["visible"][i]):
            if v:
                d = np.hypot(yy - c[0], xx - c[1])
                near.append(x[i, d.argmin()])
                far.append(x[i, d.argmax()])
    assert np.mean(near) > 1.2 * np.mean(far)


def test_flo_shape_without_word_vectors(tmp_path: Path) -> None:
    ddir = generate("flo", "tiny", out_root=tmp_path)
    assert not (ddir / "w2v").exists()
    mat = scipy.io.loadmat(ddir / "att_splits.mat")
    assert "allclasses_names" not in mat and "original_att" not in mat and "att" in mat


def test_small_uses_real_cub_semantics(tmp_path: Path, shared_root: Path) -> None:
    # Fewer images than the preset (test speed); semantics and class split must be the real ones.
    ddir = generate("cub", "small", data_root=shared_root, out_root=tmp_path,
                    images_per_class=2, max_images=400, min_images_per_class=2, feature_dim=8)
    real = scipy.io.loadmat(shared_root / "CUB" / "att_splits.mat")
    ours = scipy.io.loadmat(ddir / "att_splits.mat")
    np.testing.assert_array_equal(ours["att"], real["att"])
    np.testing.assert_array_equal(ours["original_att"], real["original_att"])
    real_idx = np.load(shared_root / "CUB" / "image_index.npz", allow_pickle=False)
    idx = np.load(ddir / "image_index.npz", allow_pickle=False)
    np.testing.assert_array_equal(idx["unseenclasses"], np.sort(real_idx["unseenclasses"]))
    real_val = np.unique(real_idx["labels"][real["val_loc"].ravel() - 1])
    np.testing.assert_array_equal(np.unique(idx["labels"][ours["val_loc"].ravel() - 1]), real_val)
    np.testing.assert_array_equal(np.load(ddir / "w2v" / "CUB_attribute.npy"),
                                  np.load(shared_root / "CUB" / "w2v" / "CUB_attribute.npy"))
    gt = np.load(ddir / "ground_truth.npz", allow_pickle=False)
    assert len(gt["group_names"]) == 28 and str(gt["group_names"][0]) == "has_bill_shape"
    assert json.loads((ddir / "sim.json").read_text())["real_semantics"] is True


def _eszsl_zsl_accuracy(ddir: Path) -> tuple[float, float]:
    mat = scipy.io.loadmat(ddir / "att_splits.mat")
    labels = np.load(ddir / "image_index.npz")["labels"]
    sem = mat["att"].T  # [K, A]
    sp = _mat_splits(ddir)
    with h5py.File(ddir / "features.h5", "r") as h5:
        x = h5["regions"][()].astype(np.float64).mean(axis=2)  # [N, F]
    tv, tu = sp["trainval"], sp["test_unseen"]
    seen, unseen = np.unique(labels[tv]), np.unique(labels[tu])
    y = -np.ones((len(tv), len(seen)))
    y[np.arange(len(tv)), np.searchsorted(seen, labels[tv])] = 1
    s = sem[seen]
    v = np.linalg.solve(x[tv].T @ x[tv] + 0.1 * np.eye(x.shape[1]), x[tv].T @ y @ s)
    v = v @ np.linalg.inv(s.T @ s + 0.1 * np.eye(s.shape[1]))
    pred = unseen[np.argmax(x[tu] @ v @ sem[unseen].T, axis=1)]
    acc = np.mean([np.mean(pred[labels[tu] == c] == c) for c in unseen])
    return float(acc), 1.0 / len(unseen)


def test_pooled_eszsl_transfers_to_unseen(tiny_cub: Path) -> None:
    acc, chance = _eszsl_zsl_accuracy(tiny_cub)
    assert acc > chance + 0.25, (acc, chance)


def test_context_confounder(tmp_path: Path) -> None:
    # v1's confounder (one context per seen class, lost at test time); v2's: tests/test_sim_v2.py
    def own_context_rate(rho: float) -> tuple[float, float]:
        ddir = generate("awa2", "tiny", out_root=tmp_path / f"rho{rho}", rho=rho, generator="1.2",
                        images_per_class=60, max_images=480, min_images_per_class=60)
        gt = np.load(ddir / "ground_truth.npz")
        idx = np.load(ddir / "image_index.npz")
        seen, labels = idx["seenclasses"], gt["labels"]
        own = np.full(labels.max() + 1, -1)
        own[seen] = np.arange(len(seen))
        tv, ts = idx["trainval_loc"], idx["test_seen_loc"]
        return (float(np.mean(gt["context"][tv] == own[labels[tv]])),
                float(np.mean(gt["context"][ts] == own[labels[ts]])))

    chance = 1 / 5
    train0, _ = own_context_rate(0.0)
    train9, test9 = own_context_rate(0.9)
    assert abs(train0 - chance) < 0.1  # no confounder: context independent of class
    assert train9 > 0.85  # confounder in training ...
    assert test9 < 0.45  # ... but not at test time


def test_bad_inputs_raise_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="preset"):
        generate("cub", "huge", out_root=tmp_path)
    with pytest.raises(ConfigError, match="rho"):
        generate("cub", "tiny", out_root=tmp_path, rho=1.5)
    with pytest.raises(ConfigError, match="unknown sim parameter"):
        generate("cub", "tiny", out_root=tmp_path, noise=1.0)
    bad = tmp_path / "bad" / "CUB"
    bad.mkdir(parents=True)
    (bad / "att_splits.mat").write_text("not a mat file")
    with pytest.raises(DataError, match="att_splits.mat"):
        generate("cub", "small", data_root=tmp_path / "bad", out_root=tmp_path / "out")
    assert not (tmp_path / "out" / "CUB").exists()


def test_cli_generates_then_reports_cached(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["data", "sim", "sun", "--preset", "tiny", "--seed", "2", "--out", str(tmp_path)]
    assert cli_main(argv) == 0
    assert "generated" in capsys.readouterr().out
    assert cli_main(argv) == 0
    assert "cached" in capsys.readouterr().out
    assert cli_main(argv + ["--force"]) == 0
    assert "generated" in capsys.readouterr().out
    assert cli_main(["data", "sim", "cub", "--preset", "huge", "--out", str(tmp_path)]) == 2
    assert "--preset" in capsys.readouterr().err


def _generate_in_child(out_root: str, queue: multiprocessing.Queue[str]) -> None:
    try:
        ddir = generate("awa2", "tiny", seed=0, out_root=out_root)
        with h5py.File(ddir / "features.h5", "r") as h5:  # readable while the other one finishes
            queue.put(f"ok {h5['regions'].shape[0]}")
    except Exception as exc:  # reported to the parent, which asserts on it
        queue.put(f"error {exc!r}")


def test_concurrent_generation_is_safe(tmp_path: Path) -> None:
    # Two processes generating the same dataset at once: one generates, the other waits on the
    # lock and then uses the cached copy; both read complete features.
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_generate_in_child, args=(str(tmp_path), queue)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    results = sorted(queue.get(timeout=5) for _ in procs)
    assert results == ["ok 160", "ok 160"], results
    assert all(p.exitcode == 0 for p in procs)
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp") or ".old-" in p.name]
    assert _digest(tmp_path / "AWA2") == _digest(generate("awa2", "tiny", seed=0, out_root=tmp_path / "ref"))


def test_stale_cache_is_regenerated_foreign_dir_is_not(tmp_path: Path) -> None:
    ddir = generate("cub", "tiny", seed=0, out_root=tmp_path)
    meta = json.loads((ddir / "sim.json").read_text())
    (ddir / "sim.json").write_text(json.dumps({**meta, "generator": "zsl-bench-sim/0.0"}))
    again = generate("cub", "tiny", seed=0, out_root=tmp_path)  # older version: replaced
    assert json.loads((again / "sim.json").read_text())["generator"] == GENERATOR_VERSION
    foreign = tmp_path / "other" / "CUB"
    foreign.mkdir(parents=True)
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match="not a simulated dataset"):
        generate("cub", "tiny", seed=0, out_root=tmp_path / "other")
    assert (foreign / "notes.txt").read_text() == "mine"
