"""Running the CLI in a subprocess and checking how it fails (the bad-input corpus and fault tests).

A bad input must give a non-zero exit, one line naming the file, field or flag, no traceback, and
leave existing results byte for byte as they were.
"""

from __future__ import annotations

import hashlib
import logging
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


def run_main(args: Sequence[str], *, env: dict[str, str] | None = None) -> Outcome:
    """``zsl_bench.cli.main.main(ARGS)`` in this process, as :func:`run_cli` reports it.

    The same code path as the console script minus interpreter start-up and imports (seconds per
    case on a loaded 2-core machine, against milliseconds here). ``env`` entries are set for the
    call only. An exception escaping ``main`` is printed as a traceback on stderr (exit 1), exactly
    what a subprocess would show, so :func:`assert_clean_failure` rejects it the same way.
    ``test_bad_input_corpus.test_in_process_outcome_equals_the_subprocess_one`` checks a sample of
    cases both ways.
    """
    import contextlib
    import io
    import traceback

    from zsl_bench.cli.main import main

    saved = dict(os.environ)
    os.environ.update(env or {})
    out, err = io.StringIO(), io.StringIO()
    # main() logs to stderr through logging.basicConfig, a no-op here (pytest's handlers are on the
    # root logger): route records to the captured stderr as basicConfig would.
    handler = logging.StreamHandler(err)
    handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                rc = main(list(map(str, args)))
            except SystemExit as exc:  # argparse: usage and "error:" on stderr, exit 2
                rc = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            except Exception:
                traceback.print_exc()
                rc = 1
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        os.environ.clear()
        os.environ.update(saved)
    return Outcome(list(map(str, args)), rc, out.getvalue(), err.getvalue())


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
