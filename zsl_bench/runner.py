"""One run: (method, dataset, seed, variant) under a selection protocol -> metrics and result rows.

Protocols (``../shared/spec/PROTOCOL.md``):

- ``val``: phase 1 trains on ``val_train`` for ``train.epochs`` and evaluates validation GZSL after
  every epoch (``val_seen`` rows vs ``val_unseen`` rows; the validation classes play unseen). The
  best epoch is the one with the highest H (at ``eval.gamma`` when set, else at that epoch's best
  γ). Phase 2 retrains from scratch on ``trainval`` for that many epochs and tests once with the
  selected γ. Closed-form methods fit once per phase.
- ``test-oracle``: trains on ``trainval``, evaluates the test sets after every epoch and reports the
  best epoch (γ = ``eval.gamma`` when set, else the best γ on test). How MSDN and most papers
  report; every row says ``test-oracle``.

Hyperparameters a method declares in ``tuned_on_val`` (method-config field -> candidate values) are
tuned under ``val``: phase 1 runs once per combination of the grid (the product, in declaration
order) and the combination whose best epoch has the highest validation H wins (ties -> the first;
H at ``eval.gamma`` when set, else at its best γ, as for epochs: the protocol's GZSL criterion).
Phase 2 trains that combination on ``trainval`` and tests once. Keys the user gave explicitly (the
spec's ``overrides``, i.e. a config file or a variant, or the CLI layer) are fixed, not tuned;
presets and defaults are replaced by the tuned values. The chosen values are in
``RunResult.selection`` (``tuned.<key>``), ``RunResult.config`` and the rows' ``config`` column.
Under ``test-oracle`` they keep their config values: papers publish hyperparameters validated on
held-out seen classes and choose only the epoch on test, and tuning them on test labels would be a
leak beyond what that protocol is defined (and labelled) to do.
"""

from __future__ import annotations

import copy
import itertools
import json
import logging
import math
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .config import ResolvedConfig, build, merge, resolve, to_dict
from .data.zsldata import ZSLData
from .engine import Engine, EvalSplit, PhaseOutcome
from .errors import ConfigError, TrainingError
from .protocol import PROTOCOLS
from .results import METRIC_NAMES, git_commit, package_versions

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class RunSpec:
    """What to run. ``overrides`` is the config-file layer: ``{"method": {...}, "train": {...}, "eval": {...}}``."""

    method: str
    dataset: str
    seed: int = 0
    variant: str = "default"
    overrides: dict[str, Any] = field(default_factory=dict)
    protocol: str = "val"
    sim_preset: str | None = None  # None = real data
    sim_seed: int = 0  # the generator's seed (data), distinct from the training seed
    data_root: str | None = None
    # Phase 1 of `val` only: select on validation and stop, never touching the test split. Search
    # trials run so; their rows carry validation numbers (metric names ``val_*``) and no test numbers.
    select_only: bool = False
    # The rows' ``run_id``; None: a fresh random one per run (a study passes its unit's stable id).
    run_id: str | None = None

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ConfigError(f"bad protocol {self.protocol!r}; valid: {', '.join(PROTOCOLS)}")
        if self.select_only and self.protocol != "val":
            raise ConfigError(f"select_only runs select on validation; protocol must be 'val', got "
                              f"{self.protocol!r}")


@dataclass
class RunResult:
    spec: RunSpec
    config: ResolvedConfig
    metrics: dict[str, float]  # final test numbers: zsl_acc, u, s, h, gamma, ausuc (%)
    selection: dict[str, float]  # what selection saw: best_epoch, val_h, val_zsl_acc, gamma ...
    history: list[dict[str, Any]]  # per epoch and phase
    curve: dict[str, np.ndarray]  # test U–S curve: {"gamma", "u", "s"}
    rows: list[dict[str, Any]]  # long-format rows (results.COLUMNS), not yet written
    wall_time_s: float
    extras: dict[str, Any]


class Reporter(Protocol):
    """Optional hooks (MLflow, Optuna pruning); ``on_epoch`` may raise to stop the run."""

    def on_epoch(self, phase: str, epoch: int, metrics: dict[str, float]) -> None: ...


def resolve_config(spec: RunSpec, cli_overrides: dict[str, Any] | None = None) -> ResolvedConfig:
    """defaults < method preset for the dataset < ``spec.overrides`` < CLI; the protocol is the spec's."""
    from .registry import METHODS, load_all

    load_all()
    method_cls = METHODS.get(spec.method)
    cli = merge(cli_overrides, {"eval": {"protocol": spec.protocol}})
    return resolve(method_cls, spec.dataset, spec.overrides, cli)


def run_one(spec: RunSpec, *, out_dir: Path, cli_overrides: dict[str, Any] | None = None,
            reporter: Reporter | None = None, progress: bool = True, data: ZSLData | None = None) -> RunResult:
    """Train and evaluate one run; checkpoints go under ``out_dir/ckpt/`` (resumed when present).

    Args:
        spec: what to run.
        out_dir: this run's directory (checkpoints).
        cli_overrides: the CLI config layer (``--set`` and flags), highest precedence.
        reporter: per-epoch hook.
        progress: show progress bars.
        data: an already loaded dataset (else loaded from ``spec``).

    Returns:
        The run's metrics, selection, history and result rows (not yet written).
    """
    from .registry import METHODS

    t0 = time.perf_counter()
    cfg = resolve_config(spec, cli_overrides)
    method_cls = METHODS.get(spec.method)
    if data is None:
        from .data.loader import load_dataset

        data = load_dataset(spec.dataset, spec.data_root, sim_preset=spec.sim_preset, sim_seed=spec.sim_seed)
    engine = Engine(method_cls, cfg, data)
    ckpt = Path(out_dir) / "ckpt"
    test = EvalSplit("test", data.splits["test_seen"], data.splits["test_unseen"],
                     data.seen_classes, data.unseen_classes)
    common = dict(seed=spec.seed, reporter=reporter, progress=progress)
    requested = cfg

    if spec.protocol == "val":
        val = EvalSplit("val", data.splits["val_seen"], data.splits["val_unseen"],
                        data.val_seen_classes, data.val_unseen_classes)
        grid = tuning_grid(method_cls, spec, cli_overrides)
        chosen, p1, sel = _select_on_val(engine, grid, val, data, ckpt, spec, common, progress)
        cfg = with_method_values(cfg, method_cls, chosen)  # what phase 2 trains and the rows record
        gamma = float(cfg.eval.gamma) if cfg.eval.gamma is not None else float(sel["gamma"])
        best_epoch = int(sel["epoch"])
        if spec.select_only:
            return _selection_result(spec, cfg, requested, data, sel, chosen, grid, p1, gamma, best_epoch, t0)
        final = _engine_for(engine, cfg)
        p2 = final.train(phase="final", train_rows=data.splits["trainval"], seen=data.seen_classes,
                         unseen=data.unseen_classes, epochs=best_epoch, ckpt_path=ckpt / "final.pt",
                         **common)  # type: ignore[arg-type]
        res = final.evaluate(p2.model, test, gamma)
        model, history = p2.model, p1 + p2.history
        selection = _val_selection(sel, chosen, grid, best_epoch, gamma)
    else:
        declared = getattr(method_cls, "tuned_on_val", None)
        if declared:
            log.info("%s (test-oracle): %s keep their config values; only the val protocol tunes them",
                     spec.method, ", ".join(declared))
        p = engine.train(phase="oracle", train_rows=data.splits["trainval"], seen=data.seen_classes,
                         unseen=data.unseen_classes, epochs=cfg.train.epochs, evaluation=test,
                         gamma=cfg.eval.gamma, ckpt_path=ckpt / "oracle.pt", **common)  # type: ignore[arg-type]
        res = _best(p, spec)
        best_epoch, gamma = int(res["epoch"]), float(res["gamma"])
        model, history = p.model, p.history
        if p.extra.get("best_state") is not None:
            model.load_state_dict(p.extra["best_state"])  # extras describe the reported epoch
        selection = {"best_epoch": best_epoch, "gamma": gamma, "oracle": 1.0}

    metrics = {k: float(res[k]) for k in METRIC_NAMES}
    metrics["gamma"] = gamma
    extras = _extras(model, data)
    wall = time.perf_counter() - t0
    rows = make_rows(spec, cfg, data, metrics, epoch=best_epoch, wall_time_s=wall, config_hash=requested.digest(),
                     extras=extras)
    log.info("%s %s seed %d (%s): ZSL %.2f  U %.2f  S %.2f  H %.2f  (epoch %d, γ %.3g, %.1fs)",
             spec.method, spec.dataset, spec.seed, spec.protocol, metrics["zsl_acc"], metrics["u"],
             metrics["s"], metrics["h"], best_epoch, gamma, wall)
    return RunResult(spec=spec, config=cfg, metrics=metrics, selection=selection, history=history,
                     curve=_curve(res.get("curve")), rows=rows, wall_time_s=wall, extras=extras)


def _val_selection(sel: dict[str, Any], chosen: dict[str, Any], grid: dict[str, tuple[Any, ...]],
                   best_epoch: int, gamma: float) -> dict[str, Any]:
    """What validation selection saw: best epoch, γ, the ``val_*`` numbers and the tuned values."""
    selection: dict[str, Any] = {"best_epoch": best_epoch, "gamma": gamma, **{
        f"val_{k}": float(sel[k]) for k in ("zsl_acc", "u", "s", "h", "ausuc") if k in sel}}
    if grid:
        # Numbers (bools too) as floats like the rest of the selection; other kinds as they are.
        selection.update({f"tuned.{k}": float(v) if isinstance(v, (int, float)) else v
                          for k, v in chosen.items()})
        selection["tuned.candidates"] = float(math.prod(len(v) for v in grid.values()))
    return selection


def _selection_result(spec: RunSpec, cfg: ResolvedConfig, requested: ResolvedConfig, data: ZSLData,
                      sel: dict[str, Any], chosen: dict[str, Any], grid: dict[str, tuple[Any, ...]],
                      history: list[dict[str, Any]], gamma: float, best_epoch: int, t0: float) -> RunResult:
    """The result of a ``select_only`` run: validation numbers only (rows ``val_*``), no test metrics."""
    selection = _val_selection(sel, chosen, grid, best_epoch, gamma)
    val_metrics = {k: v for k, v in selection.items() if k.startswith("val_")}
    wall = time.perf_counter() - t0
    rows = make_rows(spec, cfg, data, {**val_metrics, "gamma": gamma}, epoch=best_epoch, wall_time_s=wall,
                     config_hash=requested.digest(), names=(*val_metrics, "gamma"))
    log.info("%s %s seed %d (val, selection only): val H %.2f (epoch %d, γ %.3g, %.1fs)", spec.method,
             spec.dataset, spec.seed, val_metrics.get("val_h", math.nan), best_epoch, gamma, wall)
    return RunResult(spec=spec, config=cfg, metrics={}, selection=selection, history=history, curve={},
                     rows=rows, wall_time_s=wall, extras={})


def make_rows(spec: RunSpec, cfg: ResolvedConfig, data: ZSLData, metrics: dict[str, float], *,
              epoch: int, wall_time_s: float, config_hash: str | None = None,
              extras: dict[str, Any] | None = None, names: tuple[str, ...] = METRIC_NAMES
              ) -> list[dict[str, Any]]:
    """One long-format row per metric, every column of ``results.COLUMNS`` filled.

    Numeric ``extras`` (e.g. ``attention_hit_rate_avca`` on simulated data, in %) become rows too,
    so they are reported beside accuracy.

    ``config`` is ``cfg``, the configuration actually trained (tuned values included), so the run
    can be reproduced by passing it explicitly. ``config_hash`` (default ``cfg.digest()``) names
    the requested configuration: the runner passes the digest before tuning, which is what a rerun
    of the same command resolves to and matches on.
    """
    simulated = data.is_simulated
    common = {
        "run_id": spec.run_id or f"{spec.method}-{spec.dataset}-seed{spec.seed}-{uuid.uuid4().hex[:8]}",
        "method": spec.method, "variant": spec.variant, "dataset": spec.dataset,
        "source": "simulated" if simulated else "real",
        "sim_preset": (spec.sim_preset or "") if simulated else "",
        "generator_version": str(data.provenance.get("generator_version") or data.provenance.get("generator", ""))
        if simulated else "",
        "data_seed": spec.sim_seed if simulated else "",
        "protocol": spec.protocol, "seed": spec.seed, "gamma": metrics["gamma"], "epoch": epoch,
        "config_hash": config_hash or cfg.digest(), "config": json.dumps(cfg.as_dict(), sort_keys=True, default=str),
        "git_commit": git_commit(), "versions": package_versions(), "wall_time_s": round(wall_time_s, 3),
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    rows = [{**common, "metric": m, "value": metrics[m]} for m in names]
    for k, v in sorted((extras or {}).items()):
        if isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v):
            rows.append({**common, "metric": k, "value": float(v)})
    return rows


def tuning_grid(method_cls: type[Any], spec: RunSpec, cli_overrides: dict[str, Any] | None = None
                ) -> dict[str, tuple[Any, ...]]:
    """The part of ``method_cls.tuned_on_val`` to tune: every declared key the user did not fix.

    A key is fixed when it is given explicitly in the method section of ``spec.overrides`` (config
    file, study variant) or of ``cli_overrides`` (``--set``); presets and defaults are not explicit.

    Raises:
        ConfigError: a declared key is not a field of the method's config, or has no candidates.
    """
    declared = getattr(method_cls, "tuned_on_val", None) or {}
    fields = set(to_dict(build(method_cls.config_cls, {}, "method")))
    explicit = set((spec.overrides or {}).get("method") or {}) | set((cli_overrides or {}).get("method") or {})
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


def with_method_values(cfg: ResolvedConfig, method_cls: type[Any], values: dict[str, Any]) -> ResolvedConfig:
    """``cfg`` with some method-config fields replaced (validated by the method's dataclass)."""
    if not values:
        return cfg
    method = build(method_cls.config_cls, {**to_dict(cfg.method), **values}, "method")
    return ResolvedConfig(method=method, train=cfg.train, eval=cfg.eval)


def _engine_for(engine: Engine, cfg: ResolvedConfig) -> Engine:
    """An engine for ``cfg`` sharing ``engine``'s loaded features (they do not depend on the method config)."""
    if cfg is engine.cfg:
        return engine
    other = copy.copy(engine)
    other.cfg = cfg
    return other


def _select_on_val(engine: Engine, grid: dict[str, tuple[Any, ...]], val: EvalSplit, data: ZSLData, ckpt: Path,
                   spec: RunSpec, common: dict[str, Any], progress: bool
                   ) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
    """Phase 1 of ``val``: train on ``val_train`` once per grid combination, keep the best on validation.

    Without a grid this is the plain phase 1 (phase ``val``). With one, each combination is phase
    ``tune`` (so a pruner reporting on ``val`` epochs never compares epochs of different
    combinations) and its history entries carry ``candidate`` and ``tuned.<key>``.

    Returns:
        The chosen values (``{}`` without a grid), the history of every combination, and the chosen
        combination's best epoch evaluation (``epoch``, ``h``, ``gamma``, ...).
    """
    from tqdm.auto import tqdm

    keys = list(grid)
    combos = [dict(zip(keys, vals)) for vals in itertools.product(*grid.values())] if grid else [{}]
    history: list[dict[str, Any]] = []
    best: tuple[dict[str, Any], dict[str, Any]] | None = None
    best_h = -math.inf
    bar = tqdm(combos, desc=f"{spec.method} {spec.dataset} tune {','.join(keys)}", unit="cand", leave=False,
               disable=not progress or not grid)
    for i, values in enumerate(bar):
        eng = _engine_for(engine, with_method_values(engine.cfg, engine.method_cls, values))
        p = eng.train(phase="tune" if grid else "val", train_rows=data.splits["val_train"],
                      seen=data.val_seen_classes, unseen=data.val_unseen_classes, epochs=eng.cfg.train.epochs,
                      evaluation=val, gamma=eng.cfg.eval.gamma,
                      ckpt_path=ckpt / (f"tune-{i}.pt" if grid else "val.pt"), **common)  # type: ignore[arg-type]
        sel = _best(p, spec)
        h = float(sel["h"])
        if grid:
            for entry in p.history:
                entry.update({"candidate": i, **{f"tuned.{k}": v for k, v in values.items()}})
            log.debug("%s %s candidate %s: val H %.2f (epoch %d)", spec.method, spec.dataset, values, sel["h"],
                      sel["epoch"])
        history += p.history
        # Strictly greater: ties go to the first combination; a NaN H never wins.
        if best is None or (math.isfinite(h) and not h <= best_h):
            best, best_h = (values, sel), h if math.isfinite(h) else -math.inf
    assert best is not None  # combos is never empty
    if grid:
        log.info("%s %s: tuned on validation over %d combinations: %s (val H %.2f)", spec.method, spec.dataset,
                 len(combos), ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                                        for k, v in best[0].items()), float(best[1]["h"]))
    return best[0], history, best[1]


def _best(outcome: PhaseOutcome, spec: RunSpec) -> dict[str, Any]:
    if outcome.best is None:
        raise TrainingError(f"{spec.method} on {spec.dataset}: no epoch was evaluated; "
                            "check train.epochs and train.eval_every")
    return outcome.best


def _curve(curve: Any) -> dict[str, np.ndarray]:
    if curve is None:
        return {}
    if isinstance(curve, dict):
        return {k: np.asarray(v) for k, v in curve.items()}
    gamma, u, s = curve  # (gamma, u, s) triple
    return {"gamma": np.asarray(gamma), "u": np.asarray(u), "s": np.asarray(s)}


def _extras(model: Any, data: ZSLData) -> dict[str, Any]:
    """Extra measurements from ``zsl_bench.attention.extras(model, data)`` when that module exists."""
    import importlib

    try:
        attention = importlib.import_module(f"{__package__}.attention")
    except ModuleNotFoundError as exc:
        if exc.name == f"{__package__}.attention":
            return {}
        raise
    hook = getattr(attention, "extras", None)
    return dict(hook(model, data) or {}) if callable(hook) else {}
