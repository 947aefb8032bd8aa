"""The training engine: trains any registered method through one code path and scores test rows.

The engine branches only on what a method declares: ``fits_closed_form`` (one ``fit(x, y)`` call on
all training features) or epochs of mini-batch training with ``forward``/``loss``; ``input``
(pooled or region features). It never evaluates GZSL itself beyond calling
:func:`zsl_bench.protocol.evaluate_scores` on the scores the method returns.

Determinism: a phase seeds ``torch`` and a ``numpy.random.Generator`` from the run seed; the
sampler draws from that generator only. On CPU the same seed gives the same numbers to the last
digit, and resuming from a checkpoint (model, optimizer, RNG states, history; written atomically
every epoch) gives the same final numbers as an uninterrupted run.

**Precision** is ``train.precision`` on every device: ``fp32`` (the default; what the official codes
compute; TF32 off on CUDA) or ``bf16`` (autocast of forward, loss and scoring on CUDA and on CPU; an
explicit choice). ``fit()`` of closed-form and generative methods runs outside autocast (fp32) either
way. Every row records it (column ``precision``); rows of a CUDA run also name the device in their
``versions`` column (:meth:`Engine.runtime`).

On CUDA (nothing here changes the CPU path, whose numbers stay bit-identical):

* **features resident on the device**: the whole dataset is copied once to the GPU when it fits in
  ``RESIDENT_FRACTION`` of the free memory: fp32 for fp32 runs, fp16 for bf16 runs (ResNet features
  are post-ReLU and far below fp16's 65504; fp16 keeps 3 more mantissa bits than bf16 at the same
  size; bf16 if a value does not fit). Batches are gathered on the device and cast to fp32 there.
* **no host synchronisation per step**: an epoch's batch positions go to the device in one copy;
  loss terms are summed on the device and the non-finite check is a device flag (the first bad step
  of each term), both read once at the end of the epoch, which then raises naming the epoch, the
  step and the term. Scores are kept on the device and copied back once per evaluation.
* ``ZSL_BENCH_COMPILE=1`` wraps each model's ``forward`` in ``torch.compile`` (CUDA only). It is an
  execution switch, like the thread count, not a config field, so config digests do not change.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch

from .config import ResolvedConfig, TrainConfig
from .data.store import FeatureSource
from .data.zsldata import ZSLData
from .errors import ConfigError, DataError, TrainingError
from .fileio import atomic_path
from .protocol import evaluate_scores, select_best

if TYPE_CHECKING:
    from zsl_bench.contract import TaskInfo, ZSLMethod

log = logging.getLogger(__name__)

MEMORY_BUDGET_BYTES = 2 * 1024**3  # features below this are held in memory (on the GPU if it fits)
# Scoring reads at most this many bytes of float32 features per batch: at CUB's 2048 x 196 regions
# a 1024-row batch alone would be 1.6 GB, plus the model's [B, 4A, R] intermediates.
EVAL_CHUNK_BYTES = 128 * 1024**2
# Scoring on CUDA gathers up to this many bytes of fp32 features per chunk (scores stay on the device).
EVAL_CHUNK_BYTES_CUDA = 1024**3
# Share of the free GPU memory the resident features may take (the rest: model, activations, scoring).
RESIDENT_FRACTION = 0.6
# Rows copied to the device per transfer when features are made resident.
RESIDENT_COPY_ROWS = 256
CKPT_FORMAT = 1


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


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast on ``device`` (CUDA or CPU) when ``precision`` is ``"bf16"``; fp32: nothing."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if precision != "fp32":
        raise ConfigError(f"bad value for train.precision: {precision!r}; valid: fp32 or bf16")
    return contextlib.nullcontext()


def precision_of(device: torch.device, precision: str) -> str:
    """What an engine on ``device`` computes in for ``train.precision``: the same on every device."""
    return precision


def _compile_requested() -> bool:
    import os

    return os.environ.get("ZSL_BENCH_COMPILE", "").strip().lower() in ("1", "true", "yes")


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


def steps_per_epoch(n: int, batch_size: int, epoch_batch_size: int = 0) -> int | None:
    """Steps of an epoch over ``n`` training images (``train.epoch_batch_size``).

    None for the default (0): one pass, ``ceil(n / batch_size)`` steps, the last one possibly
    short. ``epoch_batch_size = N > 0``: ``max(1, floor(n / N))`` full batches, the epoch length of
    the official MSDN scripts (``niters = n·epochs // 50``, an evaluation every ``niters // epochs``
    steps, which is ``floor(n / 50)``), whatever batch the loader delivers.
    """
    if epoch_batch_size <= 0:
        return None
    return max(1, n // epoch_batch_size)


def epoch_batches(sampler: str, labels: np.ndarray, batch_size: int, rng: np.random.Generator,
                  num_batches: int | None = None) -> list[np.ndarray]:
    """One epoch's batches; ``num_batches`` (from :func:`steps_per_epoch`) fixes their number.

    With ``num_batches`` the uniform sampler cuts full batches from a permutation (more
    permutations follow when one is not enough); without it, one permutation, last batch short.
    """
    if sampler == "class_balanced":
        return class_balanced_batches(labels, batch_size, rng, num_batches)
    n = len(labels)
    if num_batches is None or n == 0:
        return uniform_batches(n, batch_size, rng)
    need = num_batches * batch_size
    perm = rng.permutation(n)
    while len(perm) < need:
        perm = np.concatenate([perm, rng.permutation(n)])
    return [perm[s:s + batch_size] for s in range(0, need, batch_size)]


def trainer_batches(tc: TrainConfig, labels: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
    """The batches of one epoch as the trainer draws them under ``tc`` (sampler, epoch length)."""
    return epoch_batches(tc.sampler, labels, tc.batch_size, rng,
                         steps_per_epoch(len(labels), tc.batch_size, tc.epoch_batch_size))


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
                 budget: int = MEMORY_BUDGET_BYTES, resident: torch.Tensor | None = None) -> None:
        self.store, self.kind, self.device = store, kind, device
        self.rows = np.asarray(rows, dtype=np.int64)
        per_row = store.feature_dim * ((store.num_regions or 1) if kind == "regions" else 1) * 4
        self.nbytes = per_row * len(self.rows)
        self._mem: torch.Tensor | None = None
        # CUDA: the whole dataset on the device (Engine.resident); these rows index into it there.
        self._resident = resident
        self._index: torch.Tensor | None = None
        if resident is not None:
            self._index = torch.as_tensor(self.rows, dtype=torch.long).to(resident.device)
            self.nbytes = 0  # held once for every row set, not per row set
        elif self.nbytes <= budget:
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

    @property
    def on_device(self) -> bool:
        """Whether batches are gathered on the device without a host transfer."""
        return self._resident is not None or (self._mem is not None and self._mem.device.type != "cpu")

    def gather(self, pos: torch.Tensor) -> torch.Tensor:
        """fp32 features of positions ``pos`` (a device tensor), gathered where they are held."""
        if self._resident is not None:
            assert self._index is not None
            return self._resident.index_select(0, self._index.index_select(0, pos)).float()
        if self._mem is not None and self._mem.device == pos.device:
            return self._mem.index_select(0, pos)
        return self.get(pos.cpu().numpy())

    def __len__(self) -> int:
        return len(self.rows)

    def get(self, pos: np.ndarray) -> torch.Tensor:
        if self._resident is not None:
            return self.gather(torch.as_tensor(pos, dtype=torch.long).to(self._resident.device))
        if self._mem is not None:
            index = torch.as_tensor(pos, dtype=torch.long, device=self._mem.device)
            return self._mem.index_select(0, index).to(self.device, non_blocking=True)
        return torch.from_numpy(self.store.read(self.rows[pos], self.kind)).to(self.device)

    def all(self) -> torch.Tensor:
        return self.get(np.arange(len(self.rows)))

    def iter_chunks(self, chunk: int) -> Iterator[torch.Tensor]:
        if self.on_device:
            pos = torch.arange(len(self.rows), device=self.device)
            for s in range(0, len(self.rows), chunk):
                yield self.gather(pos[s:s + chunk])
            return
        for s in range(0, len(self.rows), chunk):
            yield self.get(np.arange(s, min(s + chunk, len(self.rows))))


def load_resident(store: FeatureSource, kind: str, device: torch.device, dtype: torch.dtype,
                  fraction: float = RESIDENT_FRACTION) -> torch.Tensor | None:
    """All rows of ``store`` on the CUDA ``device`` in ``dtype``, or None when they do not fit.

    Copied ``RESIDENT_COPY_ROWS`` rows at a time, so the host never holds more than one chunk in
    fp32. fp16 storage falls back to bf16 when a value exceeds fp16's range.
    """
    if device.type != "cuda":
        return None
    n = store.num_rows
    per_row = store.feature_dim * ((store.num_regions or 1) if kind == "regions" else 1)
    free, _ = torch.cuda.mem_get_info(device)
    nbytes = n * per_row * torch.empty((), dtype=dtype).element_size()
    if nbytes > fraction * free:
        log.info("features (%.1f GB as %s) do not fit in %.0f%% of the GPU's free %.1f GB; streaming them",
                 nbytes / 1e9, dtype, 100 * fraction, free / 1e9)
        return None
    shape = (n, store.feature_dim) + ((store.num_regions or 1,) if kind == "regions" else ())
    out = torch.empty(shape, dtype=dtype, device=device)
    limit = torch.finfo(dtype).max if dtype == torch.float16 else math.inf
    too_big = False
    for s in range(0, n, RESIDENT_COPY_ROWS):
        chunk = torch.from_numpy(store.read(np.arange(s, min(s + RESIDENT_COPY_ROWS, n)), kind))
        if dtype == torch.float16 and float(chunk.abs().max()) > limit:
            too_big = True
            break
        out[s:s + len(chunk)].copy_(chunk.to(device, non_blocking=False))
    if too_big:
        del out
        return load_resident(store, kind, device, torch.bfloat16, fraction)
    return out


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
    n = len(labels)
    return evaluate_scores(scores, labels, split.seen_classes, split.unseen_classes, np.arange(n_seen),
                           np.arange(n_seen, n), gamma=gamma)


# ---------------------------------------------------------------- the trainer and its hooks


class Reporter(Protocol):
    """Per-epoch observer outside the engine (MLflow, Optuna pruning); ``on_epoch`` may raise to stop."""

    def on_epoch(self, phase: str, epoch: int, metrics: dict[str, float]) -> None: ...


class Hook:
    """Something done around a phase's epochs (detectron2's ``HookBase``); every method is a no-op.

    Hooks run in list order at each point; they read and write the trainer's state (``epoch``,
    ``entry``, ``history``, ``best``, ...).
    """

    def before_train(self, t: Trainer) -> None:
        """After the model (and optimizer) are built, before the first epoch."""

    def after_step(self, t: Trainer) -> None:
        """After an optimizer step (``t.step``); gradients are still on the parameters."""

    def after_epoch(self, t: Trainer) -> None:
        """After an epoch's steps; ``t.entry`` (already in ``t.history``) holds its loss terms."""

    def after_train(self, t: Trainer) -> None:
        """After the last epoch, or when an epoch raised."""

    def should_stop(self, t: Trainer) -> bool:
        """Before each epoch: True ends the phase there (early stopping); checked after a resume too."""
        return False


class Trainer:
    """One training phase: a loop over epochs and the hooks around it (detectron2's ``TrainerBase``).

    A method trained by epochs runs ``epochs`` epochs of mini-batch steps; a closed-form method runs
    one "epoch" 0 that calls ``fit`` on all training rows. Everything else (evaluation, best epoch,
    checkpoints, progress, reporting) is a :class:`Hook`.

    Attributes:
        epoch: the epoch running (or last run); ``start``: epochs restored before the first one.
        step: the step just taken within the epoch (1-based).
        entry: the current epoch's history record ``{"phase", "epoch", <loss terms>, <split>_h, ...}``.
        history: every epoch's record, resumed epochs included.
        best, best_state: the best evaluated epoch's evaluation (incl. ``"epoch"`` and ``"curve"``)
            and a CPU copy of the model's weights then (epoch-trained methods only).
        last_eval: the current epoch's evaluation, None when it was not evaluated.
    """

    def __init__(self, engine: Engine, model: ZSLMethod, *, phase: str, train_rows: np.ndarray, epochs: int,
                 seed: int, hooks: Sequence[Hook] = ()) -> None:
        self.engine, self.model, self.phase, self.seed = engine, model, phase, seed
        self.train_rows = np.asarray(train_rows, dtype=np.int64)
        self.labels = engine.data.labels[self.train_rows]
        self.closed_form = bool(engine.method_cls.fits_closed_form)
        self.epochs = 0 if self.closed_form else epochs
        self.rng = np.random.default_rng(seed)
        tc = engine.cfg.train
        self.opt: torch.optim.Optimizer | None = None if self.closed_form else \
            build_optimizer([p for p in model.parameters() if p.requires_grad], tc)
        self.hooks = list(hooks)
        self.epoch = self.start = self.step = 0
        self.entry: dict[str, Any] = {}
        self.history: list[dict[str, Any]] = []
        self.best: dict[str, Any] | None = None
        self.best_state: dict[str, Any] | None = None
        self.last_eval: dict[str, Any] | None = None
        # CUDA: loss terms and the non-finite check stay on the device until the epoch ends.
        self.deferred = engine.deferred_checks
        self._y_dev: torch.Tensor | None = None
        # Plain per-image SGD on a method with an exact fast path for it (ZSLMethod.per_image_sgd).
        self.per_image = (not self.closed_form and engine.method_cls.per_image_sgd and tc.batch_size == 1
                          and tc.optimizer == "sgd" and tc.momentum == 0 and tc.weight_decay == 0
                          and tc.grad_clip == 0 and engine.precision == "fp32")

    def train(self) -> PhaseOutcome:
        if not self.closed_form and self.model.wants_training_features:
            # Deterministic in the phase's rows, so a resumed phase sees the same statistics.
            with torch.no_grad():
                self.model.observe_training_features(self.engine.rows(self.train_rows).all())
        for h in self.hooks:
            h.before_train(self)
        try:
            for epoch in range(self.start + 1, self.epochs + 1) if not self.closed_form else (0,):
                if any(h.should_stop(self) for h in self.hooks):
                    break
                self.epoch, self.last_eval = epoch, None
                self.entry = {"phase": self.phase, "epoch": epoch, **self.run_epoch()}
                self.history.append(self.entry)
                for h in self.hooks:
                    h.after_epoch(self)
        finally:
            for h in self.hooks:
                h.after_train(self)
        return PhaseOutcome(model=self.model, history=self.history, best=self.best, resumed_from=self.start,
                            extra={} if self.closed_form else {"best_state": self.best_state})

    def run_epoch(self) -> dict[str, float]:
        """One epoch of steps (or the closed-form fit); returns the mean of each loss term."""
        eng, model = self.engine, self.model
        if self.closed_form:
            x = eng.rows(self.train_rows).all()
            model.fit(x, torch.as_tensor(self.labels, dtype=torch.long, device=eng.device))
            return {}
        assert self.opt is not None
        if self.per_image:
            return self._run_epoch_per_image()
        if self.deferred:
            return self._run_epoch_deferred()
        tc = eng.cfg.train
        feats = eng.rows(self.train_rows)
        y_all = torch.as_tensor(self.labels, dtype=torch.long)
        model.train()
        sums: dict[str, float] = {}
        batches = trainer_batches(tc, self.labels, self.rng)
        for step, pos in enumerate(batches, 1):
            x = feats.get(pos)
            y = y_all[torch.as_tensor(pos, dtype=torch.long)].to(eng.device)
            with autocast(eng.device, tc.precision):
                terms = model.loss(model(x), y)
            _check_finite(terms, eng.method_cls.name, self.phase, self.epoch, step)
            self.opt.zero_grad(set_to_none=True)
            terms["loss"].backward()
            if tc.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
            self.opt.step()
            self.step = step
            for h in self.hooks:
                h.after_step(self)
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach())
        return {k: v / max(len(batches), 1) for k, v in sums.items()}

    def _run_epoch_per_image(self) -> dict[str, float]:
        """:meth:`run_epoch` for plain SGD with batch 1 through the method's ``sgd_per_image``: the same
        images in the same order (one draw of the sampler), one step each, without autograd."""
        eng, model = self.engine, self.model
        tc = eng.cfg.train
        batches = epoch_batches(tc.sampler, self.labels, tc.batch_size, self.rng)
        if not batches:
            return {}
        order = np.concatenate(batches)
        x = eng.rows(self.train_rows).get(order)
        y = torch.as_tensor(self.labels[order], dtype=torch.long).to(eng.device)
        model.train()
        with torch.no_grad():
            terms = model.sgd_per_image(x, y, tc.lr)
        if "loss" not in terms:
            raise TrainingError(f"{eng.method_cls.name}.sgd_per_image() returned no 'loss' term (got {', '.join(terms)})")
        out: dict[str, float] = {}
        for k, v in terms.items():
            bad = ~torch.isfinite(v)
            if bool(bad.any()):
                step = int(torch.nonzero(bad)[0, 0]) + 1
                raise TrainingError(f"{eng.method_cls.name}: non-finite loss in phase {self.phase}, epoch {self.epoch}, "
                                    f"step {step}: term '{k}'; lower train.lr or check the input features")
            out[k] = float(v.double().mean())
        self.step = len(order)
        return out

    def _run_epoch_deferred(self) -> dict[str, float]:
        """:meth:`run_epoch` without a host synchronisation per step (the CUDA path).

        The same batches (drawn from the same generator) and the same steps; what differs is when
        the host looks: the epoch's positions go to the device in one copy, features and labels are
        gathered there, and each step adds its loss terms to a device sum and records the first step
        at which a term was non-finite. One read at the end of the epoch yields the means, or a
        :class:`TrainingError` naming the epoch, the first bad step and the term.
        """
        eng, model = self.engine, self.model
        assert self.opt is not None
        tc = eng.cfg.train
        feats = eng.rows(self.train_rows)
        dev = eng.device
        if self._y_dev is None:
            self._y_dev = torch.as_tensor(self.labels, dtype=torch.long).to(dev)
        model.train()
        batches = trainer_batches(tc, self.labels, self.rng)
        if not batches:
            return {}
        flat = torch.from_numpy(np.concatenate(batches).astype(np.int64, copy=False))
        pos_all = flat.pin_memory().to(dev, non_blocking=True) if dev.type == "cuda" else flat.to(dev)
        bounds = np.cumsum([0] + [len(b) for b in batches])
        keys: list[str] | None = None
        sums = first_bad = None
        params = [p for p in model.parameters() if p.requires_grad] if tc.grad_clip > 0 else []
        for step in range(1, len(batches) + 1):
            pos = pos_all[bounds[step - 1]:bounds[step]]
            x = feats.gather(pos)
            y = self._y_dev.index_select(0, pos)
            with autocast(dev, tc.precision):
                terms = model.loss(model(x), y)
            if keys is None:
                if "loss" not in terms:
                    raise TrainingError(f"{eng.method_cls.name}.loss() returned no 'loss' term "
                                        f"(got {', '.join(terms)})")
                keys = list(terms)
                sums = torch.zeros(len(keys), dtype=torch.float32, device=dev)
                first_bad = torch.zeros(len(keys), dtype=torch.long, device=dev)
            elif list(terms) != keys:
                raise TrainingError(f"{eng.method_cls.name}.loss() returned terms {', '.join(terms)} at step "
                                    f"{step}, {', '.join(keys)} before; the terms must be the same every step")
            assert sums is not None and first_bad is not None
            vals = torch.stack([terms[k].detach().float().reshape(()) for k in keys])  # [T]
            bad = ~torch.isfinite(vals)
            first_bad = torch.where(bad & (first_bad == 0), torch.full_like(first_bad, step), first_bad)
            sums = sums + torch.nan_to_num(vals, nan=0.0, posinf=0.0, neginf=0.0)
            self.opt.zero_grad(set_to_none=True)
            terms["loss"].backward()
            if params:
                torch.nn.utils.clip_grad_norm_(params, tc.grad_clip)
            self.opt.step()
            self.step = step
            for h in self.hooks:
                h.after_step(self)
        assert keys is not None and sums is not None and first_bad is not None
        # The one synchronisation of the epoch.
        host = torch.cat([sums.double(), first_bad.double()]).cpu().numpy()
        mean, first = host[:len(keys)] / len(batches), host[len(keys):].astype(np.int64)
        if first.any():
            step = int(first[first > 0].min())
            at = [k for k, f in zip(keys, first) if f == step]
            culprit = next((k for k in at if k != "loss"), at[0])
            raise TrainingError(f"{eng.method_cls.name}: non-finite loss in phase {self.phase}, epoch {self.epoch}, "
                                f"step {step}: term '{culprit}' (first non-finite at that step; checked at the "
                                f"end of the epoch on {dev.type}); lower train.lr or check the input features")
        return {k: float(v) for k, v in zip(keys, mean)}


class EvalHook(Hook):
    """Evaluates GZSL on ``split`` every ``train.eval_every`` epochs and after the last one.

    Sets ``t.last_eval`` and adds the ``<split>_*`` numbers to the epoch's record.

    Args:
        gamma: calibration γ (None: each evaluation's best γ).
    """

    def __init__(self, split: EvalSplit, gamma: float | None) -> None:
        self.split, self.gamma = split, gamma

    def after_epoch(self, t: Trainer) -> None:
        if t.epoch % t.engine.cfg.train.eval_every == 0 or t.epoch == t.epochs:
            t.last_eval = t.engine.evaluate(t.model, self.split, self.gamma)
            t.entry.update(_eval_entry(t.last_eval, self.split.name))


class BestHook(Hook):
    """Keeps the evaluated epoch with the highest H (:func:`zsl_bench.protocol.select_best`) and, when
    training by epochs, a CPU copy of its weights (test-oracle reports that epoch's model)."""

    def after_epoch(self, t: Trainer) -> None:
        if t.last_eval is None:
            return
        res = {**t.last_eval, "epoch": t.epoch}
        if t.best is None or select_best([t.best, res]) is res:  # the protocol's rule: ties -> earliest
            t.best = res
            if not t.closed_form:
                t.best_state = _cpu_state(t.model)


class FitSelectHook(Hook):
    """Evaluation and selection inside ``fit`` for methods that declare ``selects_in_fit``.

    Before the fit it gives the model a monitor (``model.fit_monitor``, the
    :class:`zsl_bench.contract.FitMonitor` protocol); every ``gzsl(values)`` call evaluates the
    model's scores on ``split`` now (one ``evaluate_scores`` call), every ``zsl(values)`` call its
    ZSL accuracy (``zsl_scores`` when ``separate_zsl_scores``). After the fit, the phase's best is
    the GZSL candidate with the highest H (:func:`zsl_bench.protocol.select_best`, ties -> earliest)
    with ``zsl_acc`` of the best ZSL candidate (none reported: the GZSL candidate's own), ``epoch``
    from its values (``gan_epochs``, else 0), and ``fit_values``: both candidates' values, which
    phase 2 of ``val`` retrains with. The record also lands in the epoch's history entry, as
    ``EvalHook`` would write it, with ``candidates`` (how many GZSL states were evaluated).
    """

    def __init__(self, split: EvalSplit, gamma: float | None) -> None:
        self.split, self.gamma = split, gamma
        self.best_gzsl: dict[str, Any] | None = None
        self.best_zsl: dict[str, Any] | None = None
        self.count = 0
        self._trainer: Trainer | None = None

    def before_train(self, t: Trainer) -> None:
        self._trainer = t
        self.best_gzsl = self.best_zsl = None
        self.count = 0
        t.model.fit_monitor = self

    def gzsl(self, values: dict[str, Any]) -> None:
        assert self._trainer is not None
        t = self._trainer
        res = {**t.engine.evaluate(t.model, self.split, self.gamma), "fit_values": dict(values)}
        self.count += 1
        if self.best_gzsl is None or select_best([self.best_gzsl, res]) is res:
            self.best_gzsl = res

    def zsl(self, values: dict[str, Any]) -> None:
        assert self._trainer is not None
        t = self._trainer
        acc = (t.engine.evaluate_zsl(t.model, self.split) if t.engine.method_cls.separate_zsl_scores
               else t.engine.evaluate(t.model, self.split, self.gamma)["zsl_acc"])
        res = {"zsl_acc": acc, "fit_values": dict(values)}
        if self.best_zsl is None or select_best([self.best_zsl, res], "zsl_acc") is res:
            self.best_zsl = res

    def after_epoch(self, t: Trainer) -> None:
        if self.best_gzsl is None:
            return  # nothing reported: no best (the protocol says no epoch was evaluated)
        best = dict(self.best_gzsl)
        values = dict(best["fit_values"])
        if self.best_zsl is not None:
            best["zsl_acc"] = self.best_zsl["zsl_acc"]
            values.update(self.best_zsl["fit_values"])
        best["fit_values"] = values
        t.last_eval = best
        t.entry.update(_eval_entry(best, self.split.name))
        t.entry["candidates"] = float(self.count)
        t.best = {**best, "epoch": int(values.get("gan_epochs", 0))}

    def after_train(self, t: Trainer) -> None:
        t.model.fit_monitor = None
        self._trainer = None


class EarlyStopHook(Hook):
    """Ends a phase once more than ``patience`` epochs have passed since the best evaluated one
    (``ZSLMethod.early_stop``). Reads only the history and the best epoch, so a resumed phase stops
    where the uninterrupted one did."""

    def __init__(self, patience: int) -> None:
        self.patience = patience

    def should_stop(self, t: Trainer) -> bool:
        if t.best is None or not t.history:
            return False
        return int(t.history[-1]["epoch"]) - int(t.best["epoch"]) > self.patience


class CheckpointHook(Hook):
    """Resumes from ``path`` when it belongs to this phase, and saves every epoch (atomically).

    A checkpoint holds the model, optimizer, RNG states, history and best epoch, so a resumed phase
    ends with the same numbers as an uninterrupted one.

    Args:
        path: the checkpoint file.
        fingerprint: what must match to resume (see :meth:`Engine.fingerprint`).
    """

    def __init__(self, path: Path, fingerprint: dict[str, Any]) -> None:
        self.path, self.fingerprint = path, fingerprint

    def before_train(self, t: Trainer) -> None:
        state = _load_checkpoint(self.path, self.fingerprint, t.epochs)
        if state is None:
            return
        assert t.opt is not None
        t.model.load_state_dict(state["model"])
        t.opt.load_state_dict(state["optimizer"])
        t.rng.bit_generator.state = state["numpy_rng"]
        torch.set_rng_state(state["torch_rng"])
        device = t.engine.device
        if device.type == "cuda" and state.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(state["cuda_rng"], device)
        t.history, t.best, t.best_state = state["history"], state["best"], state["best_state"]
        t.start = int(state["epoch"])
        log.info("%s: resuming phase %s from %s at epoch %d", t.engine.method_cls.name, t.phase, self.path, t.start)

    def after_epoch(self, t: Trainer) -> None:
        assert t.opt is not None
        device = t.engine.device
        _save_checkpoint(self.path, {
            "format": CKPT_FORMAT, "fingerprint": self.fingerprint, "epoch": t.epoch,
            "model": t.model.state_dict(), "optimizer": t.opt.state_dict(),
            "numpy_rng": t.rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
            "history": t.history, "best": t.best, "best_state": t.best_state,
        })


class ProgressHook(Hook):
    """A tqdm bar over the phase's epochs with the last loss and H (the split's, when evaluated)."""

    def __init__(self, split: str | None) -> None:
        self.split = split
        self.bar: Any = None

    def before_train(self, t: Trainer) -> None:
        from tqdm.auto import tqdm

        # disable=None: no bar (and no escape codes) when stderr is not a terminal.
        self.bar = tqdm(total=t.epochs, initial=t.start, unit="ep", leave=False, disable=None,
                        desc=f"{t.engine.method_cls.name} {t.engine.data.name} {t.phase}")

    def after_epoch(self, t: Trainer) -> None:
        h = t.entry.get(f"{self.split}_h") if self.split is not None else None
        self.bar.set_postfix(loss=f"{t.entry.get('loss', float('nan')):.4f}", H="-" if h is None else f"{h:.2f}")
        self.bar.update(1)

    def after_train(self, t: Trainer) -> None:
        if self.bar is not None:
            self.bar.close()


class ReporterHook(Hook):
    """Hands each epoch's numeric record to a :class:`Reporter`."""

    def __init__(self, reporter: Reporter) -> None:
        self.reporter = reporter

    def after_epoch(self, t: Trainer) -> None:
        self.reporter.on_epoch(t.phase, t.epoch, _numeric(t.entry))


# ---------------------------------------------------------------- the engine


@dataclass
class PhaseOutcome:
    """What one training phase produced."""

    model: Any
    history: list[dict[str, Any]]
    best: dict[str, Any] | None = None  # the best epoch's evaluation (incl. "epoch" and "curve")
    resumed_from: int = 0  # epochs restored from a checkpoint
    extra: dict[str, Any] = field(default_factory=dict)  # "best_state": weights of the best epoch


class Engine:
    """Trains and scores one method on one dataset.

    Args:
        method_cls: a registered :class:`zsl_bench.contract.ZSLMethod` subclass.
        cfg: the resolved config.
        data: the dataset (its feature store must hold the method's input kind).
        budget: bytes of features held in memory per row set before streaming from the store.
    """

    def __init__(self, method_cls: type[ZSLMethod], cfg: ResolvedConfig, data: ZSLData,
                 budget: int = MEMORY_BUDGET_BYTES) -> None:
        self.method_cls, self.cfg, self.data = method_cls, cfg, data
        self.kind = method_cls.input
        # The features its paper used where the data root has them (data/features.py), and their label
        # for the rows' ``features`` column.
        self.store, self.features_label = data.choose_features(
            self.kind, getattr(method_cls, "image_size", None), what=f"{data.name.upper()} {method_cls.name}")
        self.device = resolve_device(cfg.train.device)
        self.budget = budget
        self._cache: dict[tuple[int, int], FeatureRows] = {}
        # dtype -> the dataset on the device (None: does not fit); shared with with_config() copies.
        self._resident: dict[torch.dtype, torch.Tensor | None] = {}
        # Loss terms and the non-finite check read once per epoch (CUDA); per step on CPU, as always.
        self.deferred_checks = self.device.type == "cuda"

    @property
    def precision(self) -> str:
        """``fp32`` or ``bf16``: what this engine computes in (``train.precision``, on every device)."""
        return precision_of(self.device, self.cfg.train.precision)

    def runtime(self) -> str:
        """Where and how this engine computes, for a row's provenance; ``""`` on CPU (the ``precision``
        column says the precision on every device).

        E.g. ``device=cuda:0 (NVIDIA H200);precision=bf16;features=resident-float16``.
        """
        if self.device.type != "cuda":
            return ""
        index = self.device.index if self.device.index is not None else torch.cuda.current_device()
        parts = [f"device=cuda:{index} ({torch.cuda.get_device_name(index)})", f"precision={self.precision}"]
        held = self._resident.get(self._resident_dtype())
        if held is not None:
            parts.append(f"features=resident-{str(held.dtype).replace('torch.', '')}")
        if _compile_requested():
            parts.append("compile=1")
        return ";".join(parts)

    def resident(self) -> torch.Tensor | None:
        """The whole dataset's features on the CUDA device (loaded once, shared by every row set)."""
        if self.device.type != "cuda":
            return None
        if self.precision == "fp32":
            torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32, as on CPU
            torch.backends.cudnn.allow_tf32 = False
        dtype = self._resident_dtype()
        if dtype not in self._resident:
            self._resident[dtype] = load_resident(self.store, self.kind, self.device, dtype)
        return self._resident[dtype]

    def _resident_dtype(self) -> torch.dtype:
        return torch.float16 if self.precision == "bf16" else torch.float32

    @classmethod
    def from_arrays(cls, method_cls: type[ZSLMethod], cfg: ResolvedConfig, features: Any, labels: Any, att: Any,
                    seen_classes: Any, unseen_classes: Any, *, splits: dict[str, Any] | None = None,
                    name: str = "arrays", **data_fields: Any) -> Engine:
        """An engine over in-memory features (tests, notebooks): no files, the same training code.

        Args:
            features: ``[N, F]`` pooled or ``[N, F, R]`` region features (numpy or torch).
            labels: ``[N]`` 0-based class of each row.
            att: ``[K, A]`` class semantics.
            seen_classes, unseen_classes: the final split's classes.
            splits: named row sets (``trainval``, ``test_seen``, ...); default: ``trainval`` = the rows
                of seen classes, ``test_unseen`` = the rows of unseen classes.
            name: the dataset name the method sees in its :class:`TaskInfo`.
            data_fields: other :class:`ZSLData` fields (``val_seen_classes``, ``w2v``, ...).
        """
        from .data.store import MemoryStore

        def arr(x: Any, dtype: Any) -> np.ndarray:
            return np.asarray(x.detach().cpu().numpy() if hasattr(x, "detach") else x, dtype=dtype)

        lab, seen, unseen = arr(labels, np.int64), arr(seen_classes, np.int64), arr(unseen_classes, np.int64)
        rows = np.arange(len(lab))
        default = {"trainval": rows[np.isin(lab, seen)], "test_unseen": rows[np.isin(lab, unseen)]}
        empty = np.zeros(0, np.int64)
        data = ZSLData(name=name, att=arr(att, np.float32), labels=lab, seen_classes=seen, unseen_classes=unseen,
                       splits={k: arr(v, np.int64) for k, v in (splits or default).items()},
                       val_seen_classes=data_fields.pop("val_seen_classes", empty),
                       val_unseen_classes=data_fields.pop("val_unseen_classes", empty),
                       features=MemoryStore(arr(features, np.float32), f"<{name}: in memory>"), **data_fields)
        return cls(method_cls, cfg, data)

    # ------------------------------------------------------------ helpers
    def rows(self, rows: np.ndarray) -> FeatureRows:
        rows = np.asarray(rows, dtype=np.int64)
        key = (len(rows), hash(rows.tobytes()))
        if key not in self._cache:
            # One budget for everything held: row sets cached earlier count against it.
            held = sum(f.nbytes for f in self._cache.values() if f.in_memory)
            self._cache[key] = FeatureRows(self.store, rows, self.kind, self.device, max(0, self.budget - held),
                                           resident=self.resident())
        return self._cache[key]

    def with_config(self, cfg: ResolvedConfig) -> Engine:
        """An engine for ``cfg`` sharing this one's loaded features (they do not depend on the method config)."""
        if cfg is self.cfg:
            return self
        other = copy.copy(self)
        other.cfg = cfg
        return other

    def with_store(self, store: FeatureSource) -> Engine:
        """An engine for the same method and config that reads its features from ``store`` (the same
        rows in the same order, e.g. simulated data's environment-resampled features); nothing loaded
        from this engine's store is shared."""
        other = copy.copy(self)
        other.store = store
        other._cache, other._resident = {}, {}
        return other

    def task(self, seen: np.ndarray, unseen: np.ndarray) -> TaskInfo:
        from zsl_bench.contract import TaskInfo

        return TaskInfo(
            dataset=self.data.name, att=self.data.att.astype(np.float32), seen=np.asarray(seen, np.int64),
            unseen=np.asarray(unseen, np.int64), feature_dim=self.store.feature_dim,
            regions=self.store.num_regions if self.kind == "regions" else None,
            w2v=self.data.w2v, original_att=self.data.original_att)

    def build_model(self, seen: np.ndarray, unseen: np.ndarray) -> ZSLMethod:
        model = self.method_cls(self.cfg.method, self.task(seen, unseen))
        if not isinstance(model, torch.nn.Module):
            return model
        model = model.to(self.device)
        if self.device.type == "cuda" and _compile_requested():
            # The instance's forward only: state_dict keys, loss() and scores() stay as they are.
            model.forward = torch.compile(model.forward)  # type: ignore[method-assign]
        return model

    @torch.no_grad()
    def score(self, model: ZSLMethod, rows: np.ndarray, zsl: bool = False) -> np.ndarray:
        """Scores ``[N, K]`` (float32, numpy) of dataset ``rows``, in batches of ``eval_batch_size``;
        ``zsl``: the method's ``zsl_scores`` instead of ``scores``."""
        feats = self.rows(rows)
        if isinstance(model, torch.nn.Module):
            model.eval()
        score_fn = model.zsl_scores if zsl else model.scores
        out = []
        if feats.on_device:  # CUDA: chunks gathered on the device, scores copied back once
            per_row = 4 * self.store.feature_dim * ((self.store.num_regions or 1) if self.kind == "regions" else 1)
            chunk = max(1, min(self.cfg.train.eval_batch_size, EVAL_CHUNK_BYTES_CUDA // per_row))
            with autocast(self.device, self.cfg.train.precision):
                out = [score_fn(x).float() for x in feats.iter_chunks(chunk)]
            if not out:
                return np.zeros((0, self.data.num_classes), dtype=np.float32)
            return torch.cat(out).cpu().numpy()
        with autocast(self.device, self.cfg.train.precision):
            per_row = max(1, feats.nbytes // max(1, len(feats)))
            chunk = max(1, min(self.cfg.train.eval_batch_size, EVAL_CHUNK_BYTES // per_row))
            for x in feats.iter_chunks(chunk):
                out.append(score_fn(x).float().cpu())
        if not out:
            return np.zeros((0, self.data.num_classes), dtype=np.float32)
        return torch.cat(out).numpy()

    def evaluate(self, model: ZSLMethod, split: EvalSplit, gamma: float | None) -> dict[str, Any]:
        """Score ``split``'s rows once and judge them (:func:`zsl_bench.protocol.evaluate_scores`)."""
        rows = np.concatenate([split.seen_rows, split.unseen_rows])
        scores = self.score(model, rows)
        if not np.isfinite(scores).all():
            raise TrainingError(f"{self.method_cls.name}: non-finite scores on the {split.name} split")
        res = evaluate_split(scores, self.data.labels[rows], split, len(split.seen_rows), gamma)
        if self.method_cls.separate_zsl_scores:
            res["zsl_acc"] = self.evaluate_zsl(model, split)
        return res

    def evaluate_zsl(self, model: ZSLMethod, split: EvalSplit) -> float:
        """ZSL accuracy (%) of the method's ``zsl_scores`` on ``split``'s unseen rows (argmax over
        its unseen classes), for methods with a separate unseen-only classifier."""
        from .metrics import zsl_accuracy

        scores = self.score(model, split.unseen_rows, zsl=True)
        if not np.isfinite(scores[:, split.unseen_classes]).all():
            raise TrainingError(f"{self.method_cls.name}: non-finite ZSL scores on the {split.name} split")
        return zsl_accuracy(scores, self.data.labels[split.unseen_rows], split.unseen_classes)

    # ------------------------------------------------------------ training
    def train(self, *, phase: str, train_rows: np.ndarray, seen: np.ndarray, unseen: np.ndarray,
              epochs: int, seed: int, evaluation: EvalSplit | None = None, gamma: float | None = None,
              ckpt_path: Path | None = None, reporter: Reporter | None = None,
              progress: bool = True, hooks: Sequence[Hook] = ()) -> PhaseOutcome:
        """Train a fresh model on ``train_rows``; evaluate on ``evaluation`` after each epoch.

        Args:
            phase: label of this phase in the history (``val``, ``tune``, ``final``, ``oracle``).
            train_rows: dataset rows to train on.
            seen, unseen: the phase's classes (given to the method as its :class:`TaskInfo`).
            epochs: epochs to train (ignored by closed-form methods).
            seed: the run seed.
            evaluation: where to evaluate after each epoch (None: no evaluation).
            gamma: calibration γ for that evaluation (None: the best γ per epoch).
            ckpt_path: checkpoint file, written every epoch and resumed from when it matches.
            reporter: gets ``on_epoch(phase, epoch, metrics)``; may raise to stop.
            progress: show a progress bar.
            hooks: more hooks, run after the built-in ones.
        """
        labels = self.data.labels[np.asarray(train_rows, dtype=np.int64)]
        outside = np.setdiff1d(labels, np.concatenate([np.asarray(seen), np.asarray(unseen)]))
        if outside.size:  # checked once here, so methods need not check (and synchronise) every step
            raise DataError(f"{self.method_cls.name}: training labels include classes outside this phase's "
                            f"seen/unseen sets (e.g. class {int(outside[0])}) in phase {phase}")
        torch.manual_seed(seed)
        model = self.build_model(seen, unseen)
        closed_form = self.method_cls.fits_closed_form
        if not closed_form and epochs < 1:
            raise ConfigError(f"bad value for train.epochs: {epochs}; {self.method_cls.name} trains by epochs, "
                              "valid: an integer >= 1")
        # Order matters: a checkpoint saves the epoch's evaluation and best, so it follows them.
        built: list[Hook] = []
        if evaluation is not None and self.method_cls.selects_in_fit:
            built.append(FitSelectHook(evaluation, gamma))
        elif evaluation is not None:
            built += [EvalHook(evaluation, gamma), BestHook()]
            if not closed_form and self.method_cls.early_stop > 0:
                built.append(EarlyStopHook(int(self.method_cls.early_stop)))
        if not closed_form:  # a closed-form fit is one call: nothing to resume or watch
            if ckpt_path is not None:
                built.append(CheckpointHook(ckpt_path, self.fingerprint(phase, seed, train_rows)))
            if progress:
                built.append(ProgressHook(evaluation.name if evaluation is not None else None))
        if reporter is not None:
            built.append(ReporterHook(reporter))
        return Trainer(self, model, phase=phase, train_rows=train_rows, epochs=epochs, seed=seed,
                       hooks=[*built, *hooks]).train()

    def fingerprint(self, phase: str, seed: int, train_rows: np.ndarray) -> dict[str, Any]:
        """What must match for a checkpoint to be resumed (everything but the number of epochs)."""
        import hashlib

        cfg = self.cfg.as_dict()
        cfg["train"] = {k: v for k, v in cfg["train"].items() if k not in ("epochs", "device", "eval_batch_size")}
        rows = hashlib.sha256(np.asarray(train_rows, dtype=np.int64).tobytes()).hexdigest()[:16]
        out = {"method": self.method_cls.name, "dataset": self.data.name, "phase": phase, "seed": seed,
               "config": cfg, "rows": rows}
        if self.data.is_simulated:  # the config leaves the default generator out: name the data itself
            from .data import sim

            out["data"] = sim.data_identity(self.data.provenance, self.data.name)
        return out


# ---------------------------------------------------------------- small helpers


def _eval_entry(res: dict[str, Any], split: str) -> dict[str, float]:
    """History keys of one evaluation, prefixed by the split (``val_h``, ``test_h``, ...)."""
    from . import metrics

    return {f"{split}_{k}": float(res[k]) for k in metrics.names("history") if k in res}


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
        log.info("checkpoint %s belongs to another configuration or data; starting afresh", path)
        return None
    if int(state["epoch"]) > epochs:
        log.info("checkpoint %s is past epoch %d; starting afresh", path, epochs)
        return None
    return copy.copy(state)
