"""Where data lives: ``--data-root``, else ``$ZSL_BENCH_DATA``, else a per-user cache directory.

Simulated datasets are written under ``sim_root()`` (``$ZSL_BENCH_CACHE`` or the cache dir) in the
same layout as real data, so that a read-only real data root can still feed the generator.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    if os.environ.get("ZSL_BENCH_CACHE"):
        return Path(os.environ["ZSL_BENCH_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "zsl-bench"


def data_root(cli_value: str | os.PathLike[str] | None = None) -> Path:
    if cli_value:
        return Path(cli_value).expanduser()
    if os.environ.get("ZSL_BENCH_DATA"):
        return Path(os.environ["ZSL_BENCH_DATA"]).expanduser()
    return cache_dir() / "data"


def sim_root(preset: str, seed: int) -> Path:
    """Root of a simulated benchmark: ``<cache>/sim/<preset>-seed<seed>/<DATASET>/...``."""
    return cache_dir() / "sim" / f"{preset}-seed{seed}"
