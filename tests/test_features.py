"""Which features a method is fed (res101.mat for pooled methods, the paper's image size for region
methods), the ``features`` / ``precision`` columns of every row, results files written before those
columns, and ``run --preset paper``. Small synthetic .mat / HDF5 files in tmp dirs only."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_data_formats import HW, F, N, tiny_arrays, write_tiny

from zsl_bench.cli.main import main
from zsl_bench.data import features as FS
from zsl_bench.data import loader
from zsl_bench.data.loader import load_from_dir
from zsl_bench.data.store import StoreWriter
from zsl_bench.errors import DataError
from zsl_bench.results import ADDED_COLUMNS, COLUMNS, LEGACY_HEADER, LEGACY_HEADERS, append_rows, read_rows

R = HW * HW


def write_store(path: Path, regions: np.ndarray, size: int | None, **prov: Any) -> None:
    """A store as ``data extract`` writes it (provenance with the image size), regions [N, F, R]."""
    p = {"source": "real", "image_size": size, "grid": [HW, HW], "weights": "test", **prov}
    if size is None:
        p.pop("image_size")
    with StoreWriter(path, len(regions), regions.shape[1], regions.shape[2], p, with_pooled=True) as w:
        w.write(0, regions=regions)


@pytest.fixture()
def ddir(tmp_path: Path) -> Path:
    """A tiny CUB directory: res101.mat (pooled), features.h5 (448 px) and features-224px.h5."""
    d = tmp_path / "CUB"
    arr = write_tiny(d, features="res101", sim_meta=False)
    x = arr["features"].reshape(N, F, R)
    write_store(d / "features.h5", x, 448)
    write_store(d / "features-224px.h5", x + 1.0, 224)
    return d


def load(d: Path) -> Any:
    return load_from_dir("cub", d, source="simulated")  # "simulated": no published-count check


def test_pooled_methods_get_res101_regions_methods_their_paper_size(ddir: Path) -> None:
    data = load(ddir)
    assert [s.name for s in data.feature_sets] == ["store", "store-224px", "xlsa17"]
    assert data.features.path.name == "features.h5"  # data info / verify: the store, as before
    src, label = data.choose_features("pooled")
    assert label == "xlsa17 res101.mat (224 px, pooled)"
    np.testing.assert_allclose(src.read_pooled(np.arange(N)), tiny_arrays()["features"].mean(axis=(2, 3)), rtol=1e-6)
    src, label = data.choose_features("regions")  # MSDN, TransZero: 448 px
    assert label == f"regions 448 px R={R} (extracted, features.h5)" and src.path.name == "features.h5"
    src, label = data.choose_features("regions", 224, paper=True)  # DAZLE: 7x7 maps at 224 px
    assert label == f"regions 224 px R={R} (extracted, features-224px.h5)"
    assert float(src.read_regions(np.array([0])).min()) >= 1.0  # the +1 store, not the other


def test_fallback_warns_once_and_paper_refuses(ddir: Path, caplog: pytest.LogCaptureFixture) -> None:
    (ddir / "res101.mat").unlink()
    (ddir / "features-224px.h5").unlink()
    data = load(ddir)
    with caplog.at_level(logging.WARNING, logger="zsl_bench.data.features"):
        _, label = data.choose_features("pooled", what="CUB ale-test")
        data.choose_features("pooled", what="CUB ale-test")
    assert label == f"regions 448 px R={R} mean-pooled (extracted, features.h5)"
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 1 and "not the paper's features (xlsa17 res101.mat (224 px, pooled))" in warned[0]
    with pytest.raises(DataError, match=r"CUB: --preset paper needs the paper's features, xlsa17 res101\.mat"):
        data.choose_features("pooled", paper=True)
    with pytest.raises(DataError, match=r"region maps at 224 px .*features-224px\.h5 from 'zsl-bench data extract "
                                        r"DATASET --size 224'.*found: regions 448 px"):
        data.choose_features("regions", 224, paper=True)


def test_res101_is_read_on_first_use_and_checked(ddir: Path) -> None:
    data = load(ddir)
    xlsa = next(s for s in data.feature_sets if s.name == "xlsa17")
    assert xlsa._source is None  # labels came from image_index.npz: res101.mat not read yet
    arr = tiny_arrays(seed=1)  # other labels in res101.mat than in image_index.npz
    write_tiny(ddir.parent / "OTHER", arr, features="res101", sim_meta=False)
    (ddir / "res101.mat").unlink()
    (ddir.parent / "OTHER" / "res101.mat").rename(ddir / "res101.mat")
    data = load(ddir)
    with pytest.raises(DataError, match=r"res101\.mat: field 'labels' disagrees with the dataset's labels"):
        data.choose_features("pooled")


def test_imported_array_is_the_users_choice(ddir: Path) -> None:
    (ddir / "features.h5").unlink()
    with StoreWriter(ddir / "features.h5", N, 3, None, {"source": "real", "imported_from": "/x/clip.npy",
                                                       "source_format": "numpy array (N, F) pooled"}) as w:
        w.write(0, pooled=np.ones((N, 3), np.float32))
    _, label = load(ddir).choose_features("pooled")
    assert label == "pooled (imported-array, features.h5)"


def test_simulated_label_and_rows_carry_features_and_precision(tmp_path: Path) -> None:
    from zsl_bench.runner import RunSpec, run_one

    d = tmp_path / "CUB"
    write_tiny(d, features="store")  # the simulator's store (provenance source simulated), sim.json
    data = load_from_dir("cub", d, source="simulated", provenance={"preset": "tinytest"})
    res = run_one(RunSpec("eszsl", "cub", protocol="test-oracle", sim_preset="tinytest"), out_dir=tmp_path / "o",
                  progress=False, data=data)
    assert {r["features"] for r in res.rows} == {f"simulated tinytest (regions R={R} mean-pooled)"}
    assert {r["precision"] for r in res.rows} == {"fp32"}
    assert set(COLUMNS) <= set(res.rows[0])


def test_results_written_before_the_columns_are_read_and_migrated(tmp_path: Path) -> None:
    csv = tmp_path / "results.csv"
    old = [c for c in COLUMNS if c not in ADDED_COLUMNS]
    row = dict.fromkeys(old, "")
    row.update(run_id="r1", method="ale", dataset="cub", source="real", protocol="val", seed="0", metric="h",
               value="1.5", versions="torch=2;device=cuda:0 (X);precision=bf16")
    cpu = {**row, "run_id": "r2", "versions": "torch=2"}
    csv.write_text(LEGACY_HEADER + "".join(",".join(r[c] for c in old) + "\n" for r in (row, cpu)))
    got = read_rows(csv, validate=True)
    assert [(r["precision"], r["features"]) for r in got] == [("bf16", ""), ("fp32", "")]
    new = {**dict.fromkeys(COLUMNS, ""), **cpu, "run_id": "r3", "features": "xlsa17 res101.mat (224 px, pooled)",
           "precision": "fp32"}
    append_rows(csv, [new])
    assert csv.read_text().splitlines()[0].split(",") == list(COLUMNS)
    got = read_rows(csv, validate=True)
    assert [(r["run_id"], r["precision"], r["features"]) for r in got] == [
        ("r1", "bf16", ""), ("r2", "fp32", ""), ("r3", "fp32", "xlsa17 res101.mat (224 px, pooled)")]


def test_results_written_before_the_semantics_column_are_read_and_migrated(tmp_path: Path) -> None:
    """Files of issue 12's header (features and precision, no sim_semantics): read with the semantics
    source unrecorded (''), migrated on the next append, every value kept."""
    csv = tmp_path / "results.csv"
    old = LEGACY_HEADERS[1].rstrip("\n").split(",")
    assert old == [c for c in COLUMNS if c != "sim_semantics"]
    row = {**dict.fromkeys(old, ""), "run_id": "r1", "method": "ale", "dataset": "cub", "source": "simulated",
           "sim_preset": "small", "generator_version": "zsl-bench-sim/4.0", "protocol": "val", "seed": "0",
           "metric": "h", "value": "1.5", "features": "simulated small (regions R=49 mean-pooled)", "precision": "fp32"}
    csv.write_text(LEGACY_HEADERS[1] + ",".join(row[c] for c in old) + "\n")
    got = read_rows(csv, validate=True)
    assert [(r["sim_semantics"], r["features"], r["precision"]) for r in got] == [
        ("", "simulated small (regions R=49 mean-pooled)", "fp32")]
    append_rows(csv, [{**row, "run_id": "r2", "sim_semantics": "generated"}])
    assert csv.read_text().splitlines()[0].split(",") == list(COLUMNS)
    got = read_rows(csv, validate=True)
    assert [(r["run_id"], r["sim_semantics"], r["value"]) for r in got] == [("r1", "", "1.5"), ("r2", "generated", "1.5")]


def test_store_name_by_size() -> None:
    assert FS.store_name(448) == "features.h5" and FS.store_name(224) == "features-224px.h5"


# ---------------------------------------------------------------- run --preset paper


@pytest.fixture()
def real_root(ddir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``ddir`` loaded as real data: CUB's published counts replaced by the tiny dataset's."""
    import dataclasses

    tiny = dataclasses.replace(loader.get_spec("cub"), images=N, seen=4, unseen=2, semantic_dim=5, trainval=32,
                               test_seen=8, test_unseen=20)
    monkeypatch.setattr(loader, "get_spec", lambda name: tiny)
    return ddir.parent


def test_paper_preset_refuses_what_would_change_it(capsys: pytest.CaptureFixture[str]) -> None:
    for extra, msg in ((["--sim", "tiny"], "simulated data has no paper row"),
                       (["--protocol", "val"], "drop --protocol val"),
                       (["--epochs", "3"], "--epochs would change it"),
                       (["--set", "train.lr=0.1"], "--set train.lr would change it"),
                       (["--set", "train.precision=bf16"], "--set train.precision would change it")):
        assert main(["run", "ale", "--datasets", "cub", "--preset", "paper", *extra]) == 2
        assert msg in capsys.readouterr().err


def test_paper_preset_plan(real_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["--datasets", "cub", "--data-root", str(real_root), "--preset", "paper", "--seeds", "0"]
    assert main(["run", "dazle", *base, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"preset paper: dazle on cub: features regions 224 px R={R} (extracted, features-224px.h5)" in out
    assert "epochs; precision fp32; test-oracle (best epoch chosen on the test set)" in out
    (real_root / "CUB" / "features-224px.h5").unlink()
    assert main(["run", "dazle", *base, "--dry-run"]) == 2
    assert "--preset paper needs the paper's features, ResNet-101 region maps at 224 px" in capsys.readouterr().err
    assert main(["run", "eszsl", *base, "--dry-run"]) == 0
    assert "preset paper: eszsl on cub: features xlsa17 res101.mat (224 px, pooled); fit() once" \
        in capsys.readouterr().out


@pytest.mark.slow
def test_paper_preset_tiny_run(real_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["--datasets", "cub", "--data-root", str(real_root), "--preset", "paper", "--seeds", "0"]
    rc = main(["run", "eszsl", *base, "--out", str(tmp_path / "out"), "--no-mlflow", "--no-progress",
               "--set", "train.device=cpu"])
    assert rc == 0
    assert "test-oracle" in capsys.readouterr().out
    rows = read_rows(tmp_path / "out" / "results.csv", validate=True)
    assert {(r["variant"], r["protocol"], r["precision"], r["features"]) for r in rows} == {
        ("paper", "test-oracle", "fp32", "xlsa17 res101.mat (224 px, pooled)")}
