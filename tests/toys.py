"""Test-only methods shared by several test files (import as ``from toys import ...``: one module,
one registration).

- ``nan_test``: a linear scorer whose ``bad`` loss term is NaN at one global training step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from zsl_bench.contract import TaskInfo, ZSLMethod
from zsl_bench.registry import METHODS


@dataclass(frozen=True)
class NaNConfig:
    nan_step: int = 2  # the global step (1-based) whose 'bad' term is NaN; one batch per epoch: the epoch


@METHODS.register("nan_test")
class NaNMethod(ZSLMethod):
    """Test-only: a linear scorer whose 'bad' loss term is NaN at step ``nan_step`` (NaN guards)."""

    name = "nan_test"
    config_cls = NaNConfig
    input = "pooled"

    def __init__(self, cfg: NaNConfig, task: TaskInfo) -> None:
        super().__init__(cfg, task)
        self.lin = torch.nn.Linear(task.feature_dim, task.num_classes)
        self.steps = 0

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"logits": self.lin(x)}

    def loss(self, out: dict[str, torch.Tensor], y: torch.Tensor) -> dict[str, torch.Tensor]:
        self.steps += 1
        ce = torch.nn.functional.cross_entropy(out["logits"], y)
        bad = ce * float("nan") if self.steps == self.cfg.nan_step else ce * 0
        return {"loss": ce + bad, "ce": ce, "bad": bad}
