"""One run: (method, dataset, seed, variant) under a selection protocol -> metrics and result rows.

The protocols themselves (``val`` with its ``tuned_on_val`` grid, ``test-oracle``) are
:mod:`zsl_bench.protocol`'s; this module resolves the config, loads the data, calls the protocol
and turns its outcome into result rows (:func:`make_rows`, the one row builder).
"""

from __future__ import annotations

import json
import logging
import math
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import metrics as metric_specs
from . import protocol
from .config import ResolvedConfig, merge, resolve
from .data.zsldata import ZSLData
from .errors import ConfigError
from .protocol import PROTOCOLS
from .results import git_commit, package_versions

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from .engine import Reporter

__all__ = ["Reporter", "RunResult", "RunSpec", "make_rows", "resolve_config", "run_one"]


def __getattr__(name: str) -> Any:
    # The training stack (torch) is imported by run_one, not by importing this module: study specs,
    # plans and result tables use RunSpec and make_rows without it.
    if name == "Reporter":
        from .engine import Reporter

        return Reporter
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
    run_id: str | None = None  # the rows' run id (a study's unit id); None: a fresh random one

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


def resolve_config(spec: RunSpec, cli_overrides: dict[str, Any] | None = None) -> ResolvedConfig:
    """defaults < method preset for the dataset (< ``paper_presets`` in the ``paper`` variant) <
    ``spec.overrides`` < CLI.

    The protocol's one source is ``spec.protocol``: it is written over any ``eval.protocol`` layer, so
    the resolved ``eval.protocol`` (kept because it is part of the serialized config and its digest,
    which existing results are matched on) always equals it. A ``sim`` section on a real-data run
    (``spec.sim_preset`` None) is a ConfigError.
    """
    from .registry import METHODS

    method_cls = METHODS.get(spec.method)
    cli = merge(cli_overrides, {"eval": {"protocol": spec.protocol}})
    file_layer = spec.overrides
    if spec.variant == PAPER_VARIANT:  # the official schedule where it differs from the presets
        file_layer = merge(method_cls.paper_presets.get(spec.dataset.lower(), {}), spec.overrides)
    return resolve(method_cls, spec.dataset, file_layer, cli, simulated=spec.sim_preset is not None)


# `run --preset paper` runs its units as this variant: its rows say so, and its configs add the
# method's ``paper_presets`` (over ``presets``, under the variant's own overrides: fp32).
PAPER_VARIANT = "paper"
PAPER_OVERRIDES: dict[str, Any] = {"train": {"precision": "fp32"}}


def run_one(spec: RunSpec, *, out_dir: Path, cli_overrides: dict[str, Any] | None = None,
            reporter: Reporter | None = None, progress: bool = True, data: ZSLData | None = None,
            requested: ResolvedConfig | None = None) -> RunResult:
    """Train and evaluate one run; checkpoints go under ``out_dir/ckpt/`` (resumed when present).

    Args:
        spec: what to run.
        out_dir: this run's directory (checkpoints).
        cli_overrides: the CLI config layer (``--set`` and flags), highest precedence.
        reporter: per-epoch hook.
        progress: show progress bars.
        data: an already loaded dataset (else loaded from ``spec``).
        requested: ``resolve_config(spec, cli_overrides)`` when the caller has it already (a study
            runner resolves each unit's config once); else resolved here.

    Returns:
        The run's metrics, selection, history and result rows (not yet written).
    """
    from .engine import Engine
    from .registry import METHODS

    t0 = time.perf_counter()
    if requested is None:
        requested = resolve_config(spec, cli_overrides)
    method_cls = METHODS.get(spec.method)
    if data is None:
        from .data.loader import load_dataset

        data = load_dataset(spec.dataset, spec.data_root, sim_preset=spec.sim_preset, sim_seed=spec.sim_seed,
                            sim_overrides=requested.sim.overrides())
    engine = Engine(method_cls, requested, data)
    common: dict[str, Any] = dict(seed=spec.seed, ckpt_dir=Path(out_dir) / "ckpt", reporter=reporter,
                                  progress=progress)
    if spec.protocol == "val":
        grid = protocol.tuning_grid(method_cls, spec.overrides, cli_overrides)
        out = protocol.select_on_val(engine, grid, **common)
        if spec.select_only:
            return _selection_result(spec, out, requested, data, t0, engine.runtime(), engine.features_label)
        out = protocol.retrain_and_test(engine, out, **common)
    else:
        out = protocol.select_on_test(engine, **common)
    assert out.test is not None
    metrics = {k: float(out.test[k]) for k in metric_specs.names("row")}
    metrics["gamma"] = out.gamma
    # Simulated data with environment-resampled features: the same model scored again on them.
    metrics.update(protocol.context_reliance(engine, out))
    extras = _extras(out.model, data)
    wall = time.perf_counter() - t0
    rows = make_rows(spec, out.config, data, metrics, epoch=out.best_epoch, wall_time_s=wall,
                     config_hash=requested.digest(), extras=extras, runtime=engine.runtime(),
                     features=engine.features_label, names=tuple(metrics))
    log.info("%s %s seed %d (%s): ZSL %.2f  U %.2f  S %.2f  H %.2f  (epoch %d, γ %.3g, %.1fs)",
             spec.method, spec.dataset, spec.seed, spec.protocol, metrics["zsl_acc"], metrics["u"],
             metrics["s"], metrics["h"], out.best_epoch, out.gamma, wall)
    return RunResult(spec=spec, config=out.config, metrics=metrics, selection=out.selection, history=out.history,
                     curve=_curve(out.test.get("curve")), rows=rows, wall_time_s=wall, extras=extras)


def _selection_result(spec: RunSpec, out: protocol.Outcome, requested: ResolvedConfig, data: ZSLData,
                      t0: float, runtime: str = "", features: str = "") -> RunResult:
    """The result of a ``select_only`` run: validation numbers only (rows ``val_*``), no test metrics."""
    val_metrics = {k: v for k, v in out.selection.items() if k.startswith("val_")}
    wall = time.perf_counter() - t0
    rows = make_rows(spec, out.config, data, {**val_metrics, "gamma": out.gamma}, epoch=out.best_epoch,
                     wall_time_s=wall, config_hash=requested.digest(), names=(*val_metrics, "gamma"),
                     runtime=runtime, features=features)
    log.info("%s %s seed %d (val, selection only): val H %.2f (epoch %d, γ %.3g, %.1fs)", spec.method,
             spec.dataset, spec.seed, val_metrics.get("val_h", math.nan), out.best_epoch, out.gamma, wall)
    return RunResult(spec=spec, config=out.config, metrics={}, selection=out.selection, history=out.history,
                     curve={}, rows=rows, wall_time_s=wall, extras={})


def make_rows(spec: RunSpec, cfg: ResolvedConfig, data: ZSLData, metrics: dict[str, float], *,
              epoch: int, wall_time_s: float, config_hash: str | None = None,
              extras: dict[str, Any] | None = None, names: tuple[str, ...] | None = None,
              runtime: str = "", features: str = "") -> list[dict[str, Any]]:
    """One long-format row per metric, every column of ``results.COLUMNS`` filled.

    Numeric ``extras`` (e.g. ``attention_hit_rate_avca`` on simulated data, in %) become rows too,
    so they are reported beside accuracy.

    ``config`` is ``cfg``, the configuration actually trained (tuned values included), so the run
    can be reproduced by passing it explicitly. ``config_hash`` (default ``cfg.digest()``) names
    the requested configuration: the runner passes the digest before tuning, which is what a rerun
    of the same command resolves to and matches on.

    ``runtime`` (:meth:`zsl_bench.engine.Engine.runtime`: device, precision, resident features) is
    appended to the ``versions`` provenance column of CUDA runs; CPU runs add nothing there.

    ``features`` (:attr:`zsl_bench.engine.Engine.features_label`) names the features trained on, e.g.
    ``xlsa17 res101.mat (224 px, pooled)``; ``precision`` is ``cfg.train.precision`` (fp32 | bf16),
    what the engine computed in on any device.
    """
    simulated = data.is_simulated
    common = {
        "run_id": spec.run_id or f"{spec.method}-{spec.dataset}-seed{spec.seed}-{uuid.uuid4().hex[:8]}",
        "method": spec.method, "variant": spec.variant, "dataset": spec.dataset,
        "source": "simulated" if simulated else "real",
        "sim_preset": (spec.sim_preset or "") if simulated else "",
        "generator_version": str(data.provenance.get("generator_version") or data.provenance.get("generator", ""))
        if simulated else "",
        # generated, or real-<digest of the real metadata files> (sim.semantics_label); '' on real data
        "sim_semantics": str(data.provenance.get("semantics") or "") if simulated else "",
        "data_seed": spec.sim_seed if simulated else "",
        "features": features or _features_fallback(data),
        "precision": cfg.train.precision,
        "protocol": spec.protocol, "seed": spec.seed, "gamma": metrics["gamma"], "epoch": epoch,
        "config_hash": config_hash or cfg.digest(), "config": json.dumps(cfg.as_dict(), sort_keys=True, default=str),
        "git_commit": git_commit(), "versions": ";".join(filter(None, (package_versions(), runtime))), "wall_time_s": round(wall_time_s, 3),
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    rows = [{**common, "metric": m, "value": metrics[m]} for m in (names or metric_specs.names("row"))]
    for k, v in sorted((extras or {}).items()):
        if isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v):
            rows.append({**common, "metric": k, "value": float(v)})
    return rows


def _features_fallback(data: ZSLData) -> str:
    """A row's ``features`` when the caller did not say (rows built outside :func:`run_one`)."""
    if data.is_simulated:
        return f"simulated {data.provenance.get('preset') or ''}".rstrip()
    return "unrecorded"


def _curve(curve: Any) -> dict[str, np.ndarray]:
    if curve is None:
        return {}
    if isinstance(curve, dict):
        return {k: np.asarray(v) for k, v in curve.items()}
    gamma, u, s = curve  # (gamma, u, s) triple
    return {"gamma": np.asarray(gamma), "u": np.asarray(u), "s": np.asarray(s)}


def _extras(model: Any, data: ZSLData) -> dict[str, Any]:
    """Extra measurements of ``zsl_bench.attention.extras(model, data)`` (attention hit rates on
    simulated data). Part of the package: if it cannot be imported, the run fails rather than
    silently losing those metrics."""
    from .attention import extras

    return dict(extras(model, data) or {})
