"""Where data lives: ``--data-root``, else ``$ZSL_BENCH_DATA``, else a per-user cache directory.

Simulated datasets are written under ``sim_root()`` (``$ZSL_BENCH_CACHE`` or the cache dir) in the
same layout as real data, so that a read-only real data root can still feed the generator.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import DataError


def cache_dir() -> Path:
    if os.environ.get("ZSL_BENCH_CACHE"):
        return Path(os.environ["ZSL_BENCH_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "zsl-bench"


def data_root(cli_value: str | os.PathLike[str] | None = None) -> Path:
    """The data root: ``--data-root``, else ``$ZSL_BENCH_DATA``, else ``<cache>/data``.

    Raises:
        DataError: the chosen path exists but is not a directory (a regular file, say).
    """
    if cli_value:
        return check_data_root(Path(cli_value).expanduser(), "--data-root")
    if os.environ.get("ZSL_BENCH_DATA"):
        return check_data_root(Path(os.environ["ZSL_BENCH_DATA"]).expanduser(), "$ZSL_BENCH_DATA")
    return check_data_root(cache_dir() / "data", "the default data root (<cache>/data)")


def check_data_root(path: Path, what: str) -> Path:
    """``path`` unless it exists as something other than a directory (``what`` names its source)."""
    try:
        misplaced = (path.exists() or path.is_symlink()) and not path.is_dir()
    except OSError as exc:  # e.g. a name longer than the file system allows
        raise DataError(f"{what} {path}: cannot access ({exc.strerror or exc})") from None
    if misplaced:
        kind = "a regular file" if path.is_file() else "a broken link" if path.is_symlink() else "not a directory"
        raise DataError(f"{what} {path}: is {kind}, not a directory; pass the directory that holds "
                        "the dataset folders (CUB/, SUN/, AWA2/, FLO/)")
    return path


def sim_root(preset: str, seed: int) -> Path:
    """Root of a simulated benchmark: ``<cache>/sim/<preset>-seed<seed>/<DATASET>/...``."""
    return cache_dir() / "sim" / f"{preset}-seed{seed}"
