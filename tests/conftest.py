"""Shared fixtures.

The real metadata (CUB, SUN, AWA2, FLO split files, no features) is read from
``$ZSL_BENCH_SHARED_DATA``, else ``../shared/data/zsl`` beside the checkout. Tests that need it
skip, naming the path they looked at, when it is absent; CI sets ``ZSL_BENCH_REQUIRE_SHARED=1``
so that there a missing bundle fails instead of skipping.
"""

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
    """The real ZSL metadata (CUB, SUN, AWA2, FLO); the test skips when it is absent (fails in CI)."""
    if not (SHARED_ROOT / "CUB" / "att_splits.mat").is_file():
        reason = (f"real ZSL metadata not found at {SHARED_ROOT} (no CUB/att_splits.mat); set "
                  "ZSL_BENCH_SHARED_DATA to a directory holding CUB/, SUN/, AWA2/, FLO/ split files")
        if os.environ.get("ZSL_BENCH_REQUIRE_SHARED") == "1":
            pytest.fail(reason + " (ZSL_BENCH_REQUIRE_SHARED=1)")
        pytest.skip(reason)
    return SHARED_ROOT


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Simulated data and caches go to a per-session temporary directory, never to $HOME."""
    cache = tmp_path_factory.mktemp("zsl-cache")
    os.environ["ZSL_BENCH_CACHE"] = str(cache)
    os.environ.pop("ZSL_BENCH_DATA", None)
