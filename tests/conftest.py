"""Shared fixtures. The real metadata is read from ``$ZSL_BENCH_DATA`` or ``../shared/data/zsl``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _shared_root() -> Path:
    env = os.environ.get("ZSL_BENCH_SHARED_DATA")
    if env:
        return Path(env)
    return (REPO.parent / "shared" / "data" / "zsl").resolve()


SHARED_ROOT = _shared_root()


@pytest.fixture(scope="session")
def shared_root() -> Path:
    """The real ZSL metadata (CUB, SUN, AWA2, FLO). Required: CI provides ../shared."""
    if not (SHARED_ROOT / "CUB" / "att_splits.mat").is_file():
        pytest.fail(f"real metadata not found at {SHARED_ROOT}; set ZSL_BENCH_SHARED_DATA")
    return SHARED_ROOT


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Simulated data and caches go to a per-session temporary directory, never to $HOME."""
    cache = tmp_path_factory.mktemp("zsl-cache")
    os.environ["ZSL_BENCH_CACHE"] = str(cache)
    os.environ.pop("ZSL_BENCH_DATA", None)
