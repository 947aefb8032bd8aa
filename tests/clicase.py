"""Running the CLI in a subprocess and checking how it fails (the bad-input corpus and fault tests).

A bad input must give a non-zero exit, one line naming the file, field or flag, no traceback, and
leave existing results byte for byte as they were.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Outcome:
    args: list[str]
    returncode: int
    stdout: str
    stderr: str

    @property
    def error_lines(self) -> list[str]:
        """The error lines of stderr: ``zsl-bench: error: ...`` and argparse's ``... error: ...``."""
        return [ln for ln in self.stderr.splitlines() if "error:" in ln]


def cli_env(**extra: str) -> dict[str, str]:
    """The environment for a CLI subprocess: this checkout first on the path, one thread."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    env.setdefault("OMP_NUM_THREADS", "1")
    env.update(extra)
    return env


def run_cli(args: Sequence[str], *, cwd: Path | None = None, env: dict[str, str] | None = None,
            timeout: float = 300) -> Outcome:
    """``python -m zsl_bench ARGS`` in a subprocess."""
    cmd = [sys.executable, "-m", "zsl_bench", *map(str, args)]
    out = subprocess.run(cmd, cwd=cwd, env=env or cli_env(), capture_output=True, text=True, timeout=timeout)
    return Outcome(list(map(str, args)), out.returncode, out.stdout, out.stderr)


def digest_tree(paths: Iterable[Path]) -> dict[str, str]:
    """sha256 of every file under ``paths`` (files or directories), to check nothing changed."""
    out: dict[str, str] = {}
    for p in paths:
        files = [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.is_file()) if p.exists() else []
        for f in files:
            out[str(f)] = hashlib.sha256(f.read_bytes()).hexdigest()
    return out


def assert_clean_failure(res: Outcome, *, names: Sequence[str] = (), code: int | None = None) -> str:
    """Non-zero exit, no traceback, exactly one error line that mentions every string in ``names``.

    Returns the error line.
    """
    assert res.returncode != 0, f"{res.args}: exit 0\nstdout: {res.stdout}\nstderr: {res.stderr}"
    if code is not None:
        assert res.returncode == code, f"{res.args}: exit {res.returncode}, expected {code}\n{res.stderr}"
    assert "Traceback" not in res.stderr, f"{res.args}: traceback\n{res.stderr}"
    lines = res.error_lines
    assert len(lines) == 1, f"{res.args}: expected one error line, got {len(lines)}:\n{res.stderr}"
    for name in names:
        assert name.lower() in lines[0].lower(), f"{res.args}: {name!r} not in {lines[0]!r}"
    return lines[0]
