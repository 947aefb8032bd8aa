"""Paper cuts of the newcomer's first hour (issue 15): each fixed behaviour, checked."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from tests.clicase import assert_clean_failure, run_cli
from zsl_bench.cli.main import build_parser, main
from zsl_bench.errors import DataError
from zsl_bench.results import COLUMNS, append_rows

# ---------------------------------------------------------------- ablate: arguments before side effects


def test_ablate_unknown_sim_preset_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "o"
    res = run_cli(["ablate", "--sim", "huge", "--out", out, "--no-mlflow"])
    assert_clean_failure(res, names=["--sim", "huge", "tiny, small, full"])
    assert not out.exists()


def test_ablate_sim_then_spec_path_reads_the_spec(tmp_path: Path) -> None:
    """``ablate --sim SPEC.yaml``: argparse gives the path to --sim; it is read as the spec, and the
    spec is checked before anything is written (here: an unknown config key in it)."""
    spec = tmp_path / "mine.yaml"
    spec.write_text("name: mine\nmethods: [ale]\ndatasets: [cub]\nseeds: [0]\n"
                    "grid: {variants: {v: {method.marginn: 1}}}\n")
    out = tmp_path / "o"
    res = run_cli(["ablate", "--sim", spec, "--out", out])
    assert_clean_failure(res, names=["method.marginn", str(spec)])
    assert not out.exists() and not (tmp_path / "runs").exists()


def test_ablate_missing_real_data_fails_before_writing(tmp_path: Path) -> None:
    spec = tmp_path / "real.yaml"
    spec.write_text("name: real\nmethods: [ale]\ndatasets: [cub]\nseeds: [0]\nsim: null\n")
    out = tmp_path / "o"
    res = run_cli(["ablate", spec, "--data-root", tmp_path / "empty", "--out", out])
    assert_clean_failure(res, names=["zsl-bench data download cub", "zsl-bench data import cub"])
    assert not out.exists()


# ---------------------------------------------------------------- run / data: flags and messages


def test_run_without_data_names_download_and_import(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "o"
    assert main(["run", "eszsl", "--datasets", "cub", "--data-root", str(tmp_path), "--out", str(out)]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "zsl-bench data download cub" in err[0] and "zsl-bench data import cub" in err[0]
    assert "--sim" in err[0] and not out.exists()


def test_data_sim_flag_matches_run(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    for cmd in (["data", "info", "cub"], ["data", "verify", "cub"], ["run", "eszsl", "--datasets", "cub"]):
        assert parser.parse_args([*cmd, "--sim"]).sim == "small"  # a bare --sim: the default preset
        assert parser.parse_args([*cmd, "--sim", "tiny"]).sim == "tiny"
        assert parser.parse_args(cmd).sim is None
    for cmd in (["data", "info", "--help"], ["data", "verify", "--help"]):
        with pytest.raises(SystemExit):
            parser.parse_args(cmd)
        text = capsys.readouterr().out
        assert "--sim default" not in text and "--sim" in text
    assert main(["data", "info", "cub", "--sim", "tiny"]) == 0  # the form the help shows works
    assert "simulated" in capsys.readouterr().out


# ---------------------------------------------------------------- tracking and the runner


def test_new_mlflow_database_prints_no_info_lines(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    from zsl_bench.tracking import Tracker

    logging.getLogger().setLevel(logging.INFO)  # as the CLI runs
    assert Tracker(tmp_path / "o").client is not None
    captured = capfd.readouterr()
    assert "INFO mlflow" not in captured.err + captured.out
    assert "Creating initial MLflow database tables" not in captured.err + captured.out


def test_attention_extras_fail_loudly_when_the_module_cannot_import(monkeypatch: pytest.MonkeyPatch) -> None:
    from zsl_bench import runner

    monkeypatch.setitem(sys.modules, "zsl_bench.attention", None)  # import raises ImportError
    with pytest.raises(ImportError):
        runner._extras(object(), object())


# ---------------------------------------------------------------- plot: the figure the rows call for


def _rows(path: Path, method_variants: list[tuple[str, str]], sim: str = "tiny") -> Path:
    rows = []
    for method, variant in method_variants:
        for seed in (0, 1):
            for metric, value in (("h", 20.0 + seed), ("zsl_acc", 30.0)):
                row = dict.fromkeys(COLUMNS, "")
                row.update(run_id=f"{method}-{variant}-{seed}", method=method, variant=variant, dataset="cub",
                           source="simulated" if sim else "real", sim_preset=sim, protocol="val", seed=seed,
                           metric=metric, value=value)
                rows.append(row)
    append_rows(path, rows)
    return path


def test_plot_of_a_run_draws_results_bars_not_an_ablation(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = _rows(tmp_path / "run" / "results.csv", [("eszsl", "default")])
    assert main(["plot", str(run), "--out", str(tmp_path / "f1")]) == 0
    names = {p.name for p in (tmp_path / "f1").iterdir()}
    assert "results_h.png" in names and not any(n.startswith("ablation") for n in names)
    study = _rows(tmp_path / "study" / "results.csv", [("ale", "full"), ("ale", "no_x")])
    assert main(["plot", str(study), "--out", str(tmp_path / "f2")]) == 0
    names = {p.name for p in (tmp_path / "f2").iterdir()}
    assert "ablation_h.png" in names and not any(n.startswith("results") for n in names)


def test_plot_attention_says_why_it_cannot(tmp_path: Path) -> None:
    run = _rows(tmp_path / "run" / "results.csv", [("msdn", "default")])
    res = run_cli(["plot", run, "--kind", "attention", "--out", tmp_path / "f"])
    assert_clean_failure(res, names=["--kind attention", "checkpoint", "zsl-bench run", "zsl-bench ablate"])
    res = run_cli(["plot", _rows(tmp_path / "e" / "results.csv", [("eszsl", "default")]), "--kind", "attention",
                   "--out", tmp_path / "f"])
    assert_clean_failure(res, names=["no method", "attention maps"])
    res = run_cli(["plot", _rows(tmp_path / "r" / "results.csv", [("msdn", "default")], sim=""), "--kind",
                   "attention", "--out", tmp_path / "f"])
    assert_clean_failure(res, names=["simulated"])


# ---------------------------------------------------------------- data import of your own arrays


def _fake_metadata(root: Path, n: int = 30) -> None:
    d = root / "CUB"
    d.mkdir(parents=True)
    idx = np.arange(1, n + 1)
    scipy.io.savemat(d / "att_splits.mat", {"trainval_loc": idx[:10], "test_seen_loc": idx[10:20],
                                            "test_unseen_loc": idx[20:]})
    np.savez(d / "image_index.npz", labels=np.zeros(n, dtype=np.int64))


def test_import_array_checks_rows_and_values(tmp_path: Path) -> None:
    from zsl_bench.data.importer import import_array

    root = tmp_path / "root"
    good = tmp_path / "f.npy"
    np.save(good, np.ones((30, 8, 4), dtype=np.float32))
    with pytest.raises(DataError, match="zsl-bench data download cub"):
        import_array(good, "cub", root, progress=False)  # no metadata yet
    _fake_metadata(root)
    np.save(tmp_path / "short.npy", np.ones((29, 8), dtype=np.float32))
    with pytest.raises(DataError, match="29 rows, but .*image_index.npz lists 30 images"):
        import_array(tmp_path / "short.npy", "cub", root, progress=False)
    np.save(tmp_path / "bad.npy", np.ones((30,), dtype=np.float32))
    with pytest.raises(DataError, match=r"\(N, F\) pooled or \(N, F, R\)"):
        import_array(tmp_path / "bad.npy", "cub", root, progress=False)
    nan = np.ones((30, 8), dtype=np.float32)
    nan[17, 3] = np.nan
    np.save(tmp_path / "nan.npy", nan)
    with pytest.raises(DataError, match="first at row 17"):
        import_array(tmp_path / "nan.npy", "cub", root, progress=False)
    np.savez(tmp_path / "two.npz", a=np.ones((30, 8)), b=np.ones((30, 8)))
    with pytest.raises(DataError, match="--key"):
        import_array(tmp_path / "two.npz", "cub", root, progress=False)
    assert not (root / "CUB" / "features.h5").exists()  # nothing half-written by any failure

    from zsl_bench.data.store import FeatureStore

    regions = np.random.default_rng(0).normal(size=(30, 8, 4)).astype(np.float32)
    np.save(good, regions)
    with FeatureStore(import_array(good, "cub", root, progress=False, chunk=7)) as store:
        assert (store.num_rows, store.feature_dim, store.num_regions) == (30, 8, 4)
        np.testing.assert_allclose(store.read_regions(np.arange(30)), regions, atol=2e-3)  # float16
        np.testing.assert_allclose(store.read_pooled(np.arange(30)), regions.mean(axis=2), atol=1e-6)
    np.savez(tmp_path / "two.npz", a=regions[:, :, 0], b=np.ones((30, 8)))
    out = import_array(tmp_path / "two.npz", "cub", root, key="a", out=tmp_path / "pooled.h5", progress=False)
    with FeatureStore(out) as store:
        assert not store.has_regions
        np.testing.assert_array_equal(store.read_pooled(np.arange(30)), regions[:, :, 0])


def test_import_array_then_run_on_real_metadata(shared_root: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """Your own pooled features for real CUB: imported, loaded and trained on through the CLI."""
    import shutil

    root = tmp_path / "root"
    shutil.copytree(shared_root / "CUB", root / "CUB", ignore=shutil.ignore_patterns("src", "xlsa17_classes"))
    with np.load(root / "CUB" / "image_index.npz") as z:
        labels = z["labels"]
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(labels.size, 16)).astype(np.float32) + np.eye(16)[labels % 16] * 3
    np.save(tmp_path / "clip.npy", feats)
    assert main(["data", "import", "cub", str(tmp_path / "clip.npy"), "--data-root", str(root)]) == 0
    assert main(["data", "info", "cub", "--data-root", str(root)]) == 0
    assert "features.h5: 11788 × 16, pooled only" in capsys.readouterr().out
    assert main(["run", "eszsl", "--datasets", "cub", "--data-root", str(root), "--seeds", "0",
                 "--out", str(tmp_path / "o"), "--no-mlflow"]) == 0
    assert "real data" in capsys.readouterr().out
