"""How many intra-op threads PyTorch may use: the harness chooses, the user can say.

PyTorch's default (one thread per core it sees) is the wrong choice on the machines this harness
runs on: a container sees the host's cores but gets a CPU quota, a job gets an affinity mask, and a
shared server or CI runner is often busy. Oversubscribed OpenMP threads spin and wait on each other;
measured on a loaded 2-core box, a 3-epoch CUB run took 98-116 s with the default and 21-25 s with
one thread, with identical results. The models here are small, so few threads lose little.

The rule (:func:`choose_threads`), first match wins:

1. ``--threads N`` (the CLI), then ``$ZSL_BENCH_THREADS``, then ``$OMP_NUM_THREADS``: taken as is.
2. Otherwise ``usable = min(CPUs in the affinity mask, ceil(cgroup CPU quota))``, and
   ``threads = min(usable - busy, MAX_AUTO_THREADS)`` floored at 1, where ``busy`` is the 1-minute
   load average rounded down, capped at ``usable`` (load from other processes takes cores away;
   on a 2-core box with load >= 1, that gives one thread).

The load changes while a study runs (the box was idle when ``run`` started, then other jobs came,
or left). An automatic choice is therefore made again before every unit (:func:`rechoose`), from
the load *minus this process's own threads* (a training process counts in the load average it
reads); a change is logged. A choice given by flag or environment is never changed.

Only the number of threads changes; results on CPU are the same for any thread count in the runs
checked (see tests/test_speed.py: msdnpp, 1 vs 2 threads, identical rows), though floating-point sums in parallel kernels may in
principle round differently.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

THREADS_ENV = "ZSL_BENCH_THREADS"
MAX_AUTO_THREADS = 8  # beyond this the small ZSL models here gain nothing measurable
CGROUP_ROOT = Path("/sys/fs/cgroup")


@dataclass(frozen=True)
class ThreadChoice:
    """The chosen thread count and a one-line reason (logged at start-up)."""

    n: int
    reason: str
    auto: bool = False  # from the automatic rule: made again before each unit
    share: int = 1  # automatic threads divided among this many worker processes


def affinity_cpus() -> int:
    """CPUs this process may run on (its affinity mask; ``os.cpu_count()`` where there is none)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def cgroup_quota(root: Path = CGROUP_ROOT) -> float | None:
    """CPUs' worth of time the cgroup CPU quota allows (cgroup v2 ``cpu.max``, else v1 CFS), None: no quota."""
    try:
        text = (root / "cpu.max").read_text().split()
        if text and text[0] != "max":
            return int(text[0]) / int(text[1])
        if text:
            return None
    except (OSError, ValueError, IndexError):
        pass
    for sub in ("cpu", "cpu,cpuacct", "cpuacct,cpu"):
        try:
            quota = int((root / sub / "cpu.cfs_quota_us").read_text())
            period = int((root / sub / "cpu.cfs_period_us").read_text())
        except (OSError, ValueError):
            continue
        return quota / period if quota > 0 and period > 0 else None
    return None


def load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def parse_threads(value: str | int, where: str) -> int:
    """A thread count from a flag or variable: an integer >= 1 (ConfigError naming ``where`` otherwise)."""
    from .errors import ConfigError

    try:
        n = int(str(value).strip())
    except ValueError:
        n = 0
    if n < 1:
        raise ConfigError(f"{where}: bad thread count {value!r}; valid: an integer >= 1")
    return n


def auto_threads(cpus: int, quota: float | None, load: float | None, *, own: int = 0,
                 share: int = 1) -> ThreadChoice:
    """The automatic rule on given measurements (pure, so it can be tested on any numbers).

    ``own``: threads of this process counted in ``load`` (they are not other processes' load);
    ``share``: worker processes that divide the result.
    """
    usable = cpus if quota is None else max(1, min(cpus, math.ceil(quota)))
    others = None if load is None else max(0.0, load - own)
    busy = 0 if others is None else min(usable, int(others))
    n = max(1, min(usable - busy, MAX_AUTO_THREADS) // max(1, share))
    parts = [f"{cpus} CPU(s) in affinity"]
    if quota is not None:
        parts.append(f"cgroup quota {quota:g} CPU(s)")
    if load is not None:
        parts.append(f"load average {load:.1f}" + (f" ({own} of it this run's threads)" if own else ""))
    if share > 1:
        parts.append(f"/ {share} workers")
    return ThreadChoice(n, "auto: " + ", ".join(parts), auto=True, share=max(1, share))


def rechoose(choice: ThreadChoice, load: float | None = None) -> ThreadChoice:
    """An automatic choice made again from the load now (``choice`` itself if it was not automatic).

    ``choice.n`` threads of this process are taken out of the load average before the rule runs.
    """
    if not choice.auto:
        return choice
    return auto_threads(affinity_cpus(), cgroup_quota(), load_average() if load is None else load,
                        own=choice.n, share=choice.share)


def choose_threads(flag: int | None = None, environ: dict[str, str] | None = None, *,
                   share: int = 1) -> ThreadChoice:
    """The thread count by the module's rule (``flag`` is ``--threads``; ``share``: worker processes
    that divide an automatic choice)."""
    env = os.environ if environ is None else environ
    if flag is not None:
        return ThreadChoice(parse_threads(flag, "--threads"), "--threads")
    for var in (THREADS_ENV, "OMP_NUM_THREADS"):
        if env.get(var, "").strip():
            return ThreadChoice(parse_threads(env[var], f"${var}"), f"${var}")
    return auto_threads(affinity_cpus(), cgroup_quota(), load_average(), share=share)


def apply_threads(choice: ThreadChoice) -> None:
    """Set PyTorch's intra-op threads (imports torch: call once the training stack is needed)."""
    import torch

    if torch.get_num_threads() != choice.n:
        torch.set_num_threads(choice.n)
    log.info("threads: %d (%s; --threads N or $%s to set)", choice.n, choice.reason, THREADS_ENV)
