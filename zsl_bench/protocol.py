"""The evaluation protocol (PROTOCOL.md): one checked entry point from a score matrix to every
reported number, and model selection: ``val`` and ``test-oracle``, the best epoch, the best
hyperparameters (``tuned_on_val``), all by one rule, :func:`select_best`.

Methods return scores; everything here judges them, identically for every method.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import metrics
from .config import ResolvedConfig, build, to_dict
from .errors import ConfigError, DataError, TrainingError, ZSLError

if TYPE_CHECKING:
    from .engine import Engine, EvalSplit, PhaseOutcome, Reporter

log = logging.getLogger(__name__)

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
        # A repeated row would weigh one image twice in its class's accuracy (the metrics change).
        for rows, key in ((rows_s, "seen_idx"), (rows_u, "unseen_idx")):
            uniq, counts = np.unique(rows, return_counts=True)
            if (counts > 1).any():
                raise DataError(f"{nm[key]} lists row {int(uniq[counts > 1][0])} more than once "
                                f"({int((counts > 1).sum())} repeated row(s)); each test row must appear once")
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
    # One sweep serves the curve, AUSUC, the best γ and (U, S, H) at the γ used (metrics.Evaluation).
    ev = metrics.Evaluation(sc, lab, seen, unseen, rows_s, rows_u, gamma=gamma)
    res: dict[str, Any] = metrics.evaluate(ev)
    res["curve"] = {"gamma": ev.curve.gamma, "u": ev.curve.u, "s": ev.curve.s}
    return res


# ---------------------------------------------------------------- model selection
#
# ``val``: phase 1 trains on ``val_train`` for ``train.epochs`` and evaluates validation GZSL after
# every epoch (``val_seen`` rows vs ``val_unseen`` rows; the validation classes play unseen). The
# best epoch is the one with the highest H (at ``eval.gamma`` when set, else at that epoch's best
# γ). Phase 2 retrains from scratch on ``trainval`` for that many epochs and tests once with the
# selected γ. Closed-form methods fit once per phase.
#
# ``test-oracle``: trains on ``trainval``, evaluates the test sets after every epoch and reports the
# best epoch (γ = ``eval.gamma`` when set, else the best γ on test). How MSDN and most papers
# report; every row says ``test-oracle``.
#
# Methods that declare ``selects_in_fit`` (generative baselines) report candidate states from
# inside ``fit`` instead of epochs (engine.FitSelectHook); the same rule picks the best GZSL state
# (H) and the best ZSL state (ZSL acc), and under ``val`` phase 2 retrains with the config values
# that reach them (``fit_values``, recorded as ``selected.<key>``).
#
# Hyperparameters a method declares in ``tuned_on_val`` (method-config field -> candidate values)
# are tuned under ``val``: phase 1 runs once per combination of the grid (the product, in
# declaration order) and the combination whose best epoch has the highest validation H wins (ties
# -> the first). Keys the user gave explicitly (a config file or variant, or the CLI layer) are
# fixed, not tuned; presets and defaults are replaced by the tuned values. Under ``test-oracle``
# they keep their config values: papers publish hyperparameters validated on held-out seen classes
# and choose only the epoch on test; tuning them on test labels would be a leak beyond what that
# protocol is defined (and labelled) to do.


@dataclass
class Outcome:
    """What a selection protocol chose and measured.

    ``config`` is what was trained for the reported numbers (tuned values included); ``test`` is
    the test evaluation at ``gamma`` (None for a selection-only run); ``selection`` what selection
    saw (``best_epoch``, ``gamma``, ``val_*`` or ``oracle``, ``tuned.*``).
    """

    config: ResolvedConfig
    model: Any
    history: list[dict[str, Any]]
    best_epoch: int
    gamma: float
    selection: dict[str, Any]
    test: dict[str, Any] | None = None


def best_epoch(outcome: PhaseOutcome, what: str) -> dict[str, Any]:
    """The best evaluated epoch of a phase (its evaluation, with ``epoch``), kept by the engine's
    best-epoch hook under :func:`select_best`'s rule.

    Raises:
        TrainingError: no epoch was evaluated.
    """
    if outcome.best is None:
        raise TrainingError(f"{what}: no epoch was evaluated; check train.epochs and train.eval_every")
    return outcome.best


def tuning_grid(method_cls: type[Any], overrides: Mapping[str, Any] | None = None,
                cli_overrides: Mapping[str, Any] | None = None) -> dict[str, tuple[Any, ...]]:
    """The part of ``method_cls.tuned_on_val`` to tune: every declared key the user did not fix.

    A key is fixed when it is given explicitly in the method section of ``overrides`` (config file,
    study variant: a run's file layer) or of ``cli_overrides`` (``--set``); presets and defaults are
    not explicit.

    Raises:
        ConfigError: a declared key is not a field of the method's config, or has no candidates.
    """
    declared = method_cls.tuned_on_val
    fields = set(to_dict(build(method_cls.config_cls, {}, "method")))
    explicit = set((overrides or {}).get("method") or {}) | set((cli_overrides or {}).get("method") or {})
    grid: dict[str, tuple[Any, ...]] = {}
    for key, values in declared.items():
        if key not in fields:
            raise ConfigError(f"{method_cls.name}.tuned_on_val names method.{key}, which is not a config key; "
                              f"valid keys of method: {', '.join(sorted(fields))}")
        if not len(values):
            raise ConfigError(f"{method_cls.name}.tuned_on_val gives no candidate values for method.{key}")
        if key not in explicit:
            grid[key] = tuple(values)
    return grid


def with_method_values(cfg: ResolvedConfig, method_cls: type[Any], values: Mapping[str, Any]) -> ResolvedConfig:
    """``cfg`` with some method-config fields replaced (validated by the method's dataclass)."""
    if not values:
        return cfg
    method = build(method_cls.config_cls, {**to_dict(cfg.method), **values}, "method")
    return dataclasses.replace(cfg, method=method)


def select_on_val(engine: Engine, grid: Mapping[str, tuple[Any, ...]], *, seed: int, ckpt_dir: Path,
                  reporter: Reporter | None = None, progress: bool = True) -> Outcome:
    """Phase 1 of ``val``: train on ``val_train`` once per grid combination, keep the best on validation.

    Without a grid this is the plain phase 1 (phase ``val``). With one, each combination is phase
    ``tune`` (so a pruner reporting on ``val`` epochs never compares epochs of different
    combinations) and its history entries carry ``candidate`` and ``tuned.<key>``.

    Returns:
        The chosen configuration, best epoch and γ, every combination's history, and the selection
        record; no test numbers (see :func:`retrain_and_test`).
    """
    from tqdm.auto import tqdm

    from .engine import EvalSplit

    data, method = engine.data, engine.method_cls
    val = EvalSplit("val", data.splits["val_seen"], data.splits["val_unseen"],
                    data.val_seen_classes, data.val_unseen_classes)
    keys = list(grid)
    combos = [dict(zip(keys, vals)) for vals in itertools.product(*grid.values())] if grid else [{}]
    history: list[dict[str, Any]] = []
    candidates: list[dict[str, Any]] = []  # each combination's best epoch, in grid order
    bar = tqdm(combos, desc=f"{method.name} {data.name} tune {','.join(keys)}", unit="cand", leave=False,
               disable=(not progress or not grid) or None)  # None: off when stderr is not a terminal
    for i, values in enumerate(bar):
        eng = engine.with_config(with_method_values(engine.cfg, method, values))
        p = eng.train(phase="tune" if grid else "val", train_rows=data.splits["val_train"],
                      seen=data.val_seen_classes, unseen=data.val_unseen_classes, epochs=eng.cfg.train.epochs,
                      seed=seed, evaluation=val, gamma=eng.cfg.eval.gamma,
                      ckpt_path=ckpt_dir / (f"tune-{i}.pt" if grid else "val.pt"), reporter=reporter,
                      progress=progress)
        best = best_epoch(p, f"{method.name} on {data.name}")
        if grid:
            for entry in p.history:
                entry.update({"candidate": i, **{f"tuned.{k}": v for k, v in values.items()}})
            log.debug("%s %s candidate %s: val H %.2f (epoch %d)", method.name, data.name, values, best["h"],
                      best["epoch"])
        history += p.history
        candidates.append({**best, "values": values})
    chosen = dict(select_best(candidates))  # ties -> the first combination
    values = chosen.pop("values")
    # ``selects_in_fit`` methods: the config values that reach the chosen state (e.g. GAN and
    # classifier epochs); phase 2 retrains with them, as other methods retrain for the best epoch.
    fit_values = chosen.pop("fit_values", None) or {}
    if grid:
        log.info("%s %s: tuned on validation over %d combinations: %s (val H %.2f)", method.name, data.name,
                 len(combos), ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                                        for k, v in values.items()), float(chosen["h"]))
    cfg = with_method_values(engine.cfg, method, {**values, **fit_values})
    gamma = float(cfg.eval.gamma) if cfg.eval.gamma is not None else float(chosen["gamma"])
    epoch = int(chosen["epoch"])
    selection: dict[str, Any] = {"best_epoch": epoch, "gamma": gamma, **{
        f"val_{k}": float(chosen[k]) for k in metrics.names("selection") if k in chosen}}
    if grid:
        # Numbers (bools too) as floats like the rest of the selection; other kinds as they are.
        selection.update({f"tuned.{k}": float(v) if isinstance(v, (int, float)) else v
                          for k, v in values.items()})
        selection["tuned.candidates"] = float(math.prod(len(v) for v in grid.values()))
    selection.update(_selected(fit_values))
    return Outcome(config=cfg, model=None, history=history, best_epoch=epoch, gamma=gamma, selection=selection)


def retrain_and_test(engine: Engine, chosen: Outcome, *, seed: int, ckpt_dir: Path, reporter: Reporter | None = None,
              progress: bool = True) -> Outcome:
    """Phase 2 of ``val``: train ``chosen.config`` on ``trainval`` for the chosen epochs, test once at its γ."""
    data = engine.data
    final = engine.with_config(chosen.config)
    p = final.train(phase="final", train_rows=data.splits["trainval"], seen=data.seen_classes,
                    unseen=data.unseen_classes, epochs=chosen.best_epoch, seed=seed, ckpt_path=ckpt_dir / "final.pt",
                    reporter=reporter, progress=progress)
    test = final.evaluate(p.model, _test_split(engine), chosen.gamma)
    return dataclasses.replace(chosen, model=p.model, history=chosen.history + p.history, test=test)


def select_on_test(engine: Engine, *, seed: int, ckpt_dir: Path, reporter: Reporter | None = None,
                progress: bool = True) -> Outcome:
    """``test-oracle``: train on ``trainval``, report the epoch with the best test H (and its weights)."""
    data, method, cfg = engine.data, engine.method_cls, engine.cfg
    declared = method.tuned_on_val
    if declared:
        log.info("%s (test-oracle): %s keep their config values; only the val protocol tunes them",
                 method.name, ", ".join(declared))
    p = engine.train(phase="oracle", train_rows=data.splits["trainval"], seen=data.seen_classes,
                     unseen=data.unseen_classes, epochs=cfg.train.epochs, seed=seed, evaluation=_test_split(engine),
                     gamma=cfg.eval.gamma, ckpt_path=ckpt_dir / "oracle.pt", reporter=reporter, progress=progress)
    test = best_epoch(p, f"{method.name} on {data.name}")
    model = p.model
    if p.extra.get("best_state") is not None:
        model.load_state_dict(p.extra["best_state"])  # extras describe the reported epoch
    epoch, gamma = int(test["epoch"]), float(test["gamma"])
    selection = {"best_epoch": epoch, "gamma": gamma, "oracle": 1.0, **_selected(test.get("fit_values") or {})}
    return Outcome(config=cfg, model=model, history=p.history, best_epoch=epoch, gamma=gamma,
                   selection=selection, test=test)


# ---------------------------------------------------------------- context reliance
#
# Simulated data of generator v2 holds a second feature store: every image re-rendered with the same
# latents and noise but its environment (the context on the background, with some bleed onto the
# object) drawn again, independently of class and split. The model the protocol reported is scored
# on those features at the same γ by the same evaluation; the accuracy it loses is what it took
# from the environment. Real data and generator v1 have no such store: no rows.


def context_reliance(engine: Engine, outcome: Outcome) -> dict[str, float]:
    """``zsl_acc_env``, ``h_env`` (test split on the environment-resampled features) and
    ``reliance_zsl = zsl_acc - zsl_acc_env``, ``reliance_h = h - h_env`` (points), for the model and γ
    of ``outcome``; ``{}`` when the data has no environment-resampled store.

    The second scoring is :meth:`Engine.evaluate` on an engine reading that store
    (:meth:`Engine.with_store`), so both numbers come from one evaluation path.
    """
    if outcome.test is None or outcome.model is None:
        return {}
    store = engine.data.env_resampled_features(engine.store)
    if store is None:
        return {}
    try:
        if engine.method_cls.selects_in_fit and outcome.selection.get("oracle"):
            # test-oracle of a method selecting inside fit reports H and ZSL accuracy of two states
            # of the fit, not of one model: there is no single model to score again.
            log.info("%s: no context reliance under test-oracle (its numbers come from states inside fit)",
                     engine.method_cls.name)
            return {}
        env = engine.with_config(outcome.config).with_store(store)
        res = env.evaluate(outcome.model, _test_split(engine), outcome.gamma)
    finally:
        store.close()
    zsl, h = float(res["zsl_acc"]), float(res["h"])
    return {"zsl_acc_env": zsl, "h_env": h, "reliance_zsl": float(outcome.test["zsl_acc"]) - zsl,
            "reliance_h": float(outcome.test["h"]) - h}


def _selected(fit_values: Mapping[str, Any]) -> dict[str, float]:
    """``selected.<key>``: what a ``selects_in_fit`` method's chosen state took (numbers as floats)."""
    return {f"selected.{k}": float(v) for k, v in fit_values.items() if isinstance(v, (int, float))}


def _test_split(engine: Engine) -> EvalSplit:
    from .engine import EvalSplit

    data = engine.data
    return EvalSplit("test", data.splits["test_seen"], data.splits["test_unseen"], data.seen_classes,
                     data.unseen_classes)
