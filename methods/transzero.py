"""TransZero: attribute-guided transformer for zero-shot learning.

Paper: S. Chen, Z. Hong, Y. Liu, G.-S. Xie, B. Sun, H. Li, Q. Peng, K. Lu, X. You,
"TransZero: Attribute-guided Transformer for Zero-Shot Learning", AAAI 2022.
Official code: github.com/shiming-chen/TransZero (``model.py``, ``train_*.py``, ``wandb_config/``).

Computation (region features f [B, F, R] L2-normalised over F; V [A, D] attribute word vectors):
- feature augmentation encoder: regions mapped to a common dim d, then self-attention whose
  weights are ``softmax(q kᵀ/√d − w_g)`` with ``w_g = ReLU(W_G · E(Δgeometry))``, a learned
  penalty from the relative grid geometry of each region pair (E: sinusoidal embedding of the
  log relative offsets), with the official residual ``LN₂(h + drop(LN₁(h + drop(attn(h)))))``
  (LayerNorm twice: the official attention module's and its encoder layer's), then a
  feed-forward block. Dropout on the attention weights is ``attention_dropout`` (0.1: the
  official module is built without passing its dropout), elsewhere ``dropout`` (the yaml's);
- attribute-guided decoder: queries are the embedded attribute vectors ``V W_a`` (one per
  attribute), optional self-attention among attributes, cross-attention to the encoded
  regions, feed-forward; output ``o [B, A, d]``;
- attribute scores ``ψ[b,i] = v_iᵀ W1 o_{b,i}``; logits ``Zψ + bias`` (+1 unseen, −1 seen).
Loss: CE of ``logits − bias`` + λ_SC·self-calibration + λ_AR·‖ψ − z_y‖² (attribute regression,
the semantic-consistency term), CE and self-calibration over the phase's classes.

Where this implementation differs:
- CE and self-calibration run over the phase's classes (``TaskInfo.seen ∪ unseen``), as in
  MSDN and DAZLE, so under honest validation the held-out test classes never enter the training
  softmax. The official code uses all K classes, the same set on its (test-oracle) setting.
- The geometry grid is derived from R (square grids; otherwise a 1×R strip) instead of a fixed
  14×14, so simulated 7×7 maps work.
- ``embed_cv_aux`` of the official module never reaches the output and is left out.
- AWA2 schedule: batches of 40 images of 40 distinct classes, as the official balanced loader
  yields for its batch of 50 on 40 seen classes, but an epoch here is ceil(n / 40) steps where
  the official script counts n // 50 steps per epoch (about 25 % more steps per epoch; MSDN's too).
- FLO has no word vectors: V is learned from N(0,1) init (DAZLE's path).
- Speed only (same equations): attention is computed from ``nn.MultiheadAttention``'s own weights
  without its layout copies, a query shared by all images is projected once, and CPU dropout
  draws its mask with one ``rand`` (same Bernoulli(1-p) distribution, other random stream).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from zsl_bench.config import check
from zsl_bench.contract import TaskInfo, ZSLMethod
from zsl_bench.errors import DataError
from zsl_bench.registry import METHODS

from .dazle import PhaseLosses, class_semantics, init_attribute_vectors

# train_cub.py: Adam; train_sun.py: SGD momentum 0.9; train_awa2.py: SGD momentum 0 (all lr 1e-4,
# wd 1e-4). The yaml's batch is 50; the balanced loaders (SUN, AWA2) draw one image from each of
# min(50, #seen) distinct classes, i.e. 40-image batches on AWA2.
_OPT = {"optimizer": "adam", "lr": 1e-4, "weight_decay": 1e-4, "batch_size": 50}
_SGD = {**_OPT, "optimizer": "sgd", "sampler": "class_balanced"}


def grid_geometry(regions: int, dim_g: int = 64, wave_len: float = 1000.0) -> torch.Tensor:
    """Sinusoidal embedding [R, R, dim_g] of the relative offsets between grid cells."""
    side = math.isqrt(regions)
    rows, cols = (side, side) if side * side == regions else (1, regions)
    ys, xs = torch.meshgrid(torch.arange(rows, dtype=torch.float32),
                            torch.arange(cols, dtype=torch.float32), indexing="ij")
    cx = (xs.reshape(-1) + 0.5) / cols  # [R] cell centres in [0, 1]
    cy = (ys.reshape(-1) + 0.5) / rows
    cell_w, cell_h = 1.0 / cols + 1.0, 1.0 / rows + 1.0  # as in the official box embedding
    dx = torch.log(((cx[:, None] - cx[None, :]) / cell_w).abs().clamp_min(1e-3))  # [R, R]
    dy = torch.log(((cy[:, None] - cy[None, :]) / cell_h).abs().clamp_min(1e-3))
    zeros = torch.zeros_like(dx)  # all cells share one size: log width/height ratios are 0
    pos = torch.stack([dx, dy, zeros, zeros], -1)  # [R, R, 4]
    n_freq = dim_g // 8
    freq = 1.0 / wave_len ** (torch.arange(n_freq, dtype=torch.float32) / n_freq)  # [n]
    arg = (100.0 * pos).unsqueeze(-1) * freq  # [R, R, 4, n]
    arg = arg.reshape(regions, regions, -1)
    return torch.cat([arg.sin(), arg.cos()], -1)  # [R, R, dim_g]


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Inverted dropout, distributed as ``F.dropout``; on CPU the keep-mask comes from one ``rand``
    (about 3x faster there than ``F.dropout``'s Bernoulli draw, a third of a CUB training step)."""
    if not training or p == 0.0:
        return x
    if x.is_cuda:
        return F.dropout(x, p, True)
    return x * torch.rand(x.shape, dtype=x.dtype, device=x.device).ge_(p).mul_(1.0 / (1.0 - p))


def attend(mha: nn.MultiheadAttention, q: torch.Tensor, kv: torch.Tensor, training: bool) -> torch.Tensor:
    """``mha(q, kv, kv)`` (batch-first, no masks) from the module's own weights, with broadcasting.

    ``q`` [Bq, Lq, d] and ``kv`` [Bk, Lk, d] broadcast over the batch, so a query shared by every
    image ([1, A, d]) is projected once. Same equations as ``nn.MultiheadAttention`` (its
    parameters, init and state-dict names are kept), without its layout copies.
    """
    d, h = q.shape[-1], mha.num_heads
    w, b = mha.in_proj_weight, mha.in_proj_bias
    if q is kv:
        Q, K, V = F.linear(q, w, b).chunk(3, -1)
    else:
        Q = F.linear(q, w[:d], b[:d])
        K, V = F.linear(kv, w[d:], b[d:]).chunk(2, -1)
    if h > 1:  # [B, L, d] -> [B, h, L, d/h]
        Q, K, V = (t.unflatten(-1, (h, d // h)).transpose(-3, -2) for t in (Q, K, V))
    att = torch.matmul(Q * (d // h) ** -0.5, K.transpose(-1, -2)).softmax(-1)  # [B, (h,) Lq, Lk]
    out = torch.matmul(dropout(att, mha.dropout, training), V)
    if h > 1:
        out = out.transpose(-3, -2).flatten(-2)
    return mha.out_proj(out)


def feed_forward(ff: nn.Sequential, x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """``ff`` = Linear, ReLU, Dropout, Linear, with :func:`dropout` in place of its Dropout."""
    return ff[3](dropout(ff[1](ff[0](x)), p, training))


class GeometryEncoderLayer(nn.Module):
    """Self-attention over regions with a learned geometry penalty, then a feed-forward block."""

    def __init__(self, d: int, d_ff: int, dropout: float, attention_dropout: float) -> None:
        super().__init__()
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))
        # norm1: the attention module's LayerNorm; norm1_outer: the encoder layer's, applied after
        # it (official MultiHeadGeometryAttention.layer_norm, then EncoderLayer.lnorm).
        self.norm1, self.norm1_outer, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.ff = nn.Sequential(nn.Linear(d, d_ff), nn.ReLU(), nn.Dropout(dropout), nn.Linear(d_ff, d))
        self.p, self.p_att = dropout, attention_dropout
        self.scale = d**-0.5

    def forward(self, h: torch.Tensor, w_geo: torch.Tensor) -> torch.Tensor:
        # h [B, R, d]; w_geo [R, R] (≥ 0, larger = attend less)
        p, tr = self.p, self.training
        logits = self.q(h) @ self.k(h).transpose(1, 2) * self.scale - w_geo  # [B, R, R]
        att = dropout(logits.softmax(-1), self.p_att, tr)
        a = self.norm1(h + dropout(self.o(att @ self.v(h)), p, tr))
        h = self.norm1_outer(h + dropout(a, p, tr))
        return self.norm2(h + dropout(feed_forward(self.ff, h, p, tr), p, tr))


class AttributeDecoderLayer(nn.Module):
    """Attribute queries attend to encoded regions (optionally to each other first)."""

    def __init__(self, d: int, d_ff: int, dropout: float, heads: int, self_attention: bool) -> None:
        super().__init__()
        self.self_attention = self_attention
        if self_attention:
            self.self_attn = nn.MultiheadAttention(d, heads, dropout=dropout, batch_first=True)
            self.norm0 = nn.LayerNorm(d)
        self.cross_attn = nn.MultiheadAttention(d, heads, dropout=dropout, batch_first=True)
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.ff = nn.Sequential(nn.Linear(d, d_ff), nn.ReLU(), nn.Dropout(dropout), nn.Linear(d_ff, d))
        self.p = dropout

    def forward(self, q: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        # q [B, A, d] or [1, A, d]: the first layer's queries are the same for every image, so its
        # attribute self-attention (and, in eval mode or without dropout, the whole query path up
        # to the cross-attention's query projection) runs once per batch; memory [B, R, d]
        p, tr = self.p, self.training
        per_image = tr and p > 0  # dropout masks differ per image
        if self.self_attention:
            sa = attend(self.self_attn, q, q, tr)
            if per_image:
                q, sa = q.expand(memory.shape[0], -1, -1), sa.expand(memory.shape[0], -1, -1)
            q = self.norm0(q + dropout(sa, p, tr))
        elif per_image:
            q = q.expand(memory.shape[0], -1, -1)
        q = self.norm1(q + dropout(attend(self.cross_attn, q, memory, tr), p, tr))  # [B, A, d]
        return self.norm2(q + dropout(feed_forward(self.ff, q, p, tr), p, tr))


@dataclass(frozen=True)
class TransZeroConfig:
    lambda_sc: float = 0.3  # self-calibration
    lambda_ar: float = 0.005  # attribute regression
    dim_com: int = 300  # common transformer dim d
    dim_ff: int = 512
    dropout: float = 0.4  # official tf_dropout: every dropout but the encoder attention's
    attention_dropout: float = 0.1  # encoder attention weights (official: hard-coded default 0.1)
    heads: int = 1
    enc_layers: int = 1
    dec_layers: int = 1
    attribute_self_attention: bool = True  # official tf_SAtt
    normalize_v: bool = False
    clip_negative_att: bool = False  # clip class semantics at 0 before normalising (official AWA2)
    bias: float = 1.0
    dim_v: int = 300  # only used when the dataset has no word vectors

    def __post_init__(self) -> None:
        check(self.lambda_sc >= 0, "method.lambda_sc", self.lambda_sc, "a float >= 0")
        check(self.lambda_ar >= 0, "method.lambda_ar", self.lambda_ar, "a float >= 0")
        check(self.heads >= 1 and self.dim_com % self.heads == 0, "method.heads", self.heads,
                f"an integer >= 1 dividing method.dim_com ({self.dim_com})")
        check(self.dim_com >= 1, "method.dim_com", self.dim_com, "an integer >= 1")
        check(self.dim_ff >= 1, "method.dim_ff", self.dim_ff, "an integer >= 1")
        check(0 <= self.dropout < 1, "method.dropout", self.dropout, "a float in [0, 1)")
        check(0 <= self.attention_dropout < 1, "method.attention_dropout", self.attention_dropout,
              "a float in [0, 1)")
        check(self.enc_layers >= 0, "method.enc_layers", self.enc_layers, "an integer >= 0")
        check(self.dec_layers >= 1, "method.dec_layers", self.dec_layers, "an integer >= 1")
        check(self.bias >= 0, "method.bias", self.bias, "a float >= 0")
        check(self.dim_v >= 1, "method.dim_v", self.dim_v, "an integer >= 1")


@METHODS.register("transzero")
class TransZero(ZSLMethod):
    """Geometry-aware region encoder + attribute-query decoder; attribute-based class scores."""

    name = "transzero"
    family = "attention"
    input = "regions"
    paper = "Chen et al., TransZero, AAAI 2022"
    config_cls = TransZeroConfig
    # Model values from the official wandb_config/<ds>_gzsl.yaml (the file train_<ds>.py loads);
    # optimizer, sampler and the AWA2 clip from train_<ds>.py and dataset.py (see _OPT).
    # An epoch is niters // epochs = floor(ntrain / 50) steps (train_<ds>.py: ``niters =
    # dataloader.ntrain * config.epochs//config.batch_size``, yaml batch_size 50), whatever batch the
    # loader delivers (40 on AWA2): ``epoch_batch_size: 50``. FLO was not in TransZero: CUB values,
    # ours, with our default epoch (one pass over the data).
    presets: ClassVar[dict[str, dict[str, dict[str, Any]]]] = {
        "cub": {"method": {"lambda_sc": 0.3, "lambda_ar": 0.005, "dim_com": 300, "dim_ff": 512,
                           "dropout": 0.4, "attribute_self_attention": True},
                "train": {**_OPT, "epochs": 200, "epoch_batch_size": 50}},
        "sun": {"method": {"lambda_sc": 0.25, "lambda_ar": 0.001, "dim_com": 128, "dim_ff": 2048,
                           "dropout": 0.3, "attribute_self_attention": False},
                "train": {**_SGD, "momentum": 0.9, "epochs": 400, "epoch_batch_size": 50}},
        "awa2": {"method": {"lambda_sc": 2.0, "lambda_ar": 0.0005, "dim_com": 300, "dim_ff": 512,
                            "dropout": 0.5, "attribute_self_attention": True, "normalize_v": True,
                            "clip_negative_att": True},
                 "train": {**_SGD, "momentum": 0.0, "batch_size": 40, "epochs": 200, "epoch_batch_size": 50}},
        "flo": {"method": {"lambda_sc": 0.3, "lambda_ar": 0.005, "dim_com": 300, "dim_ff": 512,
                           "dropout": 0.4}, "train": {**_OPT, "epochs": 200}},
    }
    tiny: ClassVar[dict[str, Any]] = {"dim_com": 8, "dim_ff": 16, "dim_v": 8, "dropout": 0.1}
    att: torch.Tensor
    geometry: torch.Tensor

    def __init__(self, cfg: TransZeroConfig, task: TaskInfo) -> None:
        super().__init__(cfg, task)
        if task.regions is None:
            raise DataError(f"transzero needs region features [N, F, R]; dataset {task.dataset!r} "
                            "was loaded with pooled features only")
        V = init_attribute_vectors(task, cfg.dim_v)
        D, d = V.shape[1], cfg.dim_com
        self.V = nn.Parameter(V)  # [A, D]
        self.W1 = nn.Parameter(torch.randn(D, d))  # attribute-score map
        self.embed_cv = nn.Linear(task.feature_dim, d)
        self.embed_attr = nn.Linear(D, d)
        self.geo = nn.Linear(64, 1)
        self.register_buffer("geometry", grid_geometry(task.regions))  # [R, R, 64]
        self.encoder = nn.ModuleList(GeometryEncoderLayer(d, cfg.dim_ff, cfg.dropout, cfg.attention_dropout)
                                     for _ in range(cfg.enc_layers))
        self.decoder = nn.ModuleList(
            AttributeDecoderLayer(d, cfg.dim_ff, cfg.dropout, cfg.heads, cfg.attribute_self_attention)
            for _ in range(cfg.dec_layers))
        self.register_buffer("att", class_semantics(task, cfg.clip_negative_att))
        self.phase_losses = PhaseLosses(task, cfg.bias)

    @property
    def vec_bias(self) -> torch.Tensor:
        return self.phase_losses.vec_bias  # [K] +bias unseen, −bias seen, 0 outside the phase

    @property
    def unseen(self) -> torch.Tensor:
        return self.phase_losses.unseen  # [K] bool

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        f = F.normalize(x, dim=1).transpose(1, 2)  # [B, R, F]
        V = F.normalize(self.V, dim=1) if self.cfg.normalize_v else self.V
        h = self.embed_cv(f)  # [B, R, d]
        w_geo = F.relu(self.geo(self.geometry).squeeze(-1))  # [R, R]
        for layer in self.encoder:
            h = layer(h, w_geo)
        q = self.embed_attr(V).unsqueeze(0)  # [1, A, d]; layers broadcast it to [B, A, d]
        for layer in self.decoder:
            q = layer(q, h)
        psi = (q * (V @ self.W1)).sum(-1)  # [B, A]: v_iᵀ W1 o_{b,i}
        logits = psi @ self.att.T + self.vec_bias  # [B, K]
        return {"logits": logits, "attr_scores": psi}

    def loss(self, out: dict[str, torch.Tensor], y: torch.Tensor) -> dict[str, torch.Tensor]:
        ce, sc = self.phase_losses(out["logits"], y)
        ar = F.mse_loss(out["attr_scores"], self.att[y])
        total = ce + self.cfg.lambda_sc * sc + self.cfg.lambda_ar * ar
        return {"loss": total, "ce": ce, "self_cal": sc, "attr_reg": ar}
