"""``zsl-bench run`` end to end on the tiny simulated benchmark, in a temporary directory."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from zsl_bench.cli.main import main
from zsl_bench.results import COLUMNS, METRIC_NAMES, read_rows


def test_run_eszsl_tiny_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    argv = ["run", "eszsl", "--datasets", "cub", "--sim", "tiny", "--seeds", "0", "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out

    rows = read_rows(out / "results.csv")
    assert [r["metric"] for r in rows] == list(METRIC_NAMES)
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
    assert cfg["configs"]["cub"]["method"] == {"alpha": 1000.0, "gamma": 0.1, "normalize_features": False}

    title, header = printed.splitlines()[:2]
    assert "eszsl" in title and "simulated" in title and "val protocol" in title
    assert header.split() == ["dataset", "ZSL", "acc", "U", "S", "H", "γ", "AUSUC"]
    assert f"{values['h']:.2f}" in printed and "cub" in printed
    assert not (out / "runs" / "cub-seed0" / "ckpt").exists()

    # Rerunning the same command skips the finished run: no duplicate rows.
    assert main(argv) == 0
    assert len(read_rows(out / "results.csv")) == len(METRIC_NAMES)
    assert f"{values['h']:.2f}" in capsys.readouterr().out


def _one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str], expect: str) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("zsl-bench: error: ") and expect in err[0], err


def test_user_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["--datasets", "cub", "--sim", "tiny", "--out", str(tmp_path / "o")]
    _one_line_error(capsys, ["run", "nosuchmethod", *base], "unknown method 'nosuchmethod'")
    _one_line_error(capsys, ["run", "eszsl", "--datasets", "cubb", "--sim", "tiny"], "unknown dataset 'cubb'")
    _one_line_error(capsys, ["run", "eszsl", *base, "--seeds", "0,x"], "--seeds: bad value '0,x'")
    _one_line_error(capsys, ["run", "eszsl", *base, "--set", "train.lrr=1"], "unknown config key train.lrr")
    _one_line_error(capsys, ["run", "eszsl", *base, "--config", str(tmp_path / "no.yaml")], "config file not found")
    _one_line_error(capsys, ["run", "eszsl", "--datasets", "cub", "--sim", "huge"], "--sim: unknown preset 'huge'")
    assert not (tmp_path / "o").exists()  # nothing written on a user error


def test_real_data_without_features_names_the_ways_forward(shared_root: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "o"
    _one_line_error(capsys, ["run", "eszsl", "--datasets", "cub", "--data-root", str(shared_root), "--out", str(out)],
                    "--sim")
    assert not out.exists()
