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
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .config import ResolvedConfig, merge, resolve
from .data.zsldata import ZSLData
from .engine import Engine, EvalSplit, PhaseOutcome
from .errors import ConfigError, TrainingError
from .results import METRIC_NAMES, git_commit, package_versions

log = logging.getLogger(__name__)

PROTOCOLS = ("val", "test-oracle")


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

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ConfigError(f"bad protocol {self.protocol!r}; valid: {', '.join(PROTOCOLS)}")


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
    tuned = getattr(method_cls, "tuned_on_val", None)
    if tuned:
        log.info("%s: %s are taken from the config, not tuned on validation here", spec.method, ", ".join(tuned))
    engine = Engine(method_cls, cfg, data)
    ckpt = Path(out_dir) / "ckpt"
    test = EvalSplit("test", data.splits["test_seen"], data.splits["test_unseen"],
                     data.seen_classes, data.unseen_classes)
    common = dict(seed=spec.seed, reporter=reporter, progress=progress)

    if spec.protocol == "val":
        val = EvalSplit("val", data.splits["val_seen"], data.splits["val_unseen"],
                        data.val_seen_classes, data.val_unseen_classes)
        p1 = engine.train(phase="val", train_rows=data.splits["val_train"], seen=data.val_seen_classes,
                          unseen=data.val_unseen_classes, epochs=cfg.train.epochs, evaluation=val,
                          gamma=cfg.eval.gamma, ckpt_path=ckpt / "val.pt", **common)  # type: ignore[arg-type]
        sel = _best(p1, spec)
        gamma = float(cfg.eval.gamma) if cfg.eval.gamma is not None else float(sel["gamma"])
        best_epoch = int(sel["epoch"])
        p2 = engine.train(phase="final", train_rows=data.splits["trainval"], seen=data.seen_classes,
                          unseen=data.unseen_classes, epochs=best_epoch, ckpt_path=ckpt / "final.pt",
                          **common)  # type: ignore[arg-type]
        res = engine.evaluate(p2.model, test, gamma)
        model, history = p2.model, p1.history + p2.history
        selection = {"best_epoch": best_epoch, "gamma": gamma, **{f"val_{k}": float(sel[k]) for k in
                     ("zsl_acc", "u", "s", "h", "ausuc") if k in sel}}
    else:
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
    rows = make_rows(spec, cfg, data, metrics, epoch=best_epoch, wall_time_s=wall)
    log.info("%s %s seed %d (%s): ZSL %.2f  U %.2f  S %.2f  H %.2f  (epoch %d, γ %.3g, %.1fs)",
             spec.method, spec.dataset, spec.seed, spec.protocol, metrics["zsl_acc"], metrics["u"],
             metrics["s"], metrics["h"], best_epoch, gamma, wall)
    return RunResult(spec=spec, config=cfg, metrics=metrics, selection=selection, history=history,
                     curve=_curve(res.get("curve")), rows=rows, wall_time_s=wall, extras=extras)


def make_rows(spec: RunSpec, cfg: ResolvedConfig, data: ZSLData, metrics: dict[str, float], *,
              epoch: int, wall_time_s: float) -> list[dict[str, Any]]:
    """One long-format row per metric, every column of ``results.COLUMNS`` filled."""
    simulated = data.is_simulated
    common = {
        "run_id": f"{spec.method}-{spec.dataset}-seed{spec.seed}-{uuid.uuid4().hex[:8]}",
        "method": spec.method, "variant": spec.variant, "dataset": spec.dataset,
        "source": "simulated" if simulated else "real",
        "sim_preset": (spec.sim_preset or "") if simulated else "",
        "generator_version": str(data.provenance.get("generator_version") or data.provenance.get("generator", ""))
        if simulated else "",
        "data_seed": spec.sim_seed if simulated else "",
        "protocol": spec.protocol, "seed": spec.seed, "gamma": metrics["gamma"], "epoch": epoch,
        "config_hash": cfg.digest(), "config": json.dumps(cfg.as_dict(), sort_keys=True, default=str),
        "git_commit": git_commit(), "versions": package_versions(), "wall_time_s": round(wall_time_s, 3),
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    return [{**common, "metric": m, "value": metrics[m]} for m in METRIC_NAMES]


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
