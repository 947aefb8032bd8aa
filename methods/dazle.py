"""DAZLE: dense attribute-based attention with attribute word vectors and self-calibration.

Paper: D. Huynh, E. Elhamifar, "Fine-Grained Generalized Zero-Shot Learning via Dense
Attribute-Based Attention", CVPR 2020.
Official code: github.com/hbdat/cvpr20_DAZLE (``core/DAZLE.py``, ``notebook/DAZLE_*.ipynb``).

Computation (B batch, F channels, R regions, A attributes, D word-vector dim, K classes):
region features are L2-normalised over F; V [A, D] attribute word vectors (trainable);
- attention  α[b,i,r] = softmax_r( v_iᵀ W2 f_{b,r} )              (W2 init 0)
- scores     S[b,i,r] = v_iᵀ W1 f_{b,r};  e[b,i] = Σ_r α S          (W1 init N(0,1))
- gate       g[b,i] = σ( v_iᵀ W3 Σ_r α f_{b,r} )                     (W3 init 0; "attention 2")
- logits     s[b,k] = Σ_i z_{k,i} g e + bias_k,  bias = +1 unseen / −1 seen (fixed)
Loss: cross-entropy over all K classes of ``s − bias`` + λ·self-calibration
``−log mean_b Σ_{c unseen} softmax(s_b)_c`` (on the biased logits).

Where this implementation differs:
- ``V Wj`` is formed once per step and the three A×F by F×R products are one batched GEMM; the
  gate is computed as Σ_r α (v_iᵀW3 f_r) instead of from the attended features (equal, cheaper).
- No FLO word vectors exist: V is then learned from N(0,1) init (the official ``init_w2v_att=None``
  path).
- Unused branches of the official module (conv reduction, rank loss, pruning, non-linear
  embedding) are left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from zsl_bench.config import check
from zsl_bench.contract import TaskInfo, ZSLMethod
from zsl_bench.registry import METHODS

_OPT = {"optimizer": "rmsprop", "lr": 1e-4, "weight_decay": 1e-4, "momentum": 0.9, "batch_size": 50}


def init_attribute_vectors(task: TaskInfo, dim_v: int) -> torch.Tensor:
    """Row-normalised word vectors [A, D], or N(0,1) [A, dim_v] where the dataset has none."""
    if task.w2v is not None:
        return F.normalize(torch.as_tensor(task.w2v, dtype=torch.float32), dim=1)
    return torch.randn(task.num_attributes, dim_v)


def self_calibration(logits: torch.Tensor, unseen: torch.Tensor) -> torch.Tensor:
    """``−log mean_b Σ_{c∈unseen} softmax(logits_b)_c``; ``unseen`` is a [K] bool mask."""
    mass = logits.softmax(1)[:, unseen].sum(1)  # [B]
    return -torch.log(mass.mean().clamp_min(1e-12))


@dataclass(frozen=True)
class DAZLEConfig:
    lambda_sc: float = 0.1  # λ, self-calibration weight
    trainable_v: bool = True
    normalize_v: bool = False
    normalize_f: bool = True
    attribute_gate: bool = True  # the second attention (official uniform_att_2=False)
    bias: float = 1.0  # calibration margin built into the logits (official default 1)
    dim_v: int = 300  # only used when the dataset has no word vectors

    def __post_init__(self) -> None:
        check(self.lambda_sc >= 0, "method.lambda_sc", self.lambda_sc, "a float >= 0")
        check(self.bias >= 0, "method.bias", self.bias, "a float >= 0")
        check(self.dim_v >= 1, "method.dim_v", self.dim_v, "an integer >= 1")


@METHODS.register("dazle")
class DAZLE(ZSLMethod):
    """Dense attribute attention over region features; attribute-based class scores."""

    name = "dazle"
    family = "attention"
    input = "regions"
    image_size = 224  # its paper: 7×7 maps of 224-px images (features-224px.h5; zsl_bench/data/features.py)
    paper = "Huynh & Elhamifar, DAZLE, CVPR 2020"
    config_cls = DAZLEConfig
    # From the official notebooks (notebook/DAZLE_{CUB,SUN,AWA2}.ipynb), all RMSprop lr 1e-4, wd 1e-4,
    # batch 50, λ 0.1: CUB 20 epochs, momentum 0.9, uniform sampling, normalize_V False;
    # SUN 100 epochs, momentum 0.9, balanced sampling, uniform_att_2=True (no attribute gate);
    # AWA2 20 epochs, momentum 0, balanced sampling, normalize_V True. FLO (no notebook) is ours.
    presets: ClassVar[dict[str, dict[str, dict[str, Any]]]] = {
        "cub": {"method": {"lambda_sc": 0.1}, "train": {**_OPT, "epochs": 20}},
        "sun": {"method": {"lambda_sc": 0.1, "attribute_gate": False},
                "train": {**_OPT, "epochs": 100, "sampler": "class_balanced"}},
        "awa2": {"method": {"lambda_sc": 0.1, "normalize_v": True},
                 "train": {**_OPT, "epochs": 20, "momentum": 0.0, "sampler": "class_balanced"}},
        "flo": {"method": {"lambda_sc": 0.1}, "train": {**_OPT, "epochs": 20}},
    }
    tiny: ClassVar[dict[str, Any]] = {"dim_v": 8}
    att: torch.Tensor
    unseen: torch.Tensor
    vec_bias: torch.Tensor

    def __init__(self, cfg: DAZLEConfig, task: TaskInfo) -> None:
        super().__init__(cfg, task)
        V = init_attribute_vectors(task, cfg.dim_v)
        D, F_ = V.shape[1], task.feature_dim
        self.V = nn.Parameter(V, requires_grad=cfg.trainable_v)  # [A, D]
        self.W1 = nn.Parameter(torch.randn(D, F_))  # attribute scores
        self.W2 = nn.Parameter(torch.zeros(D, F_))  # spatial attention
        self.W3 = nn.Parameter(torch.zeros(D, F_), requires_grad=cfg.attribute_gate)  # gate
        self.register_buffer("att", F.normalize(torch.as_tensor(task.att, dtype=torch.float32), dim=1))
        seen = task.seen_mask()
        unseen = torch.zeros_like(seen)
        unseen[torch.as_tensor(task.unseen, dtype=torch.long)] = True
        self.register_buffer("unseen", unseen)  # [K] bool
        # +bias on unseen, −bias on seen (classes of neither group get 0).
        self.register_buffer("vec_bias", cfg.bias * (unseen.float() - seen.float()))  # [K]

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=1) if self.cfg.normalize_f else x  # [B, F, R]

    def _vectors(self) -> torch.Tensor:
        return F.normalize(self.V, dim=1) if self.cfg.normalize_v else self.V

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        f = self._features(x)  # [B, F, R]
        V = self._vectors()
        A = V.shape[0]
        # All per-region products in one GEMM. The gate v_iᵀW3(Σ_r α f_r) equals Σ_r α (v_iᵀW3 f_r),
        # so it needs no [B, A, F] attended-feature tensor.
        maps = [self.W1, self.W2, self.W3] if self.cfg.attribute_gate else [self.W1, self.W2]
        prods = torch.matmul(torch.cat([V @ W for W in maps]), f)  # [B, len(maps)·A, R]
        S, alpha = prods[:, :A], prods[:, A:2 * A].softmax(-1)  # [B, A, R] each
        e = (alpha * S).sum(-1)  # [B, A]
        if self.cfg.attribute_gate:
            e = e * torch.sigmoid((alpha * prods[:, 2 * A:]).sum(-1))  # [B, A]
        logits = e @ self.att.T + self.vec_bias  # [B, K]
        return {"logits": logits, "attr_scores": e, "attention": alpha}

    def loss(self, out: dict[str, torch.Tensor], y: torch.Tensor) -> dict[str, torch.Tensor]:
        ce = F.cross_entropy(out["logits"] - self.vec_bias, y)
        sc = self_calibration(out["logits"], self.unseen)
        return {"loss": ce + self.cfg.lambda_sc * sc, "ce": ce, "self_cal": sc}

    @torch.no_grad()
    def attention_maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"attribute_to_region": self.forward(x)["attention"]}  # [B, A, R]
