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
- Input features are L2-normalised per sample (``normalize_input``, ours) so one learning rate
  suits real (ResNet, large scale) and simulated features.
- The rank loss sums the hinge over all wrong *seen* classes of each sample (the paper's form),
  computed for the whole batch at once.

This file also holds :class:`BilinearEmbedding`, the compatibility ``x W φ(y)`` that DeViSE and
SJE share (SJE imports it), so the two differ only in their loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from zsl_bench.config import check
from zsl_bench.contract import TaskInfo, ZSLMethod
from zsl_bench.data.datasets import dataset_names
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

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Project pooled features ``[B, F]`` to the semantic space ``[B, A]``."""
        if self.cfg.normalize_input:
            x = F.normalize(x, dim=1)
        return x @ self.W

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"logits": self.embed(x) @ self.att.T}  # [B, K]

    def _wrong_seen(self, y: torch.Tensor) -> torch.Tensor:
        """[B, K] float mask of the seen classes other than each sample's label."""
        wrong = self.seen.unsqueeze(0).expand(y.shape[0], -1).clone()
        wrong[torch.arange(y.shape[0], device=y.device), y] = False
        return wrong.float()


@dataclass(frozen=True)
class DeViSEConfig:
    margin: float = 0.1  # the paper's margin
    normalize_input: bool = True  # ours, see module docstring

    def __post_init__(self) -> None:
        check(self.margin > 0, "method.margin", self.margin, "a float > 0")


@METHODS.register("devise")
class DeViSE(BilinearEmbedding):
    """Linear visual→semantic map with the hinge rank loss over wrong seen classes."""

    name = "devise"
    family = "embedding"
    input = "pooled"
    paper = "Frome et al., DeViSE, NIPS 2013"
    config_cls = DeViSEConfig
    # No per-dataset values were published for the GBU re-runs: the schedules are ours.
    presets: ClassVar[dict[str, dict[str, dict[str, Any]]]] = {
        ds: {"method": {"margin": 0.1}, "train": {"optimizer": "adam", "lr": 1e-3, "epochs": 30,
                                                  "batch_size": 64, "weight_decay": 1e-5}}
        for ds in dataset_names()
    }
    tiny: ClassVar[dict[str, Any]] = {"margin": 0.1}

    def loss(self, out: dict[str, torch.Tensor], y: torch.Tensor) -> dict[str, torch.Tensor]:
        s = out["logits"]  # [B, K]
        s_true = s.gather(1, y.view(-1, 1))  # [B, 1]
        hinge = F.relu(self.cfg.margin - s_true + s) * self._wrong_seen(y)  # [B, K]
        rank = hinge.sum(1).mean()
        return {"loss": rank, "rank": rank}
