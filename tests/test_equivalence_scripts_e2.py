"""The e2 equivalence scripts (benchmarks/equivalence/) start, refuse a wrong --official, and
cannot silently pass: their comparison helpers flag a planted difference, and a script run against
an "official" stand-in with a planted error prints FAIL and exits 1.

The official code is never vendored: the stand-ins below are a few lines written here that follow
the interface the scripts import (SAE.find_W / normalizeFeature / zsl_acc, ESZSL.find_W).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
EQ = ROOT / "benchmarks" / "equivalence"
SCRIPTS = ["sae", "ale", "eszsl", "sje", "devise", "tfvaegan", "fclswgan"]
sys.path.append(str(EQ))  # for _e2_common; appended so nothing in it shadows other modules

from _e2_common import Report, load_file, max_diff  # noqa: E402


def _script(name: str):
    return load_file(str(EQ / f"{name}.py"), f"e2_equivalence_{name}")


def test_help_of_every_script_runs() -> None:
    # One subprocess for all (each would pay the torch import again).
    code = ("import runpy, sys\n"
            f"for name in {SCRIPTS!r}:\n"
            f"    sys.argv = [name, '--help']\n"
            "    try:\n"
            f"        runpy.run_path('{EQ}/' + name + '.py', run_name='__main__')\n"
            "    except SystemExit as e:\n"
            "        assert e.code in (0, None), (name, e.code)\n"
            "    print('HELP-OK', name)\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT,
                         timeout=300)
    assert res.returncode == 0, res.stderr
    for name in SCRIPTS:
        assert f"HELP-OK {name}" in res.stdout
    assert res.stdout.count("--official DIR") >= len(SCRIPTS)


def test_missing_official_is_one_clear_line(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        _script("sae").main(["--official", str(tmp_path)])
    assert str(exc.value.code).startswith(f"--official {tmp_path}: SAE/sae.py not found")


def test_report_flags_a_planted_difference() -> None:
    a = np.linspace(0, 1, 10)
    rep = Report("planted")
    assert rep.check("equal", a, a.copy(), 1e-12)
    assert rep.ok
    b = a.copy()
    b[3] += 1e-6
    assert not rep.check("planted 1e-6", a, b, 1e-9)
    assert not rep.ok
    assert "FAIL: planted" in rep.render()
    assert rep.finish() == 1
    assert max_diff(a, b)[0] == pytest.approx(1e-6)
    assert not Report("nan").check("nan", np.array([np.nan]), np.array([0.0]), 1.0)
    with pytest.raises(ValueError, match="shape mismatch"):
        max_diff(np.zeros(3), np.zeros(4))
    assert not Report("empty").ok  # a report with no rows cannot pass


def _fake_mvp18(tmp_path: Path, scale: float) -> Path:
    """An mvp18-shaped checkout whose SAE.find_W / ESZSL.find_W are our own reference formulas,
    multiplied by ``scale`` (1.0: correct; otherwise a planted error)."""
    (tmp_path / "SAE").mkdir()
    (tmp_path / "ESZSL").mkdir()
    (tmp_path / "SAE" / "sae.py").write_text(textwrap.dedent(f"""
        import numpy as np
        from scipy import linalg
        '''
        AWA2 -> 0.5 @ 0.6  [F-->S] 0.6 @ 0.2  [S-->F]
        CUB  -> 0.4 @ 100  [F-->S] 0.5 @ 0.2  [S-->F]
        SUN  -> 0.5 @ 0.32 [F-->S] 0.6 @ 0.16 [S-->F]
        '''
        class SAE:
            def normalizeFeature(self, x):
                return x / np.linalg.norm(x, axis=1, keepdims=True)
            def find_W(self, X, S, ld):
                return {scale} * linalg.solve_sylvester(S @ S.T, ld * X @ X.T, (1 + ld) * S @ X.T)
            def zsl_acc(self, X, W, y, sig, mode):
                F2S = X.T @ self.normalizeFeature(W).T
                F2S = F2S / np.linalg.norm(F2S, axis=1, keepdims=True)
                pred = (F2S @ (sig / np.linalg.norm(sig, axis=0))).argmax(1)
                return np.mean([np.mean(pred[y == c] == c) for c in range(sig.shape[1])])
        """))
    (tmp_path / "ESZSL" / "eszsl.py").write_text(textwrap.dedent(f"""
        import numpy as np
        '''
        AWA2 -> (3, 0)  -> Test Acc : 0.5
        CUB  -> (3, -1) -> Test Acc : 0.5
        SUN  -> (3, 2)  -> Test Acc : 0.5
        '''
        class ESZSL:
            def find_W(self, X, y, sig, alpha, gamma):
                a = np.linalg.inv(X @ X.T + 10.0 ** alpha * np.eye(X.shape[0]))
                b = np.linalg.inv(sig @ sig.T + 10.0 ** gamma * np.eye(sig.shape[0]))
                return {scale} * a @ X @ y @ sig.T @ b
        """))
    return tmp_path


@pytest.mark.parametrize("script", ["sae", "eszsl"])
def test_script_passes_on_a_faithful_stand_in(tmp_path: Path, script: str, capsys: pytest.CaptureFixture) -> None:
    args = ["--feat-dim", "32"] + (["--lam", "100"] if script == "sae" else [])
    rc = _script(script).main(["--official", str(_fake_mvp18(tmp_path, 1.0)), *args])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "PASS:" in out


@pytest.mark.parametrize("script", ["sae", "eszsl"])
def test_script_fails_on_a_planted_error(tmp_path: Path, script: str, capsys: pytest.CaptureFixture) -> None:
    args = ["--feat-dim", "32"] + (["--lam", "100"] if script == "sae" else [])
    rc = _script(script).main(["--official", str(_fake_mvp18(tmp_path, 1.001)), *args])
    out = capsys.readouterr().out
    assert rc == 1, out
    assert "FAIL:" in out and "MISMATCH" in out
