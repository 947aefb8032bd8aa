"""DeViSE: a linear map from image features to the semantic space, trained with a hinge rank loss.

Paper: A. Frome, G. S. Corrado, J. Shlens, S. Bengio, J. Dean, M. Ranzato, T. Mikolov,
"DeViSE: A Deep Visual-Semantic Embedding Model", NIPS 2013.
Official code: none released; the reference re-implementation for the ZSL benchmark is the one
of Xian et al., "Zero-Shot Learning — The Good, the Bad and the Ugly" (CVPR 2017 / TPAMI 2018),
whose numbers are in ``../shared/reference/published_results.csv``.

Where this implementation differs:
- As in the GBU re-runs, the semantic space is the class attribute vectors (``task.att``), not
  word vectors of class names, and the visual side is fixed pooled ResNet-101 features (no
  fine-tuning of the CNN).
- Training follows the common re-implementation whose validated hyper-parameters the presets
  copy, github.com/mvp18/Popular-ZSL-Algorithms ``DeViSE/devise.py``: one SGD step per image
  (``train.batch_size: 1``) on the hinge of the **first** wrong seen class, in class order, that
  violates the margin (``W += lr · x (φ_y − φ_k)``, then stop: devise.py:110-126, "acc. to the
  authors"), not the sum over every violator of the paper's rank loss; at most 100 epochs with
  early stopping 10 epochs after the best validation H (devise.py:13-14).
- (norm, lr, margin) per dataset from devise.py:22-28: CUB (L2, 1.0, 1.0), SUN (None, 0.01, 3.0) and
  AWA2 (std, 0.001, 150) as validated; ``std`` is ``standardize_input``: a standard scaler fitted on
  the phase's training features (the engine passes them to ``observe_training_features`` before
  the first epoch), as mvp18's ``StandardScaler().fit(X_train)``. FLO (no published setting) uses
  CUB's. Init: ``randn / sqrt(F)`` (mvp18: uniform with unit-norm columns). SUN's raw-feature
  setting assumes ResNet-101's feature scale: on the simulated benchmark (features ~100x smaller)
  every class violates the margin of 3 and training collapses (docs/FIDELITY.md); there, use the
  CUB setting.

This file also holds :class:`BilinearEmbedding`, the compatibility ``x W φ(y)`` that DeViSE and
SJE share (SJE imports it), so the two differ only in their loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from zsl_bench.config import check
from zsl_bench.contract import TaskInfo, ZSLMethod
from zsl_bench.registry import METHODS


class BilinearEmbedding(ZSLMethod):
    """Compatibility ``F(x, y) = θ(x)ᵀ W φ(y)`` with pooled features and class attributes.

    Not registered: a shared base for linear-embedding methods. Subclasses define ``loss``.
    """

    att: torch.Tensor
    seen: torch.Tensor

    def __init__(self, cfg: Any, task: TaskInfo) -> None:
        super().__init__(cfg, task)
        F_, A = task.feature_dim, task.num_attributes
        # Scaled so initial scores are O(1) whatever F is.
        self.W = nn.Parameter(torch.randn(F_, A) / F_**0.5)
        self.register_buffer("att", torch.as_tensor(task.att, dtype=torch.float32))  # [K, A]
        self.register_buffer("seen", task.seen_mask())  # [K] bool
        if cfg.standardize_input:  # mvp18's ``-norm std``: filled from the phase's training features
            self.register_buffer("feat_mean", torch.zeros(F_))  # [F]
            self.register_buffer("feat_std", torch.ones(F_))  # [F]

    @property
    def wants_training_features(self) -> bool:
        return bool(self.cfg.standardize_input)

    def observe_training_features(self, x: torch.Tensor) -> None:
        """mvp18's ``StandardScaler().fit(X_train)``: per-dimension mean and population std of the
        training features; a constant dimension keeps std 1 (sklearn's rule)."""
        x = x.double()
        mean, std = x.mean(0), x.std(0, unbiased=False)
        std = torch.where(std < 10 * torch.finfo(torch.float64).eps, torch.ones_like(std), std)
        self.feat_mean.copy_(mean)  # cast to the buffers' dtype
        self.feat_std.copy_(std)

    def prepare_input(self, x: torch.Tensor) -> torch.Tensor:
        """Features as the projection sees them: standardised or L2-normalised per ``cfg``."""
        if self.cfg.standardize_input:
            return (x - self.feat_mean) / self.feat_std
        return F.normalize(x, dim=1) if self.cfg.normalize_input else x

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Project pooled features ``[B, F]`` to the semantic space ``[B, A]``."""
        return self.prepare_input(x) @ self.W

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        z = self.embed(x)  # [B, A]
        return {"logits": z @ self.att.T, "embed": z}  # [B, K]

    def _numpy_sgd_inputs(self, x: torch.Tensor, y: torch.Tensor) -> tuple[np.ndarray, ...]:
        """What a per-image numpy SGD pass (``sgd_per_image`` of DeViSE and SJE) reads: the inputs as
        :meth:`embed` sees them ``X [B, F]``, labels ``Y``, ``att [K, A]``, its contiguous transpose,
        the seen mask, and a copy of ``W`` to update (written back by the caller)."""
        x = self.prepare_input(x.float())
        att = self.att.cpu().numpy()
        return (x.cpu().numpy(), y.cpu().numpy(), att, np.ascontiguousarray(att.T), self.seen.cpu().numpy(),
                self.W.detach().cpu().numpy().copy())

    def _wrong_seen(self, y: torch.Tensor) -> torch.Tensor:
        """[B, K] float mask of the seen classes other than each sample's label."""
        wrong = self.seen.unsqueeze(0).expand(y.shape[0], -1).clone()
        wrong[torch.arange(y.shape[0], device=y.device), y] = False
        return wrong.float()


@dataclass(frozen=True)
class DeViSEConfig:
    margin: float = 0.1  # the paper's margin
    normalize_input: bool = True  # L2 per sample (mvp18's ``-norm L2``; False: ``-norm None``)
    # mvp18's ``-norm std``: z-score each dimension with the training split's mean and std
    # (normalize_input must then be False)
    standardize_input: bool = False

    def __post_init__(self) -> None:
        check(self.margin > 0, "method.margin", self.margin, "a float > 0")
        check_input_norm(self)


def input_norm(norm: str) -> dict[str, bool]:
    """mvp18's ``-norm`` (``std``, ``L2`` or ``None``) as the method keys of DeViSE and SJE."""
    return {"normalize_input": norm == "L2", "standardize_input": norm == "std"}


def check_input_norm(cfg: Any) -> None:
    """One of mvp18's ``-norm`` values at a time: std and L2 exclude each other."""
    check(not (cfg.standardize_input and cfg.normalize_input), "method.standardize_input", cfg.standardize_input,
          "false when method.normalize_input is true (mvp18's -norm is one of std, L2, None)")


def _mvp18(norm: str, lr: float, margin: float) -> dict[str, dict[str, Any]]:
    return {"method": {"margin": margin, **input_norm(norm)},
            "train": {"optimizer": "sgd", "lr": lr, "momentum": 0.0, "weight_decay": 0.0, "batch_size": 1,
                      "epochs": 100}}


@METHODS.register("devise")
class DeViSE(BilinearEmbedding):
    """Linear visual→semantic map with the hinge of the first violating wrong seen class."""

    name = "devise"
    family = "embedding"
    input = "pooled"
    paper = "Frome et al., DeViSE, NIPS 2013"
    config_cls = DeViSEConfig
    # (norm, lr, margin) validated by mvp18 (devise.py:22-28); FLO (no published setting): CUB's.
    presets: ClassVar[dict[str, dict[str, dict[str, Any]]]] = {
        "cub": _mvp18("L2", 1.0, 1.0), "sun": _mvp18("None", 0.01, 3.0),
        "awa2": _mvp18("std", 0.001, 150.0), "flo": _mvp18("L2", 1.0, 1.0),
    }
    tiny: ClassVar[dict[str, Any]] = {"margin": 0.1}
    early_stop: ClassVar[int] = 10  # mvp18 devise.py:14 (``-es 10``)
    per_image_sgd = True

    def first_violator(self, s: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """[B] the first wrong seen class (lowest id) with ``margin + s_k − s_y > 0``; y when none."""
        with torch.no_grad():
            viol = (self.cfg.margin + s - s.gather(1, y.view(-1, 1)) > 0) & (self._wrong_seen(y) > 0)
            k = viol.to(torch.uint8).argmax(1)  # the first True (argmax returns the first maximum)
            return torch.where(viol.any(1), k, y)

    def loss(self, out: dict[str, torch.Tensor], y: torch.Tensor) -> dict[str, torch.Tensor]:
        s = out["logits"]  # [B, K]
        k = self.first_violator(s.detach(), y)
        hit = (k != y).float()
        # margin − s_y + s_k for the one violator (0 when none): SGD takes mvp18's step.
        hinge = (self.cfg.margin - s.gather(1, y.view(-1, 1)) + s.gather(1, k.view(-1, 1))).squeeze(1) * hit
        return {"loss": hinge.mean(), "rank": hinge.mean().detach(), "violated": hit.mean()}

    def sgd_per_image(self, x: torch.Tensor, y: torch.Tensor, lr: float) -> dict[str, torch.Tensor]:
        """Plain SGD on :meth:`loss`, one image at a time, in numpy (the engine's fast path):
        ``W += lr · x (φ_y − φ_k)`` for the first violator k, as mvp18's ``update_W``."""
        X, Y, att, attT, seen, W = self._numpy_sgd_inputs(x, y)
        n, margin, lr32 = len(Y), np.float32(self.cfg.margin), np.float32(lr)
        loss, hit = np.zeros(n, np.float32), np.zeros(n, np.float32)
        for i in range(n):
            xi, yi = X[i], Y[i]
            s = (xi @ W) @ attT  # [K]
            viol = (margin + s - s[yi] > 0) & seen
            viol[yi] = False
            if not viol.any():
                continue
            k = int(viol.argmax())  # the first violator in class order
            loss[i], hit[i] = margin - s[yi] + s[k], 1.0
            W += lr32 * np.outer(xi, att[yi] - att[k])
        self.W.data.copy_(torch.from_numpy(W))
        return {"loss": torch.from_numpy(loss), "rank": torch.from_numpy(loss.copy()), "violated": torch.from_numpy(hit)}
