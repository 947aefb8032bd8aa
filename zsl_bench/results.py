"""Result rows: one long-format row per (method, variant, dataset, source, protocol, seed, metric).

Rows are appended atomically to ``<out>/results.csv``: the new file is written beside the old one
and renamed over it, so a kill never leaves a half-written table.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import math
import os
import subprocess
from collections.abc import Collection, Iterable
from pathlib import Path
from typing import Any

from .fileio import atomic_path, write_text_atomic

COLUMNS = (
    "run_id", "method", "variant", "dataset", "source", "sim_preset", "generator_version", "data_seed",
    "protocol", "seed", "metric", "value", "gamma", "epoch", "config_hash", "config",
    "git_commit", "versions", "wall_time_s", "timestamp",
)


def __getattr__(name: str) -> Any:
    """``METRIC_NAMES``: the metrics of every run's rows, in order (``metrics.names("row")``).

    Looked up on each access, so a metric registered after this module was imported is included.
    """
    if name == "METRIC_NAMES":
        from . import metrics

        return metrics.names("row")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@functools.lru_cache(maxsize=1)
def git_commit() -> str:
    """The commit of the code that makes the rows.

    A checkout (editable install, ``PYTHONPATH``): ``git rev-parse`` there, ``-dirty`` when tracked
    files differ. An installed copy: the commit it was built from, recorded by setup.py in
    ``zsl_bench/_build.json``. Else ``unknown`` (built from a tree without git).
    """
    here = Path(__file__).resolve().parent
    commit = _checkout_commit(here)
    if commit:
        return commit
    try:
        recorded = json.loads((here / "_build.json").read_text()).get("git_commit")
    except (OSError, ValueError, AttributeError):
        recorded = None
    return str(recorded) if recorded else "unknown"


def _checkout_commit(pkg: Path) -> str | None:
    """``git rev-parse`` of the checkout whose top level holds ``pkg`` (never an enclosing repository,
    e.g. a virtual environment inside some other checkout)."""
    def git(*args: str) -> str | None:
        out = subprocess.run(["git", *args], cwd=pkg, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() if out.returncode == 0 else None

    try:
        top = git("rev-parse", "--show-toplevel")
        if not top or Path(top).resolve() != pkg.parent:
            return None
        commit = git("rev-parse", "--short=12", "HEAD")
        if not commit:
            return None
        dirty = git("status", "--porcelain", "--untracked-files=no")
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


@functools.lru_cache(maxsize=1)
def package_versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    parts = []
    for pkg in ("zsl-bench", "torch", "numpy", "scipy", "h5py"):
        try:
            parts.append(f"{pkg}={version(pkg)}")
        except PackageNotFoundError:
            continue
    return ";".join(parts)


def read_rows(path: str | os.PathLike[str]) -> list[dict[str, str]]:
    p = Path(path)
    if not p.exists():
        return []
    with p.open(newline="") as fh:
        return list(csv.DictReader(fh))


def append_rows(path: str | os.PathLike[str], rows: Iterable[dict[str, Any]]) -> None:
    """Append ``rows`` to the CSV at ``path`` atomically (write-new-then-rename)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    old = p.read_text() if p.exists() else ""
    write_text_atomic(p, old + _csv_text(rows, header=not old), fsync=True)


def _csv_text(rows: Iterable[dict[str, Any]], *, header: bool) -> str:
    """``rows`` as CSV over ``COLUMNS``; an unknown column is an error.

    "\n" line ends throughout: ``read_text()`` turns an old file's "\r\n" into "\n", so csv's
    default "\r\n" for new rows would leave files with mixed line ends.
    """
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, extrasaction="raise", lineterminator="\n")
    if header:
        writer.writeheader()
    for r in rows:
        writer.writerow({k: r.get(k, "") for k in COLUMNS})
    return buf.getvalue()


def remove_runs(path: str | os.PathLike[str], run_ids: set[str], *,
                keep_hashes: Collection[str] = ()) -> int:
    """Drop the rows of ``run_ids`` from the CSV at ``path`` (atomically); returns how many went.

    Rows whose ``config_hash`` is in ``keep_hashes`` stay (a rerun's rows under the same run id).
    """
    rows = read_rows(path)
    keep = [r for r in rows if r.get("run_id") not in run_ids or r.get("config_hash") in keep_hashes]
    if len(keep) == len(rows):
        return 0
    write_text_atomic(path, _csv_text(keep, header=True), fsync=True)
    return len(rows) - len(keep)


def write_curve(path: str | os.PathLike[str], result: Any, **labels: Any) -> Path | None:
    """Write ``result.curve`` (gamma/u/s) and its AUSUC with ``labels`` to ``path`` atomically.

    Returns the path, or None when the result has no U-S curve (e.g. a selection-only run).
    """
    import numpy as np

    curve = getattr(result, "curve", None) or {}
    if not all(k in curve for k in ("u", "s")):
        return None
    metrics = getattr(result, "metrics", {}) or {}
    with atomic_path(path) as tmp:
        np.savez(tmp, gamma=np.asarray(curve.get("gamma", [])), u=np.asarray(curve["u"]), s=np.asarray(curve["s"]),
                 ausuc=np.asarray(metrics.get("ausuc", math.nan)), **labels)
    return Path(path)
