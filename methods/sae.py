"""SAE: semantic autoencoder, solved in closed form as a Sylvester equation.

Paper: E. Kodirov, T. Xiang, S. Gong, "Semantic Autoencoder for Zero-Shot Learning", CVPR 2017.
Official code: github.com/Elyorcv/SAE (MATLAB and a Python port of the demos).

Objective (X: features [d, N], S: the label's class semantics [k, N], W: [k, d]; the decoder is
tied to the encoder, Wᵀ)::

    min_W ||X − WᵀS||² + λ ||WX − S||²   ⇔   S Sᵀ W + W (λ X Xᵀ) = (1 + λ) S Xᵀ

solved with ``scipy.linalg.solve_sylvester``. Two ways to score a test sample, both in the
paper (its tables list "SAE (W)" and "SAE (Wᵀ)"):

- ``space: semantic`` (default): encode, ``ŝ = W x``, cosine similarity to each class's
  semantics — the encoder direction, which is what the spec asks for ("scores in semantic space").
- ``space: feature``: decode each class, ``x̂_k = Wᵀ s_k``, cosine similarity to ``x``.

Where this implementation differs:
- Features are L2-normalised per sample before solving (``normalize_input``; the official demos
  normalise features too); semantics are the published, L2-normalised ``task.att``.
- λ per dataset was tuned on validation in the paper and its demos; our presets mark which
  values are ours.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import scipy.linalg
import torch
import torch.nn.functional as F

from zsl_bench.config import check
from zsl_bench.contract import TaskInfo, ZSLMethod
from zsl_bench.registry import METHODS


@dataclass(frozen=True)
class SAEConfig:
    lam: float = 100.0  # λ, weight of the encoder term (ours; tune on validation)
    space: str = "semantic"  # semantic (encoder W) | feature (decoder Wᵀ)
    normalize_input: bool = True

    def __post_init__(self) -> None:
        check(self.lam > 0, "method.lam", self.lam, "a float > 0")
        check(self.space in ("semantic", "feature"), "method.space", self.space,
                "semantic or feature")


def solve_sae(X: np.ndarray, S: np.ndarray, lam: float) -> np.ndarray:
    """Solve ``S Sᵀ W + λ W X Xᵀ = (1 + λ) S Xᵀ`` for ``W`` [k, d].

    Args:
        X: features [d, N].
        S: semantics of each sample's class [k, N].
        lam: λ > 0.
    """
    A = S @ S.T  # [k, k]
    B = lam * (X @ X.T)  # [d, d]
    Q = (1.0 + lam) * (S @ X.T)  # [k, d]
    return scipy.linalg.solve_sylvester(A, B, Q)


@METHODS.register("sae")
class SAE(ZSLMethod):
    """Closed-form linear semantic autoencoder; scores are cosine similarities."""

    name = "sae"
    family = "embedding"
    input = "pooled"
    paper = "Kodirov et al., SAE, CVPR 2017"
    config_cls = SAEConfig
    fits_closed_form = True
    # λ values are ours (the paper tuned λ per dataset on validation; not reproduced here).
    presets: ClassVar[dict[str, dict[str, dict[str, Any]]]] = {
        "cub": {"method": {"lam": 100.0}, "train": {}},
        "sun": {"method": {"lam": 100.0}, "train": {}},
        "awa2": {"method": {"lam": 100.0}, "train": {}},
        "flo": {"method": {"lam": 100.0}, "train": {}},
    }
    tiny: ClassVar[dict[str, Any]] = {"lam": 100.0}
    att: torch.Tensor
    W: torch.Tensor

    def __init__(self, cfg: SAEConfig, task: TaskInfo) -> None:
        super().__init__(cfg, task)
        self.register_buffer("att", torch.as_tensor(task.att, dtype=torch.float32))  # [K, A]
        # The solution is a buffer, not a Parameter: nothing here is trained by gradient.
        self.register_buffer("W", torch.zeros(task.num_attributes, task.feature_dim))  # [A, F]

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=1) if self.cfg.normalize_input else x

    def fit(self, x: torch.Tensor, y: torch.Tensor) -> None:
        X = self._prepare(x.float()).detach().cpu().double().numpy().T  # [F, N]
        S = self.att.detach().cpu().double().numpy()[y.cpu().numpy()].T  # [A, N]
        W = solve_sae(X, S, self.cfg.lam)
        self.W.copy_(torch.as_tensor(W, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self._prepare(x)
        if self.cfg.space == "semantic":
            s_hat = F.normalize(x @ self.W.T, dim=1)  # [B, A]
            logits = s_hat @ F.normalize(self.att, dim=1).T  # [B, K]
        else:
            x_hat = F.normalize(self.att @ self.W, dim=1)  # [K, F]
            logits = F.normalize(x, dim=1) @ x_hat.T  # [B, K]
        return {"logits": logits}
