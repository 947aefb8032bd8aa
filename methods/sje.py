"""SJE: structured joint embedding trained with a structured-SVM (max-margin) loss.

Paper: Z. Akata, S. Reed, D. Walter, H. Lee, B. Schiele, "Evaluation of Output Embeddings for
Fine-Grained Image Classification", CVPR 2015.
Official code: none released; benchmark numbers come from the re-implementation of Xian et al.
("Zero-Shot Learning — The Good, the Bad and the Ugly", TPAMI 2018).

Training follows the common re-implementation whose validated hyper-parameters the presets copy,
github.com/mvp18/Popular-ZSL-Algorithms ``SJE/sje.py`` (``find_compatible_y``, ``update_W``):
one SGD step per image (``train.batch_size: 1``) that picks the most violating seen class k of
``Δ + F(x, k) − F(x, y)`` computed on the **standardised** projection (xW minus its mean over the
attribute dimensions, divided by its standard deviation, sje.py:111-112) and, when k ≠ y, takes the
step ``W += lr · x (φ_y − φ_k)`` (the gradient of the unstandardised ``F(x, k) − F(x, y)``);
at most 100 epochs with early stopping 10 epochs after the best validation H (sje.py:13-14).
(norm, lr, margin) per dataset: sje.py:24-28 (CUB std / 0.1 / 4.0, AWA2 L2 / 1.0 / 2.5, SUN std / 1.0 /
2.0). ``std`` is ``standardize_input``: a standard scaler fitted on the phase's training features
(the engine passes them to ``observe_training_features`` before the first epoch), as mvp18's
``StandardScaler().fit(X_train)`` (sje.py:87-94); ``L2`` is ``normalize_input``.

Where this implementation differs:
- Only attribute output embeddings (``task.att``); the paper also combines word2vec / GloVe /
  hierarchy embeddings. Init: ``randn / sqrt(F)`` (mvp18: uniform with unit-norm columns).
- FLO has no published setting: the SUN values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from zsl_bench.config import check
from zsl_bench.registry import METHODS

from .devise import BilinearEmbedding, check_input_norm, input_norm


@dataclass(frozen=True)
class SJEConfig:
    margin: float = 1.0  # Δ(y_n, y) = margin for y ≠ y_n (0/1 loss in the paper)
    normalize_input: bool = True  # L2 per sample (mvp18's ``-norm L2``)
    # mvp18's ``-norm std``: z-score each dimension with the training split's mean and std (sje.py:87-94)
    # (normalize_input must then be False)
    standardize_input: bool = False
    standardize: bool = True  # pick the violator on the standardised xW, as mvp18 (sje.py:112)

    def __post_init__(self) -> None:
        check(self.margin > 0, "method.margin", self.margin, "a float > 0")
        check_input_norm(self)


def _mvp18(norm: str, lr: float, margin: float) -> dict[str, dict[str, Any]]:
    return {"method": {"margin": margin, **input_norm(norm)},
            "train": {"optimizer": "sgd", "lr": lr, "momentum": 0.0,
                                                    "weight_decay": 0.0, "batch_size": 1, "epochs": 100}}


@METHODS.register("sje")
class SJE(BilinearEmbedding):
    """Bilinear compatibility with the structured max-margin loss (most violating seen class)."""

    name = "sje"
    family = "embedding"
    input = "pooled"
    paper = "Akata et al., SJE, CVPR 2015"
    config_cls = SJEConfig
    # (norm, lr, margin) validated by mvp18 (sje.py:24-28); FLO: the SUN values.
    presets: ClassVar[dict[str, dict[str, dict[str, Any]]]] = {
        "cub": _mvp18("std", 0.1, 4.0), "awa2": _mvp18("L2", 1.0, 2.5), "sun": _mvp18("std", 1.0, 2.0),
        "flo": _mvp18("std", 1.0, 2.0),
    }
    tiny: ClassVar[dict[str, Any]] = {"margin": 1.0}
    early_stop: ClassVar[int] = 10  # mvp18 sje.py:14 (``-es 10``)
    per_image_sgd = True

    def violator(self, out: dict[str, torch.Tensor], y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """([B] the class each image's step moves away from, its own label when nothing violates;
        [B] the structured hinge on the standardised projection, 0 when nothing violates)."""
        with torch.no_grad():
            z = out["embed"]  # [B, A]
            if self.cfg.standardize:  # sklearn preprocessing.scale of one vector: population std
                z = (z - z.mean(1, keepdim=True)) / z.std(1, unbiased=False, keepdim=True).clamp_min(1e-12)
            s = z @ self.att.T  # [B, K]
            aug = self.cfg.margin + s - s.gather(1, y.view(-1, 1))
            aug = torch.where(self._wrong_seen(y) > 0, aug, torch.full_like(aug, -torch.inf))
            best, k = aug.max(1)
            return torch.where(best > 0, k, y), best.clamp_min(0.0)

    def loss(self, out: dict[str, torch.Tensor], y: torch.Tensor) -> dict[str, torch.Tensor]:
        s = out["logits"]  # [B, K]
        k, hinge = self.violator(out, y)
        # F(x, k) − F(x, y) on the unstandardised scores (0 where k = y): its gradient x (φ_k − φ_y)
        # makes SGD take mvp18's step W += lr · x (φ_y − φ_k). Logged: the hinge that chose k.
        step = (s.gather(1, k.view(-1, 1)) - s.gather(1, y.view(-1, 1))).squeeze(1)  # [B]
        return {"loss": step.mean(), "struct_hinge": hinge.mean(), "violated": (k != y).float().mean()}

    def sgd_per_image(self, x: torch.Tensor, y: torch.Tensor, lr: float) -> dict[str, torch.Tensor]:
        """Plain SGD on :meth:`loss`, one image at a time, in numpy (the engine's fast path):
        ``W += lr · x (φ_y − φ_k)`` for the violator k of :meth:`violator`, as mvp18's ``update_W``."""
        X, Y, att, attT, seen, W = self._numpy_sgd_inputs(x, y)
        n, margin, lr32 = len(Y), np.float32(self.cfg.margin), np.float32(lr)
        loss, hinge, hit = (np.zeros(n, np.float32) for _ in range(3))
        for i in range(n):
            xi, yi = X[i], Y[i]
            z = xi @ W  # [A]
            zs = (z - z.mean()) / max(float(z.std()), 1e-12) if self.cfg.standardize else z
            s = zs @ attT  # [K]
            aug = np.where(seen, margin + s - s[yi], -np.inf)
            aug[yi] = -np.inf
            k = int(aug.argmax())
            if not aug[k] > 0:
                continue
            loss[i], hinge[i], hit[i] = z @ (att[k] - att[yi]), aug[k], 1.0
            W += lr32 * np.outer(xi, att[yi] - att[k])
        self.W.data.copy_(torch.from_numpy(W))
        return {"loss": torch.from_numpy(loss), "struct_hinge": torch.from_numpy(hinge), "violated": torch.from_numpy(hit)}
