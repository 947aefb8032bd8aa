"""The evaluation protocol: one checked entry point from a score matrix to every reported number,
plus the small selection helpers the engine and runner use (PROTOCOL.md).

Methods return scores; everything here judges them, identically for every method.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from . import metrics
from .errors import ConfigError, DataError, ZSLError

PROTOCOLS = ("val", "test-oracle")

_LABELS = {"val": "", "test-oracle": "test-oracle (best epoch chosen on the test set)"}

# Argument name -> the name shown in error messages (the CLI passes the .npz keys instead).
DEFAULT_NAMES = {
    "scores": "scores", "labels": "labels", "seen_classes": "seen_classes",
    "unseen_classes": "unseen_classes", "seen_idx": "seen_idx", "unseen_idx": "unseen_idx",
}


def check_protocol(name: str) -> str:
    """Return ``name`` if it is a selection protocol, else raise a ConfigError naming --protocol."""
    if name not in PROTOCOLS:
        raise ConfigError(f"--protocol: unknown protocol {name!r}; valid: {', '.join(PROTOCOLS)}")
    return name


def protocol_label(name: str) -> str:
    """The label every output carries: "" for ``val``, a warning text for ``test-oracle``."""
    return _LABELS[check_protocol(name)]


def select_best(history: Sequence[Mapping[str, Any]], key: str = "h") -> Mapping[str, Any]:
    """The epoch record with the highest ``key`` (ties -> earliest).

    Records without ``key`` (e.g. phases that were not evaluated) or with a NaN value are skipped.

    Raises:
        ZSLError: no record carries a numeric ``key``.
    """
    best: Mapping[str, Any] | None = None
    for rec in history:
        val = rec.get(key)
        if val is None or not isinstance(val, (int, float, np.number)) or math.isnan(float(val)):
            continue
        if best is None or float(val) > float(best[key]):
            best = rec
    if best is None:
        raise ZSLError(f"cannot select the best epoch: no record of {len(history)} has a numeric {key!r}")
    return best


def _as_numpy(x: object) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor (torch is not imported here)
        x = x.detach().cpu().numpy()  # type: ignore[union-attr]
    return np.asarray(x)


def _index_array(x: object, name: str, upper: int, what: str) -> np.ndarray:
    """1-D integer array with values in [0, upper); integral floats are accepted (MATLAB exports)."""
    arr = _as_numpy(x)
    if arr.ndim == 2 and 1 in arr.shape:  # column/row vectors as MATLAB writes them
        arr = arr.reshape(-1)
    if arr.ndim != 1:
        raise DataError(f"{name} must be a 1-D array of {what}, got shape {arr.shape}")
    if arr.size == 0:
        raise DataError(f"{name} is empty: it must list at least one of the {what}")
    if np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all() or (arr != np.round(arr)).any():
            raise DataError(f"{name} must hold integer {what}, got non-integral values")
    elif not np.issubdtype(arr.dtype, np.integer):
        raise DataError(f"{name} must hold integer {what}, got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    if arr.min() < 0 or arr.max() >= upper:
        bad = int(arr[(arr < 0) | (arr >= upper)][0])
        raise DataError(f"{name} has value {bad}; valid {what} are 0-based, in [0, {upper})")
    return arr


def check_inputs(scores: object, labels: object, seen_classes: object, unseen_classes: object,
                 seen_idx: object, unseen_idx: object, *, names: Mapping[str, str] | None = None,
                 source: str = "") -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                            np.ndarray]:
    """Validate and convert the inputs of :func:`evaluate_scores`.

    Args:
        names: how to call each argument in messages (e.g. the keys of a ``.npz`` file).
        source: prefix for messages, e.g. the file name.

    Returns:
        (scores [N, K], labels [N], seen_classes, unseen_classes, seen_idx, unseen_idx) as numpy.

    Raises:
        DataError: naming the offending argument and what would be valid.
    """
    nm = {**DEFAULT_NAMES, **(names or {})}
    pre = f"{source}: " if source else ""
    try:
        sc = _as_numpy(scores)
        if sc.ndim != 2 or 0 in sc.shape:
            raise DataError(f"{nm['scores']} must be a non-empty 2-D [N, K] matrix, got shape {sc.shape}")
        if not (np.issubdtype(sc.dtype, np.floating) or np.issubdtype(sc.dtype, np.integer)):
            raise DataError(f"{nm['scores']} must be numeric, got dtype {sc.dtype}")
        finite = np.isfinite(sc)
        if not finite.all():
            r, c = np.argwhere(~finite)[0]
            raise DataError(f"{nm['scores']} has a non-finite value ({sc[r, c]}) at row {r}, column {c} "
                            f"({int((~finite).sum())} in all)")
        n, k = sc.shape
        lab = _index_array(labels, nm["labels"], k, "class labels")
        if len(lab) != n:
            raise DataError(f"{nm['labels']} has {len(lab)} entries but {nm['scores']} has {n} rows")
        seen = _index_array(seen_classes, nm["seen_classes"], k, "classes")
        unseen = _index_array(unseen_classes, nm["unseen_classes"], k, "classes")
        for arr, key in ((seen, "seen_classes"), (unseen, "unseen_classes")):
            if len(np.unique(arr)) != len(arr):
                raise DataError(f"{nm[key]} lists a class more than once")
        both = np.intersect1d(seen, unseen)
        if both.size:
            raise DataError(f"{nm['seen_classes']} and {nm['unseen_classes']} share class {int(both[0])}; "
                            "they must be disjoint")
        rows_s = _index_array(seen_idx, nm["seen_idx"], n, "row indices")
        rows_u = _index_array(unseen_idx, nm["unseen_idx"], n, "row indices")
        for rows, cls, key_r, key_c in ((rows_s, seen, "seen_idx", "seen_classes"),
                                        (rows_u, unseen, "unseen_idx", "unseen_classes")):
            row_lab = lab[rows]
            outside = ~np.isin(row_lab, cls)
            if outside.any():
                i = int(np.flatnonzero(outside)[0])
                raise DataError(f"{nm[key_r]} row {int(rows[i])} has label {int(row_lab[i])}, which is not "
                                f"in {nm[key_c]}")
            absent = np.setdiff1d(cls, row_lab)
            if absent.size:
                raise DataError(f"class {int(absent[0])} of {nm[key_c]} has no row in {nm[key_r]} "
                                f"({absent.size} of {len(cls)} classes absent); per-class accuracy needs every class")
    except DataError as exc:
        raise DataError(pre + str(exc)) from None
    return sc, lab, seen, unseen, rows_s, rows_u


def evaluate_scores(scores: object, labels: object, seen_classes: object, unseen_classes: object,
                    seen_idx: object, unseen_idx: object, gamma: float | None = 0.0) -> dict[str, Any]:
    """Every reported number for one score matrix (all in %), from one pass over it.

    Args:
        scores: [N, K] class scores (numpy or torch); only seen ∪ unseen columns are candidates.
        labels: [N] 0-based class of each row.
        seen_classes, unseen_classes: the classes playing seen / unseen in this phase.
        seen_idx, unseen_idx: rows of the seen-test and unseen-test samples.
        gamma: calibration used for u, s, h (score − γ·[seen]); None: the best γ of this curve.

    Returns:
        ``zsl_acc, u, s, h, gamma, best_gamma, best_h, ausuc`` (floats) and ``curve``
        (``{"gamma", "u", "s"}`` arrays of the exact U–S curve).
    """
    if gamma is not None:
        gamma = float(gamma)
        if math.isnan(gamma):
            raise ConfigError("gamma must be a number (or ±inf), got NaN")
    sc, lab, seen, unseen, rows_s, rows_u = check_inputs(scores, labels, seen_classes, unseen_classes,
                                                         seen_idx, unseen_idx)
    zsl = metrics.zsl_accuracy(sc[rows_u], lab[rows_u], unseen)
    # One sweep serves the curve, AUSUC, the best γ and (U, S, H) at the γ used.
    curve = metrics.sweep_gamma(sc, lab, rows_s, rows_u, seen, unseen)
    g_best, h_best = curve.best()
    used = g_best if gamma is None else gamma
    u, s, h = curve.at(used)
    return {
        "zsl_acc": zsl, "u": u, "s": s, "h": h, "gamma": used,
        "best_gamma": g_best, "best_h": h_best, "ausuc": curve.area(),
        "curve": {"gamma": curve.gamma, "u": curve.u, "s": curve.s},
    }
