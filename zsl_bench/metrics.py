"""Pure ZSL / GZSL metric functions: numpy in, floats (percent) out, no I/O.

Conventions shared by every function here:

* Accuracies are **per-class** top-1 accuracies in percent: the mean over the given classes of the
  accuracy within each class. A class with no sample is an error, never a silent skip.
* Calibrated stacking (Chao et al., ECCV 2016): a GZSL prediction is the argmax over the candidate
  columns (seen ∪ unseen classes; every other column of the ``[N, K]`` matrix is ignored) of
  ``score_c − γ·[c is seen]``. Ties go to the **lowest class index** among the tied candidates.
* Because subtracting γ from every seen column keeps their order, the prediction of a sample is its
  best seen class ``p_s`` if the margin ``d = max_seen − max_unseen`` exceeds γ, its best unseen
  class ``p_u`` if ``d < γ``, and at ``d == γ`` (a tie) whichever of ``p_s``, ``p_u`` has the lower
  index. Every function computes predictions this way, from the same ``d`` in float64, so the exact
  U–S curve and :func:`gzsl_accuracy` agree bit for bit (``score − γ`` is never rounded).
* γ = +inf predicts an unseen class for every sample, γ = −inf a seen class.

The reported metrics are registered at the end as :class:`MetricSpec` s in ``registry.METRICS``
(how each is computed from an :class:`Evaluation`, its label, direction and where it is shown).
Result rows, tables, the ``run`` table, plots and ``zsl-bench evaluate`` are derived from them, so
adding a metric is one :func:`register` call.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection, Iterable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import ZSLError
from .registry import METRICS

__all__ = [
    "DIRECTIONS", "PLACES", "Evaluation", "MetricSpec", "USCurve", "ausuc", "axis_label", "best_gamma",
    "best_value", "columns", "curve_area", "evaluate", "gzsl_accuracy", "harmonic_mean", "hit_rate_name",
    "names", "per_class_accuracy", "register", "spec", "specs", "sweep_gamma", "us_curve", "zero_extras",
    "zsl_accuracy",
]


def _int_1d(x: object, name: str) -> np.ndarray:
    """Return ``x`` as a 1-D int64 array, or raise naming ``name``."""
    arr = np.asarray(x)
    if arr.ndim != 1:
        raise ZSLError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ZSLError(f"{name} must hold integers, got dtype {arr.dtype}")
    return arr.astype(np.int64, copy=False)


def _class_positions(labels: np.ndarray, classes: np.ndarray, what: str) -> np.ndarray:
    """Position of each label inside ``classes`` (sorted, unique); a label outside it raises."""
    pos = np.searchsorted(classes, labels)
    pos_c = np.minimum(pos, len(classes) - 1)
    bad = classes[pos_c] != labels
    if bad.any():
        raise ZSLError(f"{what}: label {int(labels[bad][0])} is not one of the evaluated classes "
                       f"({len(classes)} classes, e.g. {classes[:5].tolist()})")
    return pos_c


def _check_classes(classes: object, name: str, num_columns: int | None = None) -> np.ndarray:
    """Sorted unique class array; empty, duplicate or out-of-range classes raise."""
    arr = _int_1d(classes, name)
    if arr.size == 0:
        raise ZSLError(f"{name} is empty: at least one class is needed")
    srt = np.sort(arr)
    if (np.diff(srt) == 0).any():
        dup = int(srt[np.flatnonzero(np.diff(srt) == 0)[0]])
        raise ZSLError(f"{name} lists class {dup} more than once")
    if num_columns is not None and (srt[0] < 0 or srt[-1] >= num_columns):
        raise ZSLError(f"{name} must be class indices in [0, {num_columns}), got {srt[0]}..{srt[-1]}")
    return srt


def _per_class_weights(labels: np.ndarray, classes: np.ndarray, what: str) -> np.ndarray:
    """Weight of each sample in a per-class accuracy in %: 100 / (num classes · samples of its class)."""
    pos = _class_positions(labels, classes, what)
    counts = np.bincount(pos, minlength=len(classes))  # [C]
    if (counts == 0).any():
        missing = classes[counts == 0]
        raise ZSLError(f"{what}: class {int(missing[0])} has no sample "
                       f"({len(missing)} of {len(classes)} classes missing); per-class accuracy "
                       "is undefined for it")
    return 100.0 / (len(classes) * counts[pos])


def per_class_accuracy(pred: np.ndarray, labels: np.ndarray, classes: np.ndarray) -> float:
    """Mean over classes of top-1 accuracy within each class (%).

    Raises:
        ZSLError: a class in ``classes`` has no sample, or a label is not in ``classes``.
    """
    pred_a, labels_a = _int_1d(pred, "pred"), _int_1d(labels, "labels")
    if pred_a.shape != labels_a.shape:
        raise ZSLError(f"pred has {len(pred_a)} entries but labels has {len(labels_a)}")
    cls = _check_classes(classes, "classes")
    w = _per_class_weights(labels_a, cls, "per_class_accuracy")
    return float(np.sum(w * (pred_a == labels_a)))


def harmonic_mean(u: float, s: float) -> float:
    """H = 2SU / (S + U), 0 when S + U = 0."""
    return 0.0 if u + s <= 0 else 2.0 * u * s / (u + s)


def _scores_2d(scores: object) -> np.ndarray:
    if hasattr(scores, "detach"):  # a torch tensor; torch itself is not imported here
        scores = scores.detach().cpu().numpy()  # type: ignore[union-attr]
    arr = np.asarray(scores)
    if arr.ndim != 2:
        raise ZSLError(f"scores must be a 2-D [N, K] matrix, got shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise ZSLError(f"scores must be numeric, got dtype {arr.dtype}")
    return arr


def zsl_accuracy(scores: np.ndarray, labels: np.ndarray, unseen_classes: np.ndarray) -> float:
    """Conventional ZSL: argmax over unseen classes only, per-class accuracy (%)."""
    sc = _scores_2d(scores)
    lab = _int_1d(labels, "labels")
    if len(lab) != len(sc):
        raise ZSLError(f"scores has {len(sc)} rows but labels has {len(lab)}")
    cls = _check_classes(unseen_classes, "unseen_classes", sc.shape[1])
    pred = cls[np.argmax(np.take(sc, cls, axis=1), axis=1)]  # first max column: cls is sorted
    w = _per_class_weights(lab, cls, "zsl_accuracy (unseen test rows)")
    return float(np.sum(w * (pred == lab)))


@dataclass(frozen=True)
class _Split:
    """The evaluated rows of one GZSL phase, flattened: seen-test rows first, then unseen-test rows."""

    margin: np.ndarray        # [M] float64, d = best seen score − best unseen score
    seen_wins_tie: np.ndarray  # [M] bool, p_s < p_u: at γ == d the seen class is predicted
    correct_seen: np.ndarray  # [M] bool, p_s == label
    correct_unseen: np.ndarray  # [M] bool, p_u == label
    weight: np.ndarray        # [M] float64, the sample's weight in S (seen rows) or U (unseen rows), %
    is_seen_row: np.ndarray   # [M] bool


def _split(scores: object, labels: object, seen_idx: object, unseen_idx: object,
           seen_classes: object, unseen_classes: object) -> _Split:
    sc = _scores_2d(scores)
    n, k = sc.shape
    lab = _int_1d(labels, "labels")
    if len(lab) != n:
        raise ZSLError(f"scores has {n} rows but labels has {len(lab)}")
    seen = _check_classes(seen_classes, "seen_classes", k)
    unseen = _check_classes(unseen_classes, "unseen_classes", k)
    if np.intersect1d(seen, unseen).size:
        raise ZSLError(f"seen_classes and unseen_classes overlap (e.g. class "
                       f"{int(np.intersect1d(seen, unseen)[0])})")
    rows_s, rows_u = _int_1d(seen_idx, "seen_idx"), _int_1d(unseen_idx, "unseen_idx")
    rows = np.concatenate([rows_s, rows_u])
    if rows.size and (rows.min() < 0 or rows.max() >= n):
        raise ZSLError(f"seen_idx/unseen_idx must be row indices in [0, {n})")
    lab_s, lab_u = lab[rows_s], lab[rows_u]
    weight = np.concatenate([_per_class_weights(lab_s, seen, "seen test rows"),
                             _per_class_weights(lab_u, unseen, "unseen test rows")])
    # np.take is several times faster than fancy indexing on large matrices; skip the row copy when
    # the rows are simply all rows in order.
    identity = len(rows) == n and bool((rows == np.arange(n)).all())
    sub = sc if identity else np.take(sc, rows, axis=0)  # [M, K]
    side_s, side_u = np.take(sub, seen, axis=1), np.take(sub, unseen, axis=1)  # [M, S], [M, U]
    best_s = np.argmax(side_s, axis=1)  # first max: seen is sorted, so lowest class index
    best_u = np.argmax(side_u, axis=1)
    top_s = np.take_along_axis(side_s, best_s[:, None], axis=1)[:, 0].astype(np.float64)
    top_u = np.take_along_axis(side_u, best_u[:, None], axis=1)[:, 0].astype(np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        margin = top_s - top_u  # [M]
    if not np.isfinite(margin).all():
        raise ZSLError("scores must be finite, and their differences must fit in float64")
    p_s, p_u = seen[best_s], unseen[best_u]
    row_lab = np.concatenate([lab_s, lab_u])
    return _Split(margin=margin, seen_wins_tie=p_s < p_u, correct_seen=p_s == row_lab,
                  correct_unseen=p_u == row_lab, weight=weight,
                  is_seen_row=np.arange(len(rows)) < len(rows_s))


def _predicts_seen(sp: _Split, gamma: float) -> np.ndarray:
    if gamma == np.inf:
        return np.zeros(len(sp.margin), dtype=bool)
    if gamma == -np.inf:
        return np.ones(len(sp.margin), dtype=bool)
    return (sp.margin > gamma) | ((sp.margin == gamma) & sp.seen_wins_tie)


def gzsl_accuracy(scores: np.ndarray, labels: np.ndarray, seen_idx: np.ndarray, unseen_idx: np.ndarray,
                  seen_classes: np.ndarray, unseen_classes: np.ndarray,
                  gamma: float = 0.0) -> tuple[float, float, float]:
    """GZSL (U, S, H) in % under calibrated stacking score − γ·[seen]."""
    gamma = float(gamma)
    if np.isnan(gamma):
        raise ZSLError("gamma must be a number or ±inf, got NaN")
    return _gzsl_at(_split(scores, labels, seen_idx, unseen_idx, seen_classes, unseen_classes), gamma)


def _gzsl_at(sp: _Split, gamma: float) -> tuple[float, float, float]:
    correct = np.where(_predicts_seen(sp, gamma), sp.correct_seen, sp.correct_unseen)
    s = float(np.sum((sp.weight * correct)[sp.is_seen_row]))
    u = float(np.sum((sp.weight * correct)[~sp.is_seen_row]))
    return u, s, harmonic_mean(u, s)


@dataclass(frozen=True)
class USCurve:
    """The exact U–S curve of calibrated stacking, γ increasing from −inf to +inf.

    Points alternate between a breakpoint (γ equal to some sample's margin, ties resolved as in
    :func:`gzsl_accuracy`) and the open interval after it (represented by its midpoint); the first
    point (γ = −inf) stands for the interval below the first breakpoint and the last (γ = +inf) for
    the one above the last. An interval with no float strictly inside it (adjacent floats) is left
    out, since no γ reaches it. U never decreases and S never increases along the curve.
    """

    gamma: np.ndarray     # [P] float64, strictly increasing
    u: np.ndarray         # [P] %
    s: np.ndarray         # [P] %
    interval: np.ndarray  # [P] bool: the point stands for an open interval between breakpoints
    lo: np.ndarray        # [P] the interval's lower breakpoint (−inf for the first), = gamma elsewhere
    hi: np.ndarray        # [P] the interval's upper breakpoint (+inf for the last), = gamma elsewhere
    # The rows the curve was swept from, so :meth:`at` reads (U, S, H) at any γ without a second pass.
    rows: _Split | None = field(default=None, repr=False, compare=False)

    @property
    def h(self) -> np.ndarray:
        tot = self.u + self.s
        return np.where(tot > 0, 2 * self.u * self.s / np.where(tot > 0, tot, 1.0), 0.0)

    def area(self) -> float:
        """AUSUC (see :func:`curve_area`)."""
        return curve_area(self.u, self.s)

    def at(self, gamma: float) -> tuple[float, float, float]:
        """(U, S, H) in % at ``gamma``, bit for bit what :func:`gzsl_accuracy` returns for the same scores.

        The curve's own ``u``/``s`` come from cumulative sums and may differ from that in the last
        digits; this sums the same per-row weights the same way instead.
        """
        gamma = float(gamma)
        if np.isnan(gamma):
            raise ZSLError("gamma must be a number or ±inf, got NaN")
        if self.rows is None:
            raise ZSLError("this USCurve was built without its rows; use sweep_gamma() to get one")
        return _gzsl_at(self.rows, gamma)

    def best(self) -> tuple[float, float]:
        """(γ, H) maximising H; γ is the middle of the widest-possible range giving that H.

        Only intervals are candidates (a γ sitting on a breakpoint is fragile). Consecutive
        intervals with the same (U, S) form one plateau, because a breakpoint that changes neither
        U nor S is not a breakpoint of the metric; γ is the midpoint of the first best plateau.
        When no γ gives H > 0, returns (0.0, 0.0): any γ is as good, and 0 means no calibration.
        """
        idx = np.flatnonzero(self.interval)
        h = self.h[idx]
        first = int(np.argmax(h))  # ties -> earliest plateau
        if h[first] <= 0:
            return 0.0, 0.0
        last = first
        while (last + 1 < len(idx) and self.u[idx[last + 1]] == self.u[idx[first]]
               and self.s[idx[last + 1]] == self.s[idx[first]]):
            last += 1
        lo, hi = float(self.lo[idx[first]]), float(self.hi[idx[last]])
        # An end interval has U = 0 or S = 0 (labels are checked against the class lists), so H > 0
        # implies a bounded plateau.
        assert np.isfinite(lo) and np.isfinite(hi), (lo, hi)
        return 0.5 * lo + 0.5 * hi, float(h[first])


def sweep_gamma(scores: np.ndarray, labels: np.ndarray, seen_idx: np.ndarray, unseen_idx: np.ndarray,
                seen_classes: np.ndarray, unseen_classes: np.ndarray) -> USCurve:
    """Compute the exact U–S curve in O(M log M) for M evaluated rows (no loop over samples).

    Each row switches once, from its best seen to its best unseen class, as γ crosses its margin d.
    Rows are sorted by (d, seen-wins-tie) and the change each switch makes to S or U (its per-class
    weight times the change in correctness) is accumulated with a cumulative sum, so the value at
    every breakpoint and every interval is a lookup. Values are exact up to float64 summation
    (~1e-10 %) and clipped to [0, 100].
    """
    sp = _split(scores, labels, seen_idx, unseen_idx, seen_classes, unseen_classes)
    order = np.lexsort((sp.seen_wins_tie, sp.margin))  # by d; at equal d, rows that switch AT d first
    d = sp.margin[order]
    seen_row = sp.is_seen_row[order]
    c_s, c_u = sp.correct_seen[order], sp.correct_unseen[order]
    w = sp.weight[order]
    delta = (c_u.astype(np.float64) - c_s) * w  # [M] change when the row's prediction turns unseen
    zero = np.zeros(1)
    s_cum = np.sum(w * c_s * seen_row) + np.concatenate([zero, np.cumsum(np.where(seen_row, delta, 0.0))])
    u_cum = np.sum(w * c_s * ~seen_row) + np.concatenate([zero, np.cumsum(np.where(seen_row, 0.0, delta))])

    b = np.unique(d)  # [B] distinct breakpoints
    left = np.searchsorted(d, b, side="left")
    right = np.searchsorted(d, b, side="right")
    switch_at = np.concatenate([[0], np.cumsum(~sp.seen_wins_tie[order])])
    k_at = left + (switch_at[right] - switch_at[left])  # rows already unseen at γ == b

    nb = len(b)
    mid = 0.5 * b[:-1] + 0.5 * b[1:]  # halves first: no overflow
    gamma = np.empty(2 * nb + 1)
    k = np.empty(2 * nb + 1, dtype=np.int64)
    lo = np.empty(2 * nb + 1)
    hi = np.empty(2 * nb + 1)
    interval = np.zeros(2 * nb + 1, dtype=bool)
    gamma[0], k[0], lo[0], hi[0], interval[0] = -np.inf, 0, -np.inf, b[0], True
    gamma[1::2], k[1::2], lo[1::2], hi[1::2] = b, k_at, b, b
    gamma[2:-1:2], k[2:-1:2], lo[2:-1:2], hi[2:-1:2], interval[2:-1:2] = mid, right[:-1], b[:-1], b[1:], True
    gamma[-1], k[-1], lo[-1], hi[-1], interval[-1] = np.inf, len(d), b[-1], np.inf, True
    keep = ~interval | ((gamma > lo) & (gamma < hi))  # drop midpoints rounded onto a breakpoint
    keep[[0, -1]] = True  # the ±inf ends
    return USCurve(gamma=gamma[keep], u=np.clip(u_cum[k[keep]], 0, 100), s=np.clip(s_cum[k[keep]], 0, 100),
                   interval=interval[keep], lo=lo[keep], hi=hi[keep], rows=sp)


def us_curve(scores: np.ndarray, labels: np.ndarray, seen_idx: np.ndarray, unseen_idx: np.ndarray,
             seen_classes: np.ndarray, unseen_classes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact U–S curve of calibrated stacking: arrays (gamma, u, s), γ from −inf to +inf."""
    c = sweep_gamma(scores, labels, seen_idx, unseen_idx, seen_classes, unseen_classes)
    return c.gamma, c.u, c.s


def curve_area(u: np.ndarray, s: np.ndarray) -> float:
    """Area under S(U) by trapezoids, both in %, divided by 100.

    Chao et al. (ECCV 2016) give the area with U and S in [0, 1]; like most later papers we report
    that area × 100, so a perfect scorer gets 100 and the value is comparable to an accuracy.
    """
    u_a, s_a = np.asarray(u, dtype=np.float64), np.asarray(s, dtype=np.float64)
    return float(np.sum(np.diff(u_a) * (s_a[1:] + s_a[:-1]) / 2.0) / 100.0)


def ausuc(scores: np.ndarray, labels: np.ndarray, seen_idx: np.ndarray, unseen_idx: np.ndarray,
          seen_classes: np.ndarray, unseen_classes: np.ndarray) -> float:
    """Area under the exact seen–unseen accuracy curve (Chao et al. 2016), ×100 (perfect = 100)."""
    return sweep_gamma(scores, labels, seen_idx, unseen_idx, seen_classes, unseen_classes).area()


def best_gamma(scores: np.ndarray, labels: np.ndarray, seen_idx: np.ndarray, unseen_idx: np.ndarray,
               seen_classes: np.ndarray, unseen_classes: np.ndarray) -> tuple[float, float]:
    """(γ, H): the calibration maximising H, mid-way through its best interval of the exact curve."""
    return sweep_gamma(scores, labels, seen_idx, unseen_idx, seen_classes, unseen_classes).best()


# ---------------------------------------------------------------- the registered metrics

DIRECTIONS = ("max", "min", "none")

# Where a registered metric is shown; ``MetricSpec.shown`` is a subset of these keys.
PLACES = {
    "evaluate": "computed by every evaluation: evaluate_scores and `zsl-bench evaluate` (--json keys)",
    "history": "logged for every evaluated epoch as <split>_<name> (val_h, test_h, ...)",
    "selection": "reported by validation selection as val_<name>",
    "row": "one result row of every finished run (results.csv), in registration order",
    "extra": "a result row only where the run reports it (the runner's extras, e.g. on simulated data)",
    "table": "a column of the main and ablation tables (mean ± std over seeds, best per column bold)",
    "run": "a column of the table `zsl-bench run` prints (an extra only where some row has it)",
}


@dataclass(frozen=True, eq=False)
class Evaluation:
    """One phase's scored rows at one calibration: what every registered metric is computed from.

    The arguments are those of ``protocol.evaluate_scores`` after ``protocol.check_inputs``. The
    exact U–S curve, its best γ and the GZSL numbers at γ are computed once, on first use, and
    shared by the metrics that read them.
    """

    scores: np.ndarray          # [N, K] class scores
    labels: np.ndarray          # [N] 0-based class of each row
    seen_classes: np.ndarray    # [S] classes playing seen in this phase
    unseen_classes: np.ndarray  # [U] classes playing unseen
    seen_idx: np.ndarray        # [Ns] rows of the seen-test samples
    unseen_idx: np.ndarray      # [Nu] rows of the unseen-test samples
    gamma: float | None = 0.0   # calibration of u, s, h; None: the best γ of this curve

    @functools.cached_property
    def curve(self) -> USCurve:
        return sweep_gamma(self.scores, self.labels, self.seen_idx, self.unseen_idx, self.seen_classes,
                           self.unseen_classes)

    @functools.cached_property
    def best(self) -> tuple[float, float]:
        """(γ, H) maximising H on these rows (:meth:`USCurve.best`)."""
        return self.curve.best()

    @functools.cached_property
    def gamma_used(self) -> float:
        return self.best[0] if self.gamma is None else float(self.gamma)

    @functools.cached_property
    def gzsl(self) -> tuple[float, float, float]:
        """(U, S, H) at :attr:`gamma_used`."""
        return self.curve.at(self.gamma_used)  # the same sweep as the curve: one pass per evaluation


@dataclass(frozen=True)
class MetricSpec:
    """Everything the harness knows about one metric; registering it is all adding a metric takes.

    Args:
        name: the key in evaluation dicts and the ``metric`` column of result rows.
        label: how CLI tables, plot axes and ``zsl-bench evaluate`` name it ("ZSL acc").
        description: one line for ``zsl-bench ls metrics``.
        direction: ``max`` (higher is better), ``min``, or ``none`` (not a score, e.g. γ); tables
            bold the best mean per column by it.
        shown: where the metric appears, keys of :data:`PLACES`.
        compute: the value from an :class:`Evaluation`; ``None`` for a metric that an evaluation
            does not compute (an extra the runner reports, e.g. attention hit rates).
        fmt: format of a value in CLI tables (main/ablation tables print one decimal, as papers do).
        unit: ``%`` or ``""`` (γ lives on the score scale).
        short: column label in the main/ablation tables (default ``label``).
        group: the setting the metric belongs to (``ZSL``, ``GZSL``, ``attention``); table captions
            name consecutive columns of one group together ("GZSL U, S, H").
        caption: how a table caption names it after its group (default ``short``).
        at: the metric holding the γ this value is measured at (``zsl-bench evaluate`` prints it).
        note: a footnote printed under a CLI table that shows this column.
    """

    name: str
    label: str
    description: str
    direction: str = "max"
    shown: AbstractSet[str] = frozenset()
    compute: Callable[[Evaluation], float] | None = None
    fmt: str = ".2f"
    unit: str = "%"
    short: str = ""
    group: str = ""
    caption: str = ""
    at: str | None = None
    note: str = ""

    def __post_init__(self) -> None:
        if not self.name.isidentifier() or self.name != self.name.lower():
            raise ValueError(f"metric name {self.name!r} must be a lower-case identifier")
        if self.direction not in DIRECTIONS:
            raise ValueError(f"metric {self.name}: direction {self.direction!r}; valid: {', '.join(DIRECTIONS)}")
        object.__setattr__(self, "shown", frozenset(self.shown))
        if self.shown - set(PLACES):
            raise ValueError(f"metric {self.name}: unknown places {', '.join(sorted(self.shown - set(PLACES)))}; "
                             f"valid: {', '.join(PLACES)}")
        if ("evaluate" in self.shown) != (self.compute is not None):
            raise ValueError(f"metric {self.name}: an evaluated metric needs compute, and only it has one")
        if self.shown & {"history", "selection", "row"} and "evaluate" not in self.shown:
            raise ValueError(f"metric {self.name}: history, selection and row values come from an evaluation")
        if {"row", "extra"} <= self.shown:
            raise ValueError(f"metric {self.name}: a row metric is in every run's rows, not an extra")
        object.__setattr__(self, "short", self.short or self.label)
        object.__setattr__(self, "caption", self.caption or self.short)


def register(spec: MetricSpec) -> MetricSpec:
    """Add ``spec`` to ``registry.METRICS`` (its position is its row and column order)."""
    return METRICS.add(spec.name, spec)


def spec(name: str) -> MetricSpec:
    """The registered metric ``name``; an unknown name raises a ZSLError naming the known ones."""
    return METRICS.get(name)


def specs(where: str | None = None) -> list[MetricSpec]:
    """Registered metrics shown in ``where`` (a key of :data:`PLACES`; None: all), in registration order."""
    if where is not None and where not in PLACES:
        raise ZSLError(f"unknown metric place {where!r}; valid: {', '.join(PLACES)}")
    return [s for _, s in METRICS.items() if where is None or where in s.shown]


def names(where: str | None = None) -> tuple[str, ...]:
    """Names of :func:`specs` ``(where)``: e.g. ``names("row")`` are the metrics of every run's rows."""
    return tuple(s.name for s in specs(where))


def columns(where: str, present: Collection[str] = ()) -> list[MetricSpec]:
    """Columns of a table at ``where``: its metrics, extras only when ``present`` (in some row)."""
    return [s for s in specs(where) if "extra" not in s.shown or s.name in present]


def zero_extras(columns: Iterable[MetricSpec], rows: Iterable[dict[str, Any]]) -> list[MetricSpec]:
    """The extras among ``columns`` that are 0.0 in every row of ``rows`` (dicts with ``metric`` and
    ``value``), e.g. context reliance on data drawn without a confounder: tables leave them out and
    say so."""
    def zero(v: Any) -> bool:
        try:
            return float(v) == 0.0
        except (TypeError, ValueError):
            return False

    rows = list(rows)
    return [s for s in columns if "extra" in s.shown
            and all(zero(r.get("value")) for r in rows if r.get("metric") == s.name)]


def evaluate(ev: Evaluation) -> dict[str, float]:
    """Every metric shown in ``evaluate``, computed from ``ev``, in registration order."""
    return {s.name: float(s.compute(ev)) for s in specs("evaluate") if s.compute is not None}


def best_value(values: Iterable[float], direction: str) -> float | None:
    """The best of ``values`` under ``direction``; None when there is no best (``none``, or no value)."""
    vals = list(values)
    if direction == "none" or not vals:
        return None
    return max(vals) if direction == "max" else min(vals)


def axis_label(name: str) -> str:
    """Plot axis label of metric ``name`` ("ZSL acc (%)"); an unregistered name is upper-cased."""
    if name not in METRICS:
        return f"{name.upper()} (%)"
    s = spec(name)
    return f"{s.label} ({s.unit})" if s.unit else s.label


def hit_rate_name(map_name: str) -> str:
    """Metric name of the attention hit rate of one named attention map (``attention.extras``)."""
    return f"attention_hit_rate_{map_name}"


_EVALUATED = frozenset({"evaluate", "history"})  # every evaluation, every evaluated epoch
_HIT_NOTE = ("attn hit: % of (image, visible attribute) pairs whose attention peaks within one cell of the "
             "attribute's true part (simulated ground truth)")

register(MetricSpec(
    "zsl_acc", "ZSL acc", "conventional ZSL: per-class top-1 accuracy, argmax over unseen classes only",
    shown=_EVALUATED | {"selection", "row", "table", "run"}, short="Acc", group="ZSL", caption="accuracy (Acc)",
    compute=lambda ev: zsl_accuracy(ev.scores[ev.unseen_idx], ev.labels[ev.unseen_idx], ev.unseen_classes)))
register(MetricSpec(
    "u", "U", "GZSL per-class accuracy on unseen-class test images (calibrated stacking at γ)",
    shown=_EVALUATED | {"selection", "row", "table", "run"}, group="GZSL", at="gamma",
    compute=lambda ev: ev.gzsl[0]))
register(MetricSpec(
    "s", "S", "GZSL per-class accuracy on seen-class test images (calibrated stacking at γ)",
    shown=_EVALUATED | {"selection", "row", "table", "run"}, group="GZSL", at="gamma",
    compute=lambda ev: ev.gzsl[1]))
register(MetricSpec(
    "h", "H", "harmonic mean of U and S: the GZSL headline number",
    shown=_EVALUATED | {"selection", "row", "table", "run"}, group="GZSL", at="gamma",
    compute=lambda ev: ev.gzsl[2]))
register(MetricSpec(
    "gamma", "γ", "calibration γ subtracted from seen-class scores for U, S, H (the selected one in rows)",
    direction="none", shown=_EVALUATED | {"row", "run"}, fmt=".3f", unit="", group="GZSL",
    compute=lambda ev: ev.gamma_used))
register(MetricSpec(
    "best_gamma", "best γ", "the γ maximising H on the evaluated rows themselves (mid-way through its interval)",
    direction="none", shown=_EVALUATED, fmt=".3f", unit="", group="GZSL",
    compute=lambda ev: ev.best[0]))
register(MetricSpec(
    "best_h", "best H", "H at best γ: optimistic, since γ is chosen on the evaluated rows",
    shown=_EVALUATED, group="GZSL", at="best_gamma",
    compute=lambda ev: ev.best[1]))
register(MetricSpec(
    "ausuc", "AUSUC", "area under the exact seen-unseen accuracy curve over all γ, ×100 (Chao et al. 2016)",
    shown=_EVALUATED | {"selection", "row", "run"}, group="GZSL",
    compute=lambda ev: ev.curve.area()))
register(MetricSpec(
    hit_rate_name("avca"), "attn hit AVCA",
    "% of (image, visible attribute) pairs whose AVCA attention peaks within one cell of the true part",
    shown={"extra", "run"}, group="attention", note=_HIT_NOTE))
register(MetricSpec(
    hit_rate_name("vaca"), "attn hit VACA",
    "% of (image, visible attribute) pairs whose VACA attention peaks within one cell of the true part",
    shown={"extra", "run"}, group="attention", note=_HIT_NOTE))
# DAZLE's map: a result row but, as before, no column of the `run` table.
register(MetricSpec(
    hit_rate_name("attribute_to_region"), "attn hit A→R",
    "% of (image, visible attribute) pairs whose attribute-to-region attention peaks within one cell of "
    "the true part", shown={"extra"}, group="attention", note=_HIT_NOTE))
# Context reliance (protocol.context_reliance): simulated data whose generator wrote features with
# every image's environment resampled. Extras: absent on real data and generator v1. Reliance has no
# better direction (near 0 is "ignores the context"; negative means the resampled context helped).
_RELIANCE_GROUP = "context reliance (points lost when the environment is resampled)"
_RELIANCE_NOTE = ("reliance: test accuracy lost (points) when each test image's environment is resampled "
                  "(same object, same noise; simulated data only)")
register(MetricSpec(
    "zsl_acc_env", "ZSL acc (env resampled)",
    "ZSL accuracy on the test images re-rendered with their environment resampled (simulated data)",
    shown={"extra"}, group=_RELIANCE_GROUP))
register(MetricSpec(
    "h_env", "H (env resampled)",
    "H at the selected γ on the test images re-rendered with their environment resampled (simulated data)",
    shown={"extra"}, group=_RELIANCE_GROUP))
register(MetricSpec(
    "reliance_zsl", "reliance ZSL", "zsl_acc - zsl_acc_env: ZSL accuracy lost when the environment is resampled",
    direction="none", shown={"extra", "run", "table"}, short="Rel Acc",
    group=_RELIANCE_GROUP, caption="Acc", note=_RELIANCE_NOTE))
register(MetricSpec(
    "reliance_h", "reliance H", "h - h_env: H lost when the environment is resampled",
    direction="none", shown={"extra", "run", "table"}, short="Rel H",
    group=_RELIANCE_GROUP, caption="H", note=_RELIANCE_NOTE))
