"""``zsl-bench run`` end to end on the tiny simulated benchmark, in a temporary directory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from zsl_bench.cli.main import main
from zsl_bench.data.root import sim_root
from zsl_bench.results import COLUMNS, METRIC_NAMES, read_rows


def test_run_eszsl_tiny_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    argv = ["run", "eszsl", "--datasets", "cub", "--sim", "tiny", "--seeds", "0", "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out

    rows = read_rows(out / "results.csv")
    # Data with an environment-resampled store (generator v2) add the context-reliance rows.
    meta = json.loads((sim_root("tiny", 0) / "CUB" / "sim.json").read_text())
    reliance = ["zsl_acc_env", "h_env", "reliance_zsl", "reliance_h"] if meta.get("env_resampled_store") else []
    assert [r["metric"] for r in rows] == [*METRIC_NAMES, *reliance]
    for r in rows:
        assert list(r) == list(COLUMNS)
        assert all(r[c] != "" for c in COLUMNS), r
        assert (r["method"], r["dataset"], r["source"], r["sim_preset"], r["protocol"], r["seed"]) == \
            ("eszsl", "cub", "simulated", "tiny", "val", "0")
    values = {r["metric"]: float(r["value"]) for r in rows}
    assert all(0.0 <= values[m] <= 100.0 for m in ("zsl_acc", "u", "s", "h", "ausuc"))
    assert values["zsl_acc"] > 0  # the tiny preset is near chance for pooled features; more is not asserted

    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert cfg["method"] == "eszsl" and cfg["protocol"] == "val" and cfg["data"]["sim_preset"] == "tiny"
    assert cfg["configs"]["cub"]["method"] == {"alpha": 1000.0, "gamma": 0.1, "normalize_features": False,
                                              "targets": "zero_one"}

    title, header = printed.splitlines()[:2]
    assert "eszsl" in title and "simulated" in title and "val protocol" in title
    assert header.split() == ["dataset", "ZSL", "acc", "U", "S", "H", "γ", "AUSUC"] + (
        ["reliance", "ZSL", "reliance", "H"] if reliance else [])
    assert f"{values['h']:.2f}" in printed and "cub" in printed
    # A one-method study: one unit per seed, its U-S curve kept, its checkpoints gone once its rows are in.
    (run_id,) = {r["run_id"] for r in rows}
    assert run_id.startswith("grid-") and (out / "optuna.db").is_file()
    assert [p.name for p in (out / "curves").glob("*.npz")] == [f"{run_id}.npz"]
    assert not list(out.glob("runs/*/ckpt"))  # (closed form: none written; see the ALE test below)

    # Rerunning the same command skips the finished run: no duplicate rows.
    assert main(argv) == 0
    assert read_rows(out / "results.csv") == rows
    assert f"{values['h']:.2f}" in capsys.readouterr().out
    # Adding a seed runs only the new one; the table covers both.
    assert main([*argv[:-4], "--seeds", "0,1", "--out", str(out)]) == 0
    again = read_rows(out / "results.csv")
    assert again[:len(rows)] == rows and {r["seed"] for r in again[len(rows):]} == {"1"}
    assert "over 2 seed(s)" in capsys.readouterr().out


def test_config_file_then_set_then_flags_and_checkpoints_removed(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"method": {"margin": 3.0, "init_std": 0.01}, "train": {"epochs": 7}}))
    out = tmp_path / "out"
    assert main(["run", "ale", "--datasets", "cub", "--sim", "tiny", "--seeds", "0", "--no-mlflow", "--out", str(out),
                 "--config", str(cfg), "--set", "method.margin=2", "--set", "train.epochs=5", "--epochs", "2"]) == 0
    resolved = yaml.safe_load((out / "config.yaml").read_text())["configs"]["cub"]
    assert resolved["method"]["margin"] == 2.0 and resolved["method"]["init_std"] == 0.01
    assert resolved["train"]["epochs"] == 2
    rows = read_rows(out / "results.csv")
    assert {yaml.safe_load(r["config"])["method"]["margin"] for r in rows} == {2.0}
    (run_dir,) = (out / "runs").iterdir()  # trained: its checkpoints existed until its rows were written
    assert run_dir.name == rows[0]["run_id"] and not (run_dir / "ckpt").exists()


def _one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str], expect: str) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("zsl-bench: error: ") and expect in err[0], err


def test_user_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["--datasets", "cub", "--sim", "tiny", "--out", str(tmp_path / "o")]
    _one_line_error(capsys, ["run", "nosuchmethod", *base], "unknown method 'nosuchmethod'")
    _one_line_error(capsys, ["run", "eszsl", "--datasets", "cubb", "--sim", "tiny"], "unknown dataset 'cubb'")
    _one_line_error(capsys, ["run", "eszsl", *base, "--seeds", "0,x"], "--seeds: bad value '0,x'")
    _one_line_error(capsys, ["run", "eszsl", *base, "--seeds", "-1"], "--seeds: bad value '-1'")
    _one_line_error(capsys, ["run", "eszsl", *base, "--set", "train.lrr=1"], "unknown config key train.lrr")
    _one_line_error(capsys, ["run", "eszsl", *base, "--config", str(tmp_path / "no.yaml")], "config file not found")
    _one_line_error(capsys, ["run", "eszsl", "--datasets", "cub", "--sim", "huge"], "--sim: unknown preset 'huge'")
    assert not (tmp_path / "o").exists()  # nothing written on a user error


def test_set_sim_reaches_the_generator_the_config_and_the_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    from zsl_bench.data import sim

    calls: list[dict] = []
    real = sim.generate
    monkeypatch.setattr(sim, "generate", lambda *a, **kw: calls.append(kw) or real(*a, **kw))
    versions = tuple(getattr(sim, "GENERATORS", ())) or (sim.GENERATOR_VERSION.rsplit("/", 1)[-1],)
    g = sorted(versions)[0]  # the oldest version (v1 once there are two): not the default of a later one
    out = tmp_path / "out"
    assert main(["run", "eszsl", "--datasets", "cub", "--sim", "tiny", "--seeds", "0", "--no-mlflow", "--out", str(out),
                 "--set", "sim.rho=0", "--set", f"sim.generator={g}"]) == 0
    assert calls and all(c.get("rho") == 0.0 for c in calls)
    rows = read_rows(out / "results.csv")
    assert {r["config"] for r in rows} and all(yaml.safe_load(r["config"])["sim"] == {"generator": g, "rho": 0.0}
                                               for r in rows)
    assert {r["generator_version"] for r in rows} == {f"zsl-bench-sim/{g}"}  # the version that made the data
    assert yaml.safe_load((out / "config.yaml").read_text())["configs"]["cub"]["sim"] == {"generator": g, "rho": 0.0}
    # The same setting on real data, an unknown key: one line, nothing written.
    capsys.readouterr()
    _one_line_error(capsys, ["run", "eszsl", "--datasets", "cub", "--sim", "tiny", "--out", str(tmp_path / "o"),
                             "--set", "sim.rhoo=1"], "unknown config key sim.rhoo; valid keys of sim: generator, ")
    assert not (tmp_path / "o").exists()


def test_real_data_without_features_names_the_ways_forward(shared_root: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "o"
    _one_line_error(capsys, ["run", "eszsl", "--datasets", "cub", "--data-root", str(shared_root), "--out", str(out)],
                    "--sim")
    assert not out.exists()
