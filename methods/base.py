"""The method contract. Methods produce class scores and named loss terms; the harness judges.

A method is an ``nn.Module`` subclass of :class:`ZSLMethod`:

- class attributes: ``name`` (registry key), ``family`` (embedding | generative | attention),
  ``input`` (pooled | regions), ``paper`` (one-line citation), ``config_cls`` (a frozen dataclass
  defined in the same file), ``presets`` (dataset -> ``{"method": {...}, "train": {...}}``
  overrides from the paper / official code), ``fits_closed_form`` (True: the engine calls
  :meth:`fit` once instead of running epochs; closed-form and self-scheduled generative methods).
- ``__init__(cfg, task)``: ``task`` is a :class:`TaskInfo`.
- ``forward(x)`` -> ``{"logits": [B, K], ...}``; ``x`` is ``[B, F]`` (pooled) or ``[B, F, R]`` (regions).
  ``logits`` cover all K classes of ``task.att``; the harness masks classes outside the phase.
- ``loss(out, y)`` -> ``{"loss": total, "<term>": ..., ...}``; ``y`` are global class ids [B].
- ``scores(x)`` -> ``[B, K]`` scores used for evaluation (default: ``forward(x)["logits"]``).
- ``fit(x, y)`` (only when ``fits_closed_form``): train on all of ``x`` [N, F(, R)] / ``y`` [N].
- ``tiny`` (class attribute): method-config overrides giving a very small, fast model for tests
  (timm-style tiny variants); ``build(cls.config_cls, cls.tiny, "method")`` must succeed.
- ``fit_grad_norms`` (instance attribute, set by :meth:`fit` of methods that train parameters by
  gradient inside ``fit``, e.g. generative ones): ``{parameter name: summed |grad|}`` over the fit,
  so tests can check every trainable parameter learned. Closed-form solutions live in buffers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class TaskInfo:
    """What a method may know about the task it is built for (one training phase)."""

    dataset: str  # "cub", "sun", "awa2", "flo" (lowercase)
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


class ZSLMethod(nn.Module):
    name: ClassVar[str] = ""
    family: ClassVar[str] = ""  # embedding | generative | attention
    input: ClassVar[str] = "pooled"  # pooled | regions
    paper: ClassVar[str] = ""
    description: ClassVar[str] = ""
    config_cls: ClassVar[type] = object
    presets: ClassVar[dict[str, dict[str, dict[str, Any]]]] = {}
    fits_closed_form: ClassVar[bool] = False
    tiny: ClassVar[dict[str, Any]] = {}  # method-config overrides for a tiny test model

    def __init__(self, cfg: Any, task: TaskInfo) -> None:
        super().__init__()
        self.cfg = cfg
        self.task = task

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def loss(self, out: dict[str, torch.Tensor], y: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError(f"{self.name} defines no loss (closed-form method?)")

    @torch.no_grad()
    def scores(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)["logits"]

    def fit(self, x: torch.Tensor, y: torch.Tensor) -> None:
        raise NotImplementedError(f"{self.name} is trained by the engine's epochs, not fit()")

    # Attention maps for plots: methods that have them override this.
    def attention_maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {}
