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
Loss: cross-entropy of ``s − bias`` + λ·self-calibration ``−log mean_b Σ_{c unseen} softmax(s_b)_c``
(on the biased logits), both over the phase's classes (seen ∪ unseen; see below).

Where this implementation differs:
- Cross-entropy and self-calibration run over the phase's classes (``TaskInfo.seen ∪ unseen``),
  as in MSDN, so under honest validation the held-out test classes never enter the training
  softmax. The official code uses all K classes, the same set on its (test-oracle) setting.
- ``V Wj`` is formed once per step and the three A×F by F×R products are one batched GEMM; the
  gate is computed as Σ_r α (v_iᵀW3 f_r) instead of from the attended features (equal, cheaper).
- No FLO word vectors exist: V is then learned from N(0,1) init (the official ``init_w2v_att=None``
  path).
- AWA2 schedule: batches of 40 images of 40 distinct classes, as the official balanced loader
  yields for its batch of 50 on 40 seen classes, but an epoch here is ceil(n / 40) steps where
  the official script counts n // 50 steps per epoch (about 25 % more steps per epoch; MSDN's too).
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


def class_semantics(task: TaskInfo, clip_negative: bool) -> torch.Tensor:
    """Z [K, A]: class semantics, optionally clipped at 0 first (the official AWA2 scripts), rows L2-normalised."""
    att = torch.as_tensor(task.att, dtype=torch.float32)
    return F.normalize(att.clamp_min(0) if clip_negative else att, dim=1)


class PhaseLosses(nn.Module):
    """Cross-entropy and self-calibration restricted to the phase's classes (seen ∪ unseen).

    Holds the +bias/−bias margin (0 for classes outside the phase), the unseen mask and, when the
    phase does not hold every class (the validation phase of protocol ``val``), the phase's global
    ids and each class's position among them. On a phase that holds every class the terms are
    computed exactly as before (over all K), so test-oracle and retrain numbers do not move.
    """

    unseen: torch.Tensor
    vec_bias: torch.Tensor
    phase: torch.Tensor
    position: torch.Tensor

    def __init__(self, task: TaskInfo, bias: float) -> None:
        super().__init__()
        seen = task.seen_mask()
        unseen = torch.zeros_like(seen)
        unseen[torch.as_tensor(task.unseen, dtype=torch.long)] = True
        self.register_buffer("unseen", unseen)  # [K] bool
        # +bias on unseen, −bias on seen (classes of neither group get 0).
        self.register_buffer("vec_bias", bias * (unseen.float() - seen.float()))  # [K]
        phase = (seen | unseen).nonzero().squeeze(1)  # [P] global ids, sorted
        self.full = bool(phase.numel() == seen.numel())
        position = torch.full((seen.numel(),), -1, dtype=torch.long)
        position[phase] = torch.arange(phase.numel())
        self.register_buffer("phase", phase, persistent=False)
        self.register_buffer("position", position, persistent=False)  # [K]: -1 outside the phase

    def forward(self, logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(CE of ``logits − bias``, self-calibration of ``logits``); ``logits`` [B, K] carry the margin.

        Labels outside the phase are refused once per phase by the engine (``Engine.train``).
        """
        bias, unseen = self.vec_bias, self.unseen
        if not self.full:
            logits, bias, unseen = logits.index_select(1, self.phase), bias[self.phase], unseen[self.phase]
            y = self.position[y]
        return F.cross_entropy(logits - bias, y), self_calibration(logits, unseen)


@dataclass(frozen=True)
class DAZLEConfig:
    lambda_sc: float = 0.1  # λ, self-calibration weight
    trainable_v: bool = True
    normalize_v: bool = False
    normalize_f: bool = True
    attribute_gate: bool = True  # the second attention (official uniform_att_2=False)
    bias: float = 1.0  # calibration margin built into the logits (official default 1)
    clip_negative_att: bool = False  # clip class semantics at 0 before normalising (official AWA2)
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
    # AWA2 20 epochs, momentum 0, balanced sampling, normalize_V True, att[att<0]=0. The balanced
    # loader draws one image from each of min(batch, #seen) distinct classes: batches of 40 on
    # AWA2's 40 seen classes, hence batch 40 here. The notebooks count an epoch as
    # niters // nepoches = floor(ntrain / 50) steps whatever batch the loader delivers
    # (``niters = dataloader.ntrain * nepoches//batch_size``, batch_size 50): ``epoch_batch_size: 50``.
    # FLO (no notebook) is ours, with our default epoch (one pass over the data).
    presets: ClassVar[dict[str, dict[str, dict[str, Any]]]] = {
        "cub": {"method": {"lambda_sc": 0.1}, "train": {**_OPT, "epochs": 20, "epoch_batch_size": 50}},
        "sun": {"method": {"lambda_sc": 0.1, "attribute_gate": False},
                "train": {**_OPT, "epochs": 100, "sampler": "class_balanced", "epoch_batch_size": 50}},
        "awa2": {"method": {"lambda_sc": 0.1, "normalize_v": True, "clip_negative_att": True},
                 "train": {**_OPT, "epochs": 20, "momentum": 0.0, "sampler": "class_balanced",
                           "batch_size": 40, "epoch_batch_size": 50}},
        "flo": {"method": {"lambda_sc": 0.1}, "train": {**_OPT, "epochs": 20}},
    }
    tiny: ClassVar[dict[str, Any]] = {"dim_v": 8}
    att: torch.Tensor

    def __init__(self, cfg: DAZLEConfig, task: TaskInfo) -> None:
        super().__init__(cfg, task)
        V = init_attribute_vectors(task, cfg.dim_v)
        D, F_ = V.shape[1], task.feature_dim
        self.V = nn.Parameter(V, requires_grad=cfg.trainable_v)  # [A, D]
        self.W1 = nn.Parameter(torch.randn(D, F_))  # attribute scores
        self.W2 = nn.Parameter(torch.zeros(D, F_))  # spatial attention
        self.W3 = nn.Parameter(torch.zeros(D, F_), requires_grad=cfg.attribute_gate)  # gate
        self.register_buffer("att", class_semantics(task, cfg.clip_negative_att))
        self.phase_losses = PhaseLosses(task, cfg.bias)

    @property
    def vec_bias(self) -> torch.Tensor:
        return self.phase_losses.vec_bias  # [K] +bias unseen, −bias seen, 0 outside the phase

    @property
    def unseen(self) -> torch.Tensor:
        return self.phase_losses.unseen  # [K] bool

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
        ce, sc = self.phase_losses(out["logits"], y)
        return {"loss": ce + self.cfg.lambda_sc * sc, "ce": ce, "self_cal": sc}

    @torch.no_grad()
    def attention_maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"attribute_to_region": self.forward(x)["attention"]}  # [B, A, R]
