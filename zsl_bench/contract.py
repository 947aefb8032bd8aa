"""The method contract: what the harness gives a method and what it reads back.

Methods produce class scores and named loss terms; the harness judges (seen/unseen masking,
calibration, metrics and model selection live in the harness, not here). The contract lives in the
package, not in the ``methods`` zoo, so the engine, the runner and third-party plug-ins depend on
the harness only.

A method is an ``nn.Module`` subclass of :class:`ZSLMethod`:

- ``__init__(cfg, task)``: ``cfg`` is an instance of ``config_cls``, ``task`` a :class:`TaskInfo`.
- ``forward(x)`` -> ``{"logits": [B, K], ...}``; ``x`` is ``[B, F]`` (pooled) or ``[B, F, R]`` (regions).
  ``logits`` cover all K classes of ``task.att``; the harness masks classes outside the phase.
- ``loss(out, y)`` -> ``{"loss": total, "<term>": ..., ...}``; ``y`` are global class ids [B].
- ``scores(x)`` -> ``[B, K]`` scores used for evaluation (default: ``forward(x)["logits"]``).
- ``fit(x, y)`` (only when ``fits_closed_form``): train on all of ``x`` [N, F(, R)] / ``y`` [N].
- ``observe_training_features(x)`` (only when the instance's ``wants_training_features`` is True): the
  engine passes every training feature of the phase ``[N, F]`` once, before the first epoch (and again
  on a resume), e.g. to fit a feature scaler as an official script does before training.
- ``attention_maps(x)`` -> named ``[B, A, R]`` maps for figures and hit rates (default: none).
- ``zsl_scores(x)`` -> ``[B, K]`` scores for conventional ZSL (only when ``separate_zsl_scores``: a
  method with its own unseen-only classifier, as the generative baselines' official code has).
- ``fit_monitor`` (only when ``selects_in_fit``): set by the engine before ``fit`` when the phase is
  evaluated; ``fit`` calls ``fit_monitor.gzsl(values)`` / ``fit_monitor.zsl(values)`` at each candidate
  state (e.g. after every classifier epoch of every GAN epoch) and the harness evaluates and selects.

Every class attribute the harness reads is declared on :class:`ZSLMethod` with its default and a
comment, so harness code reads ``method_cls.<attr>`` directly. The registry key is the name the
method is registered under (``@METHODS.register("name")``), normally equal to ``name``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class TaskInfo:
    """What a method may know about the task it is built for (one training phase)."""

    dataset: str  # registry name, lowercase ("cub", "sun", ...)
    att: np.ndarray  # [K, A] float32 class semantics (rows L2-normalised, as published)
    seen: np.ndarray  # [S] int64 global ids of the classes trained on in this phase
    unseen: np.ndarray  # [U] int64 global ids of the classes held out in this phase
    feature_dim: int  # F
    regions: int | None = None  # R for region features, None for pooled input
    w2v: np.ndarray | None = None  # [A, D] attribute word vectors, None when unavailable (FLO)
    original_att: np.ndarray | None = None  # [K, A] unnormalised semantics where published

    @property
    def num_classes(self) -> int:
        return int(self.att.shape[0])

    @property
    def num_attributes(self) -> int:
        return int(self.att.shape[1])

    def seen_mask(self) -> torch.Tensor:
        """[K] bool, True for this phase's seen classes."""
        m = torch.zeros(self.num_classes, dtype=torch.bool)
        m[torch.as_tensor(self.seen, dtype=torch.long)] = True
        return m


class FitMonitor(Protocol):
    """What a ``selects_in_fit`` method's ``fit`` reports candidate states to (the engine's
    ``FitSelectHook``). ``values`` are method-config values that, trained from scratch, reach the
    state being reported (e.g. ``{"gan_epochs": 7, "clf_epochs": 12}``): under ``val`` the chosen
    candidate's values are what phase 2 retrains with on ``trainval``."""

    def gzsl(self, values: dict[str, Any]) -> None:
        """Evaluate ``scores()`` now (GZSL, and ZSL acc unless ``separate_zsl_scores``)."""

    def zsl(self, values: dict[str, Any]) -> None:
        """Evaluate ``zsl_scores()`` now (ZSL accuracy on the phase's unseen rows)."""


class ZSLMethod(nn.Module):
    """Base class of every method; the attributes below are everything the harness reads."""

    # Identity, shown by `zsl-bench ls methods` and in tables.
    name: ClassVar[str] = ""  # registry key
    family: ClassVar[str] = ""  # embedding | generative | attention
    paper: ClassVar[str] = ""  # one-line citation
    description: ClassVar[str] = ""  # shown when there is no paper (plug-ins, ablations)
    # What the engine feeds it: pooled [B, F] or region [B, F, R] features.
    input: ClassVar[str] = "pooled"  # pooled | regions
    # The CNN input side (px) of the features its paper reports on; the loader feeds those when the
    # data root has them (zsl_bench/data/features.py). None: its input's default: pooled 224 (xlsa17's
    # res101.mat), regions 448 (14×14 maps). DAZLE: 224 (7×7 maps).
    image_size: ClassVar[int | None] = None
    # dataset -> config layers `run --preset paper` applies over ``presets`` where the official
    # schedule differs from the default run's (e.g. a GZSL script's value); empty: the presets are it.
    paper_presets: ClassVar[dict[str, dict[str, dict[str, Any]]]] = {}
    # The method's frozen config dataclass, defined in the same file as the method.
    config_cls: ClassVar[type] = object
    # Per-dataset overrides from the paper / official code: dataset -> {"method": {...}, "train": {...}}.
    presets: ClassVar[dict[str, dict[str, dict[str, Any]]]] = {}
    # True: the engine calls fit() once on all training features instead of running epochs
    # (closed-form solutions and generative methods that schedule their own training).
    fits_closed_form: ClassVar[bool] = False
    # Method-config overrides for a very small, fast model for tests (timm-style tiny variants);
    # ``config.build(cls.config_cls, cls.tiny, "method")`` must succeed.
    tiny: ClassVar[dict[str, Any]] = {}
    # Method-config field -> candidate values the runner tunes on the honest validation split
    # (every key the user did not fix); empty: nothing is tuned.
    tuned_on_val: ClassVar[dict[str, tuple[Any, ...]]] = {}
    # True: ``fit`` reports candidate states to ``self.fit_monitor`` (set by the engine when the phase
    # is evaluated, None otherwise) and the harness selects among them: the GZSL candidate with the
    # highest H and the ZSL candidate with the highest ZSL accuracy (generative methods: the GAN
    # epoch and the classifier epoch). False: one state per fit, evaluated after it.
    selects_in_fit: ClassVar[bool] = False
    # True: ``zsl_scores(x)`` (a separate unseen-only classifier) gives the ZSL accuracy; U, S, H and
    # AUSUC still come from ``scores(x)``. False: everything from ``scores(x)``.
    separate_zsl_scores: ClassVar[bool] = False
    # Early stopping of epoch-trained methods: a phase that evaluates after each epoch (validation
    # under ``val``, test under ``test-oracle``) stops once more than this many epochs have passed
    # since its best H (mvp18's ``-es`` rule); 0: run every epoch of ``train.epochs``.
    early_stop: ClassVar[int] = 0
    # True: the method defines ``sgd_per_image``, an exact fast path of plain per-image SGD on its own
    # ``loss`` (what the engine would do with ``train.batch_size: 1``, ``optimizer: sgd``, momentum,
    # weight decay and clipping 0, fp32). The engine calls it once per epoch in that configuration
    # and the generic forward/loss/backward path otherwise.
    per_image_sgd: ClassVar[bool] = False

    # Set by fit() of methods that train parameters by gradient inside fit (generative ones):
    # {parameter name: summed |grad|} over the fit, so tests can check every trainable parameter
    # learned. Empty for epoch-trained methods and closed-form solutions (those live in buffers).
    fit_grad_norms: dict[str, float]

    def __init__(self, cfg: Any, task: TaskInfo) -> None:
        super().__init__()
        self.cfg = cfg
        self.task = task
        self.fit_grad_norms = {}
        self.fit_monitor: FitMonitor | None = None

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def loss(self, out: dict[str, torch.Tensor], y: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError(f"{self.name} defines no loss (closed-form method?)")

    @torch.no_grad()
    def scores(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)["logits"]

    @torch.no_grad()
    def zsl_scores(self, x: torch.Tensor) -> torch.Tensor:
        """[B, K] scores for conventional ZSL; read only when ``separate_zsl_scores`` is True."""
        return self.scores(x)

    def fit(self, x: torch.Tensor, y: torch.Tensor) -> None:
        raise NotImplementedError(f"{self.name} is trained by the engine's epochs, not fit()")

    def sgd_per_image(self, x: torch.Tensor, y: torch.Tensor, lr: float) -> dict[str, torch.Tensor]:
        """One plain SGD step at ``lr`` per image of ``x`` [N, F] / ``y`` [N], in order, on ``loss``
        (only when ``per_image_sgd``); returns each loss term per image ``{term: [N]}``."""
        raise NotImplementedError(f"{self.name} has no per-image SGD fast path")

    @property
    def wants_training_features(self) -> bool:
        """True (per instance: it may depend on the config): the engine calls
        :meth:`observe_training_features` before an epoch-trained phase."""
        return False

    def observe_training_features(self, x: torch.Tensor) -> None:
        """See every training feature ``x`` [N, F] of the phase before training (default: nothing)."""

    def attention_maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Named attention maps ``{name: [B, A, R]}`` for figures and hit rates (region methods).

        Methods that have them override this; the default has none.
        """
        return {}
