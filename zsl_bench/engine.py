"""The training engine: trains any registered method through one code path and scores test rows.

The engine branches only on what a method declares: ``fits_closed_form`` (one ``fit(x, y)`` call on
all training features) or epochs of mini-batch training with ``forward``/``loss``; ``input``
(pooled or region features). It never evaluates GZSL itself beyond calling
:func:`zsl_bench.protocol.evaluate_scores` on the scores the method returns.

Determinism: a phase seeds ``torch`` and a ``numpy.random.Generator`` from the run seed; the
sampler draws from that generator only. On CPU the same seed gives the same numbers to the last
digit, and resuming from a checkpoint (model, optimizer, RNG states, history; written atomically
every epoch) gives the same final numbers as an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch

from .config import ResolvedConfig, TrainConfig
from .data.store import FeatureSource
from .data.zsldata import ZSLData
from .errors import ConfigError, TrainingError
from .fileio import atomic_path

if TYPE_CHECKING:
    from zsl_bench.contract import ZSLMethod

log = logging.getLogger(__name__)

MEMORY_BUDGET_BYTES = 2 * 1024**3  # features below this are held in memory (on the GPU if it fits)
# Scoring reads at most this many bytes of float32 features per batch: at CUB's 2048 x 196 regions
# a 1024-row batch alone would be 1.6 GB, plus the model's [B, 4A, R] intermediates.
EVAL_CHUNK_BYTES = 128 * 1024**2
CKPT_FORMAT = 1


class EpochReporter(Protocol):
    def on_epoch(self, phase: str, epoch: int, metrics: dict[str, float]) -> None: ...


# ---------------------------------------------------------------- device


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; otherwise the named device (checked)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"bad value for train.device: {name!r}; CUDA is not available here (valid: auto, cpu)")
    try:
        return torch.device(name)
    except RuntimeError:
        raise ConfigError(f"bad value for train.device: {name!r}; valid: auto, cpu, cuda, cuda:N") from None


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast on CUDA only; CPU runs stay fp32 so they are bit-for-bit reproducible."""
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


# ---------------------------------------------------------------- samplers


def uniform_batches(n: int, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """One epoch: a random permutation of positions ``0..n-1`` cut into batches."""
    perm = rng.permutation(n)
    return [perm[s:s + batch_size] for s in range(0, n, batch_size)]


def class_balanced_batches(labels: np.ndarray, batch_size: int, rng: np.random.Generator,
                           num_batches: int | None = None) -> list[np.ndarray]:
    """One epoch of class-balanced batches: classes drawn uniformly, then one image per class.

    Rare classes are as likely to appear as frequent ones (MSDN's sampler on SUN and AWA2, whose
    AWA2 batches hold 40 images of 40 seen classes). Classes are drawn without replacement within
    a batch when the batch is not larger than the number of classes.

    Args:
        labels: class id of each training position.
        batch_size: images per batch.
        rng: the phase's generator.
        num_batches: batches per epoch; default ``ceil(len(labels) / batch_size)``.

    Returns:
        A list of position arrays.
    """
    labels = np.asarray(labels)
    classes, inverse = np.unique(labels, return_inverse=True)
    # Positions of each class, sorted by class, to pick "one image of class c" with one draw.
    order = np.argsort(inverse, kind="stable")
    counts = np.bincount(inverse, minlength=len(classes))
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    if num_batches is None:
        num_batches = math.ceil(len(labels) / batch_size)
    replace = batch_size > len(classes)
    out = []
    for _ in range(num_batches):
        picked = rng.choice(len(classes), size=batch_size, replace=replace)
        offset = (rng.random(batch_size) * counts[picked]).astype(np.int64)
        out.append(order[starts[picked] + offset])
    return out


def epoch_batches(sampler: str, labels: np.ndarray, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    if sampler == "class_balanced":
        return class_balanced_batches(labels, batch_size, rng)
    return uniform_batches(len(labels), batch_size, rng)


# ---------------------------------------------------------------- optimizers


def build_optimizer(params: Any, cfg: TrainConfig) -> torch.optim.Optimizer:
    """The optimizer named by ``train.optimizer`` with ``lr``, ``weight_decay`` and ``momentum``."""
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=cfg.lr, weight_decay=cfg.weight_decay, momentum=cfg.momentum)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, weight_decay=cfg.weight_decay, momentum=cfg.momentum)
    raise ConfigError(f"bad value for train.optimizer: {cfg.optimizer!r}; valid: adam, adamw, rmsprop, sgd")


# ---------------------------------------------------------------- features


class FeatureRows:
    """Features of a fixed list of dataset rows: held in memory when small, else streamed.

    Positions ``0..len(rows)-1`` address ``rows``; :meth:`get` returns ``[B, F]`` or ``[B, F, R]``
    float32 on ``device``.
    """

    def __init__(self, store: FeatureSource, rows: np.ndarray, kind: str, device: torch.device,
                 budget: int = MEMORY_BUDGET_BYTES) -> None:
        self.store, self.kind, self.device = store, kind, device
        self.rows = np.asarray(rows, dtype=np.int64)
        per_row = store.feature_dim * ((store.num_regions or 1) if kind == "regions" else 1) * 4
        self.nbytes = per_row * len(self.rows)
        self._mem: torch.Tensor | None = None
        if self.nbytes <= budget:
            x = torch.from_numpy(store.read(self.rows, kind))
            self._mem = self._place(x)

    def _place(self, x: torch.Tensor) -> torch.Tensor:
        if self.device.type != "cuda":
            return x
        free, _ = torch.cuda.mem_get_info(self.device)
        # Keep half the free memory for the model and activations.
        return x.to(self.device) if self.nbytes < free // 2 else x.pin_memory()

    @property
    def in_memory(self) -> bool:
        return self._mem is not None

    def __len__(self) -> int:
        return len(self.rows)

    def get(self, pos: np.ndarray) -> torch.Tensor:
        if self._mem is not None:
            index = torch.as_tensor(pos, dtype=torch.long, device=self._mem.device)
            return self._mem.index_select(0, index).to(self.device, non_blocking=True)
        return torch.from_numpy(self.store.read(self.rows[pos], self.kind)).to(self.device)

    def all(self) -> torch.Tensor:
        return self.get(np.arange(len(self.rows)))

    def iter_chunks(self, chunk: int) -> Iterator[torch.Tensor]:
        for s in range(0, len(self.rows), chunk):
            yield self.get(np.arange(s, min(s + chunk, len(self.rows))))


# ---------------------------------------------------------------- evaluation splits


@dataclass(frozen=True)
class EvalSplit:
    """One GZSL evaluation: seen rows and unseen rows of the dataset, and the phase's classes."""

    name: str  # "val" | "test"
    seen_rows: np.ndarray
    unseen_rows: np.ndarray
    seen_classes: np.ndarray
    unseen_classes: np.ndarray


def evaluate_split(scores: np.ndarray, labels: np.ndarray, split: EvalSplit, n_seen: int,
                   gamma: float | None) -> dict[str, Any]:
    """Metrics of ``scores`` (rows: seen rows then unseen rows) at ``gamma`` (None: best γ).

    Returns the protocol's dict, with ``u``, ``s``, ``h`` and ``gamma`` at the γ used.
    """
    from .protocol import evaluate_scores

    n = len(labels)
    seen_idx, unseen_idx = np.arange(n_seen), np.arange(n_seen, n)
    res = evaluate_scores(scores, labels, split.seen_classes, split.unseen_classes, seen_idx, unseen_idx,
                          gamma=0.0 if gamma is None else float(gamma))
    if gamma is None:
        res = evaluate_scores(scores, labels, split.seen_classes, split.unseen_classes, seen_idx, unseen_idx,
                              gamma=float(res["best_gamma"]))
    return dict(res)


# ---------------------------------------------------------------- the engine


@dataclass
class PhaseOutcome:
    """What one training phase produced."""

    model: Any
    history: list[dict[str, Any]]
    best: dict[str, Any] | None = None  # the best epoch's evaluation (incl. "epoch" and "curve")
    resumed_from: int = 0  # epochs restored from a checkpoint
    extra: dict[str, Any] = field(default_factory=dict)


class Engine:
    """Trains and scores one method on one dataset.

    Args:
        method_cls: a registered :class:`methods.base.ZSLMethod` subclass.
        cfg: the resolved config.
        data: the dataset (its feature store must hold the method's input kind).
        budget: bytes of features held in memory per row set before streaming from the store.
    """

    def __init__(self, method_cls: type[ZSLMethod], cfg: ResolvedConfig, data: ZSLData,
                 budget: int = MEMORY_BUDGET_BYTES) -> None:
        self.method_cls, self.cfg, self.data = method_cls, cfg, data
        self.kind = method_cls.input
        self.store = data.require_features(self.kind)
        self.device = resolve_device(cfg.train.device)
        self.budget = budget
        self._cache: dict[tuple[int, int], FeatureRows] = {}

    # ------------------------------------------------------------ helpers
    def rows(self, rows: np.ndarray) -> FeatureRows:
        rows = np.asarray(rows, dtype=np.int64)
        key = (len(rows), hash(rows.tobytes()))
        if key not in self._cache:
            # One budget for everything held: row sets cached earlier count against it.
            held = sum(f.nbytes for f in self._cache.values() if f.in_memory)
            self._cache[key] = FeatureRows(self.store, rows, self.kind, self.device, max(0, self.budget - held))
        return self._cache[key]

    def task(self, seen: np.ndarray, unseen: np.ndarray) -> Any:
        from zsl_bench.contract import TaskInfo

        return TaskInfo(
            dataset=self.data.name, att=self.data.att.astype(np.float32), seen=np.asarray(seen, np.int64),
            unseen=np.asarray(unseen, np.int64), feature_dim=self.store.feature_dim,
            regions=self.store.num_regions if self.kind == "regions" else None,
            w2v=self.data.w2v, original_att=self.data.original_att)

    def build_model(self, seen: np.ndarray, unseen: np.ndarray) -> Any:
        model = self.method_cls(self.cfg.method, self.task(seen, unseen))
        return model.to(self.device) if isinstance(model, torch.nn.Module) else model

    @torch.no_grad()
    def score(self, model: Any, rows: np.ndarray) -> np.ndarray:
        """Scores ``[N, K]`` (float32, numpy) of dataset ``rows``, in batches of ``eval_batch_size``."""
        feats = self.rows(rows)
        if isinstance(model, torch.nn.Module):
            model.eval()
        out = []
        with autocast(self.device, self.cfg.train.amp):
            per_row = max(1, feats.nbytes // max(1, len(feats)))
            chunk = max(1, min(self.cfg.train.eval_batch_size, EVAL_CHUNK_BYTES // per_row))
            for x in feats.iter_chunks(chunk):
                out.append(model.scores(x).float().cpu())
        if not out:
            return np.zeros((0, self.data.num_classes), dtype=np.float32)
        return torch.cat(out).numpy()

    def evaluate(self, model: Any, split: EvalSplit, gamma: float | None) -> dict[str, Any]:
        rows = np.concatenate([split.seen_rows, split.unseen_rows])
        scores = self.score(model, rows)
        if not np.isfinite(scores).all():
            raise TrainingError(f"{self.method_cls.name}: non-finite scores on the {split.name} split")
        return evaluate_split(scores, self.data.labels[rows], split, len(split.seen_rows), gamma)

    # ------------------------------------------------------------ training
    def train(self, *, phase: str, train_rows: np.ndarray, seen: np.ndarray, unseen: np.ndarray,
              epochs: int, seed: int, evaluation: EvalSplit | None = None, gamma: float | None = None,
              ckpt_path: Path | None = None, reporter: EpochReporter | None = None,
              progress: bool = True) -> PhaseOutcome:
        """Train a fresh model on ``train_rows``; evaluate on ``evaluation`` after each epoch.

        Args:
            phase: label of this phase in the history (``val``, ``final``, ``oracle``).
            train_rows: dataset rows to train on.
            seen, unseen: the phase's classes (given to the method as its :class:`TaskInfo`).
            epochs: epochs to train (ignored by closed-form methods).
            seed: the run seed.
            evaluation: where to evaluate after each epoch (None: no evaluation).
            gamma: calibration γ for that evaluation (None: the best γ per epoch).
            ckpt_path: checkpoint file, written every epoch and resumed from when it matches.
            reporter: gets ``on_epoch(phase, epoch, metrics)``; may raise to stop.
            progress: show a progress bar.
        """
        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        model = self.build_model(seen, unseen)
        labels = self.data.labels[np.asarray(train_rows, dtype=np.int64)]
        if self.method_cls.fits_closed_form:
            return self._fit_closed_form(model, phase, train_rows, labels, evaluation, gamma, reporter)
        if epochs < 1:
            raise ConfigError(f"bad value for train.epochs: {epochs}; {self.method_cls.name} trains by epochs, "
                              "valid: an integer >= 1")
        return self._train_epochs(model, phase, train_rows, labels, epochs, seed, rng, evaluation, gamma,
                                  ckpt_path, reporter, progress)

    def _fit_closed_form(self, model: Any, phase: str, train_rows: np.ndarray, labels: np.ndarray,
                         evaluation: EvalSplit | None, gamma: float | None,
                         reporter: EpochReporter | None) -> PhaseOutcome:
        x = self.rows(train_rows).all()
        y = torch.as_tensor(labels, dtype=torch.long, device=self.device)
        model.fit(x, y)
        entry: dict[str, Any] = {"phase": phase, "epoch": 0}
        best = None
        if evaluation is not None:
            res = self.evaluate(model, evaluation, gamma)
            entry.update(_eval_entry(res, evaluation.name))
            best = {**res, "epoch": 0}
        if reporter is not None:
            reporter.on_epoch(phase, 0, _numeric(entry))
        return PhaseOutcome(model=model, history=[entry], best=best)

    def _train_epochs(self, model: Any, phase: str, train_rows: np.ndarray, labels: np.ndarray, epochs: int,
                      seed: int, rng: np.random.Generator, evaluation: EvalSplit | None, gamma: float | None,
                      ckpt_path: Path | None, reporter: EpochReporter | None, progress: bool) -> PhaseOutcome:
        from tqdm.auto import tqdm

        tc = self.cfg.train
        opt = build_optimizer([p for p in model.parameters() if p.requires_grad], tc)
        history: list[dict[str, Any]] = []
        best: dict[str, Any] | None = None
        best_state: dict[str, Any] | None = None
        start = 0
        fingerprint = self._fingerprint(phase, seed, train_rows)
        state = _load_checkpoint(ckpt_path, fingerprint, epochs)
        if state is not None:
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            rng.bit_generator.state = state["numpy_rng"]
            torch.set_rng_state(state["torch_rng"])
            if self.device.type == "cuda" and state.get("cuda_rng") is not None:
                torch.cuda.set_rng_state(state["cuda_rng"], self.device)
            history, best, best_state = state["history"], state["best"], state["best_state"]
            start = int(state["epoch"])
            log.info("%s: resuming phase %s from %s at epoch %d", self.method_cls.name, phase, ckpt_path, start)

        feats = self.rows(train_rows)
        y_all = torch.as_tensor(labels, dtype=torch.long)
        bar = tqdm(total=epochs, initial=start, desc=f"{self.method_cls.name} {self.data.name} {phase}",
                   disable=not progress, leave=False, unit="ep")
        try:
            for epoch in range(start + 1, epochs + 1):
                model.train()
                sums: dict[str, float] = {}
                batches = epoch_batches(tc.sampler, labels, tc.batch_size, rng)
                for step, pos in enumerate(batches, 1):
                    x = feats.get(pos)
                    y = y_all[torch.as_tensor(pos, dtype=torch.long)].to(self.device)
                    with autocast(self.device, tc.amp):
                        terms = model.loss(model(x), y)
                    _check_finite(terms, self.method_cls.name, phase, epoch, step)
                    opt.zero_grad(set_to_none=True)
                    terms["loss"].backward()
                    if tc.grad_clip > 0:
                        torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
                    opt.step()
                    for k, v in terms.items():
                        sums[k] = sums.get(k, 0.0) + float(v.detach())
                entry: dict[str, Any] = {"phase": phase, "epoch": epoch}
                entry.update({k: v / max(len(batches), 1) for k, v in sums.items()})
                if evaluation is not None and (epoch % tc.eval_every == 0 or epoch == epochs):
                    res = self.evaluate(model, evaluation, gamma)
                    entry.update(_eval_entry(res, evaluation.name))
                    if best is None or res["h"] > best["h"]:
                        best = {**res, "epoch": epoch}
                        best_state = _cpu_state(model)
                history.append(entry)
                h = entry.get(f"{evaluation.name}_h") if evaluation is not None else None
                bar.set_postfix(loss=f"{entry.get('loss', float('nan')):.4f}", H="-" if h is None else f"{h:.2f}")
                bar.update(1)
                if ckpt_path is not None:
                    _save_checkpoint(ckpt_path, {
                        "format": CKPT_FORMAT, "fingerprint": fingerprint, "epoch": epoch,
                        "model": model.state_dict(), "optimizer": opt.state_dict(),
                        "numpy_rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
                        "cuda_rng": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None,
                        "history": history, "best": best, "best_state": best_state,
                    })
                if reporter is not None:
                    reporter.on_epoch(phase, epoch, _numeric(entry))
        finally:
            bar.close()
        return PhaseOutcome(model=model, history=history, best=best, resumed_from=start,
                            extra={"best_state": best_state})

    def _fingerprint(self, phase: str, seed: int, train_rows: np.ndarray) -> dict[str, Any]:
        """What must match for a checkpoint to be resumed (everything but the number of epochs)."""
        import hashlib

        cfg = self.cfg.as_dict()
        cfg["train"] = {k: v for k, v in cfg["train"].items() if k not in ("epochs", "device", "eval_batch_size")}
        rows = hashlib.sha256(np.asarray(train_rows, dtype=np.int64).tobytes()).hexdigest()[:16]
        return {"method": self.method_cls.name, "dataset": self.data.name, "phase": phase, "seed": seed,
                "config": cfg, "rows": rows}


# ---------------------------------------------------------------- small helpers


def _eval_entry(res: dict[str, Any], split: str) -> dict[str, float]:
    """History keys of one evaluation, prefixed by the split (``val_h``, ``test_h``, ...)."""
    keys = ("zsl_acc", "u", "s", "h", "gamma", "ausuc", "best_h", "best_gamma")
    return {f"{split}_{k}": float(res[k]) for k in keys if k in res}


def _numeric(entry: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in entry.items() if isinstance(v, (int, float)) and k != "epoch"}


def _check_finite(terms: dict[str, torch.Tensor], name: str, phase: str, epoch: int, step: int) -> None:
    if "loss" not in terms:
        raise TrainingError(f"{name}.loss() returned no 'loss' term (got {', '.join(terms)})")
    bad = [k for k, v in terms.items() if not torch.isfinite(v.detach()).all()]
    if bad:
        # Name the culprit term, not just the total it contaminates.
        culprit = next((k for k in bad if k != "loss"), "loss")
        value = float(terms[culprit].detach().float().reshape(-1)[0])
        raise TrainingError(f"{name}: non-finite loss in phase {phase}, epoch {epoch}, step {step}: "
                            f"term '{culprit}' = {value}; lower train.lr or check the input features")


def _cpu_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def _save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    for orphan in path.parent.glob(f".{path.name}.*.tmp*"):  # left by a kill mid-save; one writer per run
        orphan.unlink(missing_ok=True)
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def _load_checkpoint(path: Path | None, fingerprint: dict[str, Any], epochs: int) -> dict[str, Any] | None:
    if path is None or not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # a corrupt checkpoint is not fatal: train from scratch
        log.warning("ignoring unreadable checkpoint %s (%s)", path, exc)
        return None
    if state.get("format") != CKPT_FORMAT or state.get("fingerprint") != fingerprint:
        log.info("checkpoint %s belongs to another configuration; starting afresh", path)
        return None
    if int(state["epoch"]) > epochs:
        log.info("checkpoint %s is past epoch %d; starting afresh", path, epochs)
        return None
    return copy.copy(state)
