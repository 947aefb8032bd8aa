"""``zsl-bench evaluate SCORES.npz``: the documented JSON, the table, and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from zsl_bench.cli.main import main

REPO = Path(__file__).resolve().parents[1]
JSON_KEYS = ("zsl_acc", "u", "s", "h", "gamma", "best_gamma", "best_h", "ausuc")  # documented, in this order

# The hand-computed case of test_metrics.py: seen {0, 1}, unseen {2, 3}, column 4 not a candidate.
# Margins (best seen − best unseen): rows 0..3 -> 1, -0.5, -2, 1; rows 0, 1 seen test, 2, 3 unseen test.
ARRAYS = dict(
    scores=np.array([[3.0, 1, 2, 0, 9], [0, 2, 2.5, 0, 9], [1, 0, 3, 0, 9], [2, 0, 0, 1, 9]]),
    labels=np.array([0, 1, 2, 3]),
    seen_classes=np.array([0, 1]), unseen_classes=np.array([2, 3]),
    test_seen_loc=np.array([0, 1]), test_unseen_loc=np.array([2, 3]),
)
# γ = 0: S = (1 + 0)/2 = 50, U = (1 + 0)/2 = 50, H = 50; ZSL (unseen columns only): 2/2 right = 100.
# Best H on (-2, -0.5): S = 100, U = 50, H = 2·100·50/150 = 66.67 at γ = -1.25.
# AUSUC: (U 0->50 at S 100) 5000 + (U 50->100, S 50->0) 1250 = 6250 %² -> 62.5.
EXPECTED = dict(zsl_acc=100.0, u=50.0, s=50.0, h=50.0, gamma=0.0, best_gamma=-1.25, best_h=200 / 3,
                ausuc=62.5)


def write(path: Path, **change: object) -> Path:
    arrays = {**ARRAYS, **change}
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


def test_subprocess_json_is_documented_object(tmp_path):
    f = write(tmp_path / "scores.npz")
    out = subprocess.run([sys.executable, "-m", "zsl_bench", "evaluate", str(f), "--json"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)  # exactly one JSON object and nothing else on stdout
    assert list(res) == list(JSON_KEYS)
    for key, val in EXPECTED.items():
        assert res[key] == pytest.approx(val), key
        assert isinstance(res[key], float)


def test_subprocess_error_is_one_line(tmp_path):
    f = write(tmp_path / "bad.npz", test_unseen_loc=None)
    out = subprocess.run([sys.executable, "-m", "zsl_bench", "evaluate", str(f)], cwd=tmp_path,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and out.stdout == ""
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert "test_unseen_loc" in out.stderr


def test_main_json_with_gamma(tmp_path, capsys):
    f = write(tmp_path / "scores.npz")
    assert main(["evaluate", str(f), "--gamma", "-1", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    # γ = -1: r1 now seen and right: S = 100; U = 50; H = 66.67 (best γ does not depend on --gamma)
    expect = {**EXPECTED, "gamma": -1.0, "s": 100.0, "h": 200 / 3}
    assert res == pytest.approx(expect)


def test_main_table(tmp_path, capsys):
    f = write(tmp_path / "scores.npz")
    assert main(["evaluate", str(f)]) == 0
    out = capsys.readouterr().out
    for needle in ("ZSL acc   100.00", "H          50.00  (gamma = 0)", "best H     66.67", "gamma = -1.25",
                   "AUSUC      62.50"):
        assert needle in out, out


@pytest.mark.parametrize("change, needle", [
    (dict(labels=None), "missing key 'labels'"),
    (dict(scores=np.full((4, 5), np.nan)), "scores has a non-finite value"),
    (dict(scores=np.zeros(5)), "scores must be a non-empty 2-D"),
    (dict(labels=np.array([0, 1, 2, 5])), "labels has value 5"),
    (dict(test_seen_loc=np.array([0, 7])), "test_seen_loc has value 7"),
    (dict(test_unseen_loc=np.array([2])), "class 3 of unseen_classes has no row in test_unseen_loc"),
    (dict(seen_classes=np.array([0, 1, 2])), "seen_classes and unseen_classes share class 2"),
])
def test_main_bad_file_one_line_error(tmp_path, capsys, change, needle):
    f = write(tmp_path / "bad.npz", **change)
    assert main(["evaluate", str(f)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err and str(f) in err, err


def test_main_unreadable_inputs(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path / "nope.npz")]) == 2
    assert "no such file" in capsys.readouterr().err
    junk = tmp_path / "junk.npz"
    junk.write_text("not numpy")
    assert main(["evaluate", str(junk)]) == 2
    assert "not a .npz archive" in capsys.readouterr().err
    assert main(["evaluate", str(write(tmp_path / "ok.npz")), "--gamma", "nan"]) == 2
    assert "--gamma" in capsys.readouterr().err
