"""Statistics over seeds: t intervals, paired differences to a reference, and power.

Pure functions on plain numbers (no I/O, no torch). A *unit* of a result is one training run,
identified within a table row by ``(dataset, seed, data_seed)``: the training seed and the seed of
the simulated data (empty for real data). A variant and its reference are compared on the units
they share, as paired differences (variant − reference), so that what the seeds share (the same
data draw, the same initial draw) cancels out.

The power helpers use the usual t approximation for a two-sided paired t-test:
the smallest difference detectable with ``n`` pairs is ``(t_{1-α/2, n-1} + t_{power, n-1}) · sd / √n``;
the pairs needed for a difference δ are the smallest ``n >= 2`` whose detectable difference is <= δ.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

ALPHA = 0.05
POWER = 0.8
DELTA = 2.0  # points: the difference an ablation should be able to detect
MAX_PAIRS = 100_000  # pairs_needed gives up beyond this (sd huge relative to delta)

UnitKey = tuple[str, str, str]  # (dataset, seed, data_seed)


def _t() -> Any:
    from scipy import stats

    return stats.t


def _int_text(v: Any) -> str:
    """``0``, ``"0"`` and ``0.0`` are one seed; empty / missing stays ``""``."""
    if v is None or v == "":
        return ""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return str(v)
    return str(int(f)) if math.isfinite(f) and f == int(f) else str(v)


def unit_key(row: Mapping[str, Any]) -> UnitKey:
    """The pairing key of a result row: (dataset, training seed, data seed)."""
    return (str(row.get("dataset", "")).lower(), _int_text(row.get("seed")), _int_text(row.get("data_seed")))


def mean_std(values: Iterable[float]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (None for no values / a single value)."""
    vals = list(values)
    if not vals:
        return None, None
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else None)


def t_interval(values: Iterable[float], confidence: float = 1 - ALPHA) -> tuple[float, float] | None:
    """The ``confidence`` t interval of the mean of ``values``; None with fewer than two values."""
    vals = list(values)
    if len(vals) < 2:
        return None
    mean, sd = mean_std(vals)
    assert mean is not None and sd is not None
    half = _t().ppf(0.5 + confidence / 2, len(vals) - 1) * sd / math.sqrt(len(vals))
    return mean - half, mean + half


@dataclass(frozen=True)
class Paired:
    """Paired differences (variant − reference) over ``n`` matched units.

    ``lo``/``hi`` (the t interval of the mean difference), ``sd`` and ``p`` (two-sided paired
    t-test) are None when ``n < 2``: one pair gives a difference but no interval.
    """

    n: int
    mean: float | None = None
    sd: float | None = None
    lo: float | None = None
    hi: float | None = None
    p: float | None = None
    alpha: float = ALPHA

    @property
    def significant(self) -> bool:
        """Whether the difference is significant at ``alpha`` (its interval excludes 0)."""
        return self.p is not None and self.p < self.alpha

    @property
    def half_width(self) -> float | None:
        return None if self.lo is None or self.hi is None else (self.hi - self.lo) / 2


def paired(variant: Mapping[Any, float], reference: Mapping[Any, float], alpha: float = ALPHA) -> Paired:
    """Compare ``variant`` with ``reference`` (each ``{unit key: value}``) on their common units.

    Units present on one side only are left out; ``n`` counts the pairs.
    """
    common = [k for k in variant if k in reference]
    diffs = [float(variant[k]) - float(reference[k]) for k in common]
    return paired_from_differences(diffs, alpha)


def paired_from_differences(diffs: Iterable[float], alpha: float = ALPHA) -> Paired:
    """:class:`Paired` from the differences themselves."""
    d = [float(x) for x in diffs]
    n = len(d)
    if n == 0:
        return Paired(0, alpha=alpha)
    mean, sd = mean_std(d)
    if n < 2:
        return Paired(1, mean, alpha=alpha)
    assert mean is not None and sd is not None
    t = _t()
    if sd == 0.0:  # every pair differs by the same amount: no sampling spread left
        return Paired(n, mean, 0.0, mean, mean, 1.0 if mean == 0.0 else 0.0, alpha)
    se = sd / math.sqrt(n)
    half = t.ppf(1 - alpha / 2, n - 1) * se
    p = float(2 * t.sf(abs(mean / se), n - 1))
    return Paired(n, mean, sd, mean - half, mean + half, p, alpha)


def pooled_sd(groups: Iterable[tuple[int, float | None]]) -> float | None:
    """Pooled standard deviation of several samples given as ``(n, sd)`` (those with n < 2 left out)."""
    num = den = 0.0
    for n, sd in groups:
        if n >= 2 and sd is not None:
            num += (n - 1) * sd * sd
            den += n - 1
    return math.sqrt(num / den) if den else None


def detectable_difference(sd: float, n: int, alpha: float = ALPHA, power: float = POWER) -> float | None:
    """The smallest paired difference a two-sided t-test detects with ``n`` pairs (None for n < 2)."""
    if n < 2:
        return None
    t = _t()
    return float((t.ppf(1 - alpha / 2, n - 1) + t.ppf(power, n - 1)) * sd / math.sqrt(n))


def pairs_needed(sd: float, delta: float = DELTA, alpha: float = ALPHA, power: float = POWER) -> int | None:
    """The number of pairs needed to detect a difference ``delta`` (None beyond :data:`MAX_PAIRS`)."""
    if delta <= 0:
        raise ValueError(f"delta must be > 0, got {delta}")
    if sd <= 0:
        return 2
    # Start from the normal approximation, step back while a smaller n still suffices, then forward.
    from scipy import stats

    z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)
    n = max(2, math.ceil((z * sd / delta) ** 2))
    if n > MAX_PAIRS:
        return None
    while n > 2 and (detectable_difference(sd, n - 1, alpha, power) or math.inf) <= delta:
        n -= 1
    while (detectable_difference(sd, n, alpha, power) or math.inf) > delta:
        n += 1
        if n > MAX_PAIRS:
            return None
    return n


__all__ = ["ALPHA", "DELTA", "POWER", "Paired", "detectable_difference", "mean_std", "paired",
           "paired_from_differences", "pairs_needed", "pooled_sd", "t_interval", "unit_key"]
