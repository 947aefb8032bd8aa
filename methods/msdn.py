"""MSDN: Mutually Semantic Distillation Network for zero-shot learning.

Paper: Chen et al., "MSDN: Mutually Semantic Distillation Network for Zero-Shot Learning", CVPR 2022.
Official code: github.com/shiming-chen/MSDN (``core/MSDN.py``, ``MSDN_{cub,sun,awa2}.py``).
Specification: ``../shared/spec/METHOD.md`` §1. Labels: [code] as in the official code,
[design] this project's choice.

Where this implementation differs from the official code (none changes a number on the official
setting, where a phase's classes are the whole dataset):

- [design] Only what the loss and inference need is computed. The official module also holds
  ``W_3``/``W_3_1`` and computes attribute-based features, an attention over attributes, a
  uniform-attention ablation and a pooled feature that never reach the loss. The four
  attribute x region products (S, α-logits, T, β-logits) are one GEMM per batch: the projected
  attribute vectors ``[V W1; V W2; V W11ᵀ; V W21]`` are stacked into one (4A x F) matrix.
- [design] The L2 normalisation of region features is fused into the one transposed copy of the
  input that the GEMM needs (regions first, ``[B·R, F]``), and the attention core (softmaxes,
  weighted sums) has a hand-written backward that writes the four gradient blocks in place and
  ends in one GEMM (:class:`_FusedAttention`, checked by gradcheck). Inputs that want a gradient
  themselves take a plain autograd path with the same numbers.
- [design] Cross-entropy, self-calibration and distillation run over the phase's classes
  (``TaskInfo.seen ∪ unseen``), so honest validation never sees the held-out test classes.
  The official code uses all K classes, which is the same set on its (test-oracle) setting.
- [design] Loss terms are returned by name, summed over the two sub-nets and unweighted; ``loss`` is
  the weighted total ``L_1 + L_2 + w_D·L_distill (+ λ_AR·L_AR)``.
- [design] Optional attribute regression ``λ_AR·mean_b ‖ψ − z_y‖²`` (off by default: MSDN does not
  use it; DAZLE and TransZero do).

Built-in calibration and the harness's γ [code]: the logits carry a margin ``+bias`` on the phase's
unseen and ``−bias`` on its seen classes (bias = 1). The official inference is
``w1·s1 + w2·s2`` *with* that margin and no further calibration; :meth:`MSDN.scores` returns
exactly that, so the harness's ``score − γ·[seen]`` at γ = 0 reproduces the official GZSL
prediction, and γ is added on top of the built-in margin of ``2·bias·(w1 + w2)`` (γ = −2 removes it
on the official presets, where w1 + w2 = 1). ZSL accuracy (argmax over unseen) is unaffected.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from zsl_bench.config import check
from zsl_bench.contract import TaskInfo, ZSLMethod
from zsl_bench.errors import ConfigError, DataError
from zsl_bench.registry import METHODS

# MSDN++'s hook: (α, α-logits, β, β-logits) -> constant counterfactual maps (Ā or None, B̄ or None).
Intervention = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
                        tuple[torch.Tensor | None, torch.Tensor | None]]

# RMSprop as in the official scripts: lr 1e-4, weight decay 1e-4, no schedule, batch 50.
_RMSPROP = {"optimizer": "rmsprop", "lr": 1e-4, "weight_decay": 1e-4, "batch_size": 50}
# The official epoch: niters = ntrain·nepoches // 50 steps, evaluated every niters // nepoches =
# floor(ntrain / 50) steps (MSDN_{cub,sun,awa2}.py), whatever batch the loader delivers [code].
_OFFICIAL_EPOCH = {"epoch_batch_size": 50}


@dataclass(frozen=True)
class MSDNConfig:
    """MSDN hyper-parameters (names follow METHOD.md; defaults are the CUB GZSL setting)."""

    lambda_cal: float = 0.1  # λ, self-calibration weight [code]
    w_distill: float = 1e-3  # w_D, semantic distillation weight [code]
    w1: float = 0.9  # fusion weight of the attribute→visual sub-net at inference [code]
    w2: float = 0.1  # fusion weight of the visual→attribute sub-net [code]
    bias: float = 1.0  # built-in margin: +bias unseen, −bias seen [code]
    normalize_v: bool = False  # re-normalise V's rows every forward (AWA2) [code]
    normalize_f: bool = True  # L2-normalise each region feature over F [code]
    clip_negative_att: bool = False  # clip class semantics at 0 before row normalisation (AWA2) [code]
    trainable_v: bool = True  # attribute word vectors are fine-tuned [code]
    v_dim: int = 300  # D of V when no word vectors exist (FLO: V ~ N(0, 1)) [code path]
    lambda_ar: float = 0.0  # attribute regression weight, off by default [design]

    def __post_init__(self) -> None:
        for key in ("lambda_cal", "w_distill", "w1", "w2", "bias", "lambda_ar"):
            value = getattr(self, key)
            check(isinstance(value, (int, float)) and math.isfinite(value) and value >= 0, f"method.{key}", value,
                   "a finite number >= 0")
        check(self.w1 + self.w2 > 0, "method.w1", self.w1, "w1 + w2 > 0 (at least one sub-net scores)")
        check(isinstance(self.v_dim, int) and self.v_dim >= 1, "method.v_dim", self.v_dim, "an integer >= 1")


class MSDN(ZSLMethod):
    """Two mutually distilled attention sub-nets over region features ``[B, F, R]``."""

    name: ClassVar[str] = "msdn"
    family: ClassVar[str] = "attention"
    input: ClassVar[str] = "regions"
    paper: ClassVar[str] = "Chen et al., MSDN: Mutually Semantic Distillation Network for ZSL, CVPR 2022"
    description: ClassVar[str] = "attribute→visual and visual→attribute attention, mutually distilled"
    config_cls: ClassVar[type] = MSDNConfig
    # Official per-dataset settings [code]. CUB: λ = 0.1 is the official GZSL value (0.18 is its ZSL
    # run); we keep one preset per dataset and the harness reports both metrics from one run.
    # AWA2's class-balanced loader draws one image from each of min(batch, #seen) classes, i.e.
    # batches of 40 on its 40 seen classes, while the script counts its epoch in 50-image units:
    # an epoch is floor(ntrain / 50) steps of 40 images on AWA2 (floor(ntrain / 50) steps of 50 on
    # CUB and SUN), ``train.epoch_batch_size: 50``. FLO was not in MSDN: its preset is ours
    # [design], CUB's fine-grained setting with V learned from N(0, 1) and normalised (no word
    # vectors), with our default epoch (one pass over the data).
    presets: ClassVar[dict[str, dict[str, dict[str, Any]]]] = {
        "cub": {
            "method": {"lambda_cal": 0.1, "w_distill": 1e-3, "w1": 0.9, "w2": 0.1, "normalize_v": False},
            "train": {**_RMSPROP, **_OFFICIAL_EPOCH, "epochs": 30, "momentum": 0.9, "sampler": "uniform"},
        },
        "sun": {
            "method": {"lambda_cal": 1e-4, "w_distill": 1e-2, "w1": 0.7, "w2": 0.3, "normalize_v": False},
            "train": {**_RMSPROP, **_OFFICIAL_EPOCH, "epochs": 70, "momentum": 0.9, "sampler": "class_balanced"},
        },
        "awa2": {
            "method": {"lambda_cal": 0.12, "w_distill": 1e-7, "w1": 1.0, "w2": 0.0, "normalize_v": True,
                       "clip_negative_att": True},
            "train": {**_RMSPROP, **_OFFICIAL_EPOCH, "epochs": 50, "momentum": 0.0, "sampler": "class_balanced",
                      "batch_size": 40},
        },
        "flo": {  # ours [design]: MSDN has no FLO setting. lr 1e-3 rather than 1e-4 because V is
            # learned from scratch (no word vectors); chosen on validation H only (simulated FLO
            # small, data seed 0, seed 0: lr 1e-4 -> val H 16.4, lr 1e-3 -> val H 27.7).
            "method": {"lambda_cal": 0.1, "w_distill": 1e-3, "w1": 0.9, "w2": 0.1, "normalize_v": True},
            "train": {**_RMSPROP, "lr": 1e-3, "epochs": 30, "momentum": 0.9, "sampler": "uniform"},
        },
    }

    cfg: MSDNConfig
    att: torch.Tensor  # [K, A] buffers, declared for type checkers
    margin: torch.Tensor  # [K]
    phase: torch.Tensor  # [P] global ids of the phase's classes
    phase_position: torch.Tensor  # [K] position among them, -1 outside
    phase_unseen: torch.Tensor  # [U] positions of the unseen classes

    def __init__(self, cfg: MSDNConfig, task: TaskInfo) -> None:
        super().__init__(cfg, task)
        if task.regions is None:
            raise ConfigError(f"method {self.name} needs region features [B, F, R]; the task has pooled input")
        num_attr, dim_f = task.num_attributes, task.feature_dim

        att = torch.as_tensor(task.att, dtype=torch.float32)  # [K, A]
        if cfg.clip_negative_att:
            att = att.clamp_min(0)
        self.register_buffer("att", F.normalize(att, dim=1))  # Z, rows L2-normalised [code]

        # Random draws in the official order (V only without word vectors, then W1), so a seed
        # gives the official initialisation; the zero-initialised weights draw nothing.
        if task.w2v is None:
            v = torch.randn(num_attr, cfg.v_dim)
        else:
            w2v = torch.as_tensor(task.w2v, dtype=torch.float32)
            if w2v.ndim != 2 or w2v.shape[0] != num_attr:
                raise DataError(f"{task.dataset}: word vectors have shape {tuple(w2v.shape)}; "
                                f"expected [A={num_attr}, D]")
            v = F.normalize(w2v, dim=1)
        dim_v = v.shape[1]
        self.V = nn.Parameter(v, requires_grad=cfg.trainable_v)  # [A, D]
        self.W1 = nn.Parameter(torch.randn(dim_v, dim_f))  # [D, F] attribute score, N(0, 1)
        self.W2 = nn.Parameter(torch.zeros(dim_v, dim_f))  # [D, F] region attention logits
        self.W11 = nn.Parameter(torch.zeros(dim_f, dim_v))  # [F, D] region→attribute score
        self.W21 = nn.Parameter(torch.zeros(dim_v, dim_f))  # [D, F] attribute attention logits

        num_classes = task.num_classes
        seen = torch.as_tensor(task.seen, dtype=torch.long)
        unseen = torch.as_tensor(task.unseen, dtype=torch.long)
        margin = torch.zeros(num_classes)
        margin[unseen] = cfg.bias
        margin[seen] = -cfg.bias
        self.register_buffer("margin", margin)  # [K]
        # The phase's classes, and where each global id sits among them (-1: outside the phase).
        phase = torch.cat([seen, unseen]).unique()
        self._full_phase = bool(phase.numel() == num_classes)
        self.register_buffer("phase", phase, persistent=False)
        position = torch.full((num_classes,), -1, dtype=torch.long)
        position[phase] = torch.arange(phase.numel())
        self.register_buffer("phase_position", position, persistent=False)
        self.register_buffer("phase_unseen", position[unseen], persistent=False)

    # ------------------------------------------------------------------ forward

    def _attribute_vectors(self) -> torch.Tensor:
        """[4A, F]: V projected by W1, W2, W11ᵀ and W21, stacked for one GEMM."""
        v = F.normalize(self.V, dim=1) if self.cfg.normalize_v else self.V  # [A, D]
        return torch.cat([v @ self.W1, v @ self.W2, v @ self.W11.t(), v @ self.W21], dim=0)

    def _subnets(self, x: torch.Tensor, intervene: Intervention | None = None,
                 through_values: bool = True) -> dict[str, torch.Tensor]:
        """Both sub-nets' outputs: [B, R, A] (regions first) or [B, A] tensors.

        The products come from one GEMM; training inputs (no gradient wanted for ``x``) take the
        fused path, :class:`_FusedAttention`. ``intervene`` (MSDN++) maps (α, α-logits, β, β-logits)
        to constant counterfactual maps (Ā or None, B̄ or None); then ``psi_cf = Σ_r Ā S`` and
        ``omega_cf = Σ_r B̄ T`` are returned too, with gradients into S and T when ``through_values``.
        """
        if x.ndim != 3 or x.shape[1] != self.task.feature_dim:
            raise DataError(f"{self.name}: expected region features [B, F={self.task.feature_dim}, R], "
                            f"got shape {tuple(x.shape)}")
        b, f, r = x.shape
        num_attr = self.task.num_attributes
        xt = x.transpose(1, 2)  # [B, R, F]; the GEMM needs it contiguous, so it is copied once anyway
        inv_norm = None
        if self.cfg.normalize_f:
            # Same clamp as F.normalize; the scaling is fused into that copy.
            inv_norm = torch.linalg.vector_norm(x, dim=1).clamp_min(1e-12).reciprocal().unsqueeze(-1)
        p = self._attribute_vectors()  # [4A, F]
        if x.requires_grad:  # plain autograd (gradients for the input too)
            xt = (xt * inv_norm if inv_norm is not None else xt).reshape(b * r, f)
            g = (xt @ p.t()).view(b, r, 4 * num_attr)
            s, a_logit, t, b_logit = g.split(num_attr, dim=2)
            alpha, beta = a_logit.softmax(dim=1), b_logit.softmax(dim=2)
            psi, omega = (alpha * s).sum(dim=1), (beta * t).sum(dim=1)
            psi_cf = omega_cf = None
            if intervene is not None:
                a_bar, b_bar = intervene(alpha.detach(), a_logit.detach(), beta.detach(), b_logit.detach())
                sv, tv = (s, t) if through_values else (s.detach(), t.detach())
                psi_cf = (a_bar * sv).sum(dim=1) if a_bar is not None else None
                omega_cf = (b_bar * tv).sum(dim=1) if b_bar is not None else None
        else:
            with torch.no_grad():
                xt = torch.mul(xt, inv_norm, out=x.new_empty(b, r, f)) if inv_norm is not None \
                    else xt.reshape(b, r, f)
            psi, omega, g, alpha, beta, psi_cf, omega_cf = _FusedAttention.apply(
                xt.view(b * r, f), p, b, num_attr, intervene, through_values)
            s, a_logit, t, b_logit = g.split(num_attr, dim=2)
        net = {
            "S": s, "T": t, "alpha": alpha, "beta": beta, "a_logit": a_logit, "b_logit": b_logit,
            "psi": psi, "omega": omega,
            "s1": psi @ self.att.t() + self.margin,  # [B, K]
            "s2": omega @ self.att.t() + self.margin,
        }
        if psi_cf is not None:
            net["psi_cf"] = psi_cf
        if omega_cf is not None:
            net["omega_cf"] = omega_cf
        return net

    def _fuse(self, s1: torch.Tensor, s2: torch.Tensor) -> torch.Tensor:
        return self.cfg.w1 * s1 + self.cfg.w2 * s2

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``x`` [B, F, R] -> ``logits`` (fused, with the built-in margin), ``s1``, ``s2``, ``psi``, ``omega``."""
        net = self._subnets(x)
        out = {k: net[k] for k in ("s1", "s2", "psi", "omega")}
        out["logits"] = self._fuse(net["s1"], net["s2"])
        return out

    @torch.no_grad()
    def scores(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)["logits"]

    @torch.no_grad()
    def attention_maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``avca``: α (over regions), ``vaca``: β (over attributes), both [B, A, R]."""
        net = self._subnets(x)
        return {"avca": net["alpha"].transpose(1, 2), "vaca": net["beta"].transpose(1, 2)}

    # ------------------------------------------------------------------ losses

    def _phase_targets(self, y: torch.Tensor) -> torch.Tensor:
        if self._full_phase:
            return y
        pos = self.phase_position[y]
        # On CUDA the engine checked the phase's labels once (Engine.train): no per-step synchronisation.
        if not pos.is_cuda and bool((pos < 0).any()):
            raise DataError(f"{self.name}: training labels include classes outside this phase's seen/unseen sets")
        return pos

    def _in_phase(self, s: torch.Tensor) -> torch.Tensor:
        return s if self._full_phase else s.index_select(1, self.phase)

    def margin_cross_entropy(self, s: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of ``s − margin`` over the phase's classes [code]."""
        return F.cross_entropy(self._in_phase(s - self.margin), y)

    def calibrated_terms(self, s: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(CE on s − margin, self-calibration on s), over the phase's classes [code].

        ``s`` [B, K] carries the margin; ``y`` are positions among the phase's classes.
        """
        ce = self.margin_cross_entropy(s, y)
        s = self._in_phase(s)
        if self.phase_unseen.numel() == 0:
            return ce, s.new_zeros(())
        # −log mean_b Σ_unseen softmax(s_b), in log space for stability.
        log_mass = torch.logsumexp(s.index_select(1, self.phase_unseen), 1) - torch.logsumexp(s, 1)
        self_cal = math.log(s.shape[0]) - torch.logsumexp(log_mass, 0)
        return ce, self_cal

    def distill_terms(self, s1: torch.Tensor, s2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(L_l2 = mean_b Σ_k |d|³/‖d‖₂ with d = s1 − s2, L_JS) over the phase's classes [code]."""
        s1, s2 = self._in_phase(s1), self._in_phase(s2)
        d = s1 - s2
        # Clamping the squared norm keeps d = 0 finite, with zero gradient, where the official NaNs.
        norm = d.pow(2).sum(1).clamp_min(1e-24).sqrt()  # [B]
        l2 = (d.abs().pow(3).sum(1) / norm).mean()
        logp, logq = s1.log_softmax(1), s2.log_softmax(1)
        logm = torch.logaddexp(logp, logq) - math.log(2.0)
        kl_pm = (logp.exp() * (logp - logm)).sum(1).mean()
        kl_qm = (logq.exp() * (logq - logm)).sum(1).mean()
        return l2, 0.5 * (kl_pm + kl_qm)

    def loss(self, out: dict[str, torch.Tensor], y: torch.Tensor) -> dict[str, torch.Tensor]:
        """Named terms (summed over the sub-nets, unweighted) and the weighted total ``loss``."""
        cfg = self.cfg
        yp = self._phase_targets(y)
        ce1, cal1 = self.calibrated_terms(out["s1"], yp)
        ce2, cal2 = self.calibrated_terms(out["s2"], yp)
        l2, js = self.distill_terms(out["s1"], out["s2"])
        zero = out["s1"].new_zeros(())
        attr_reg = zero
        if cfg.lambda_ar > 0:
            attr_reg = (out["psi"] - self.att[y]).pow(2).sum(1).mean()
        terms = {
            "ce": ce1 + ce2, "self_cal": cal1 + cal2, "distill_l2": l2, "distill_js": js,
            "effect_class": zero, "effect_attr": zero, "attr_reg": attr_reg,
        }
        terms["loss"] = (terms["ce"] + cfg.lambda_cal * terms["self_cal"]
                         + cfg.w_distill * (l2 + js) + cfg.lambda_ar * attr_reg)
        return terms


class _FusedAttention(torch.autograd.Function):
    """MSDN's attention core with a hand-written backward (no per-block temporaries, no concat).

    Inputs: ``xt`` [B·R, F] normalised region features (constant), ``p`` [4A, F] stacked attribute
    vectors. Outputs: ψ, ω [B, A]; the products ``g`` [B, R, 4A] (S | α-logits | T | β-logits,
    differentiable so MSDN++ can reuse S and T); α (softmax over R) and β (softmax over A),
    both [B, R, A] and non-differentiable (only ever used as constants or for plots).
    """

    @staticmethod
    @torch.amp.custom_fwd(device_type="cuda", cast_inputs=torch.float32)
    def forward(ctx: Any, xt: torch.Tensor, p: torch.Tensor, batch: int, num_attr: int,
                intervene: Intervention | None = None,
                through_values: bool = True) -> tuple[torch.Tensor | None, ...]:
        g = (xt @ p.t()).view(batch, -1, 4 * num_attr)  # [B, R, 4A]
        s, a_logit, t, b_logit = g.split(num_attr, dim=2)
        alpha, beta = a_logit.softmax(dim=1), b_logit.softmax(dim=2)  # [B, R, A]
        psi, omega = (alpha * s).sum(dim=1), (beta * t).sum(dim=1)  # [B, A]
        a_bar = b_bar = psi_cf = omega_cf = None
        if intervene is not None:  # MSDN++: one more weighted sum per intervened sub-net
            a_bar, b_bar = intervene(alpha, a_logit, beta, b_logit)
            psi_cf = (a_bar * s).sum(dim=1) if a_bar is not None else None
            omega_cf = (b_bar * t).sum(dim=1) if b_bar is not None else None
        constant = [alpha, beta]  # used only as constants (interventions, plots)
        if not through_values:  # detached counterfactual: no gradient into S, T
            constant += [v for v in (psi_cf, omega_cf) if v is not None]
            a_bar = b_bar = None
        ctx.save_for_backward(xt, g, alpha, beta, psi, a_bar, b_bar)
        ctx.num_attr = num_attr
        ctx.mark_non_differentiable(*constant)  # one call: a second one would replace the first
        ctx.set_materialize_grads(False)
        return psi, omega, g, alpha, beta, psi_cf, omega_cf

    @staticmethod
    @torch.amp.custom_bwd(device_type="cuda")
    def backward(ctx: Any, g_psi: torch.Tensor | None, g_omega: torch.Tensor | None,
                 g_g: torch.Tensor | None, _g_alpha: Any, _g_beta: Any, g_psi_cf: torch.Tensor | None,
                 g_omega_cf: torch.Tensor | None) -> tuple[torch.Tensor | None, ...]:
        xt, g, alpha, beta, psi, a_bar, b_bar = ctx.saved_tensors
        num_attr = ctx.num_attr
        s, _, t, _ = g.split(num_attr, dim=2)
        dg = torch.empty_like(g)
        ds, da, dt, db = dg.split(num_attr, dim=2)  # gradient blocks, written in place
        if g_psi is not None:
            # ψ = Σ_r α S:  dS = gψ α;  d(α-logit) = gψ α (S − ψ)  (gψ is constant over r)
            torch.mul(alpha, g_psi.unsqueeze(1), out=ds)
            torch.mul(ds, s - psi.unsqueeze(1), out=da)
        else:
            ds.zero_()
            da.zero_()
        if g_omega is not None:
            # ω = Σ_r β T, β softmax over attributes:  dT = gω β;  d(β-logit) = u − β Σ_i u, u = dT·T
            torch.mul(beta, g_omega.unsqueeze(1), out=dt)
            u = dt * t
            torch.addcmul(u, beta, u.sum(dim=2, keepdim=True), value=-1.0, out=db)
        else:
            dt.zero_()
            db.zero_()
        # Counterfactual sums ψ̄ = Σ_r Ā S, ω̄ = Σ_r B̄ T with constant maps: dS += gψ̄ Ā, dT += gω̄ B̄.
        if g_psi_cf is not None and a_bar is not None:
            ds.addcmul_(a_bar, g_psi_cf.unsqueeze(1))
        if g_omega_cf is not None and b_bar is not None:
            dt.addcmul_(b_bar, g_omega_cf.unsqueeze(1))
        if g_g is not None:  # gradients that reached the products directly
            dg.add_(g_g)
        d_p = dg.view(xt.shape[0], -1).t() @ xt  # [4A, F]: one GEMM over all B·R regions
        return None, d_p, None, None, None, None

METHODS.register("msdn")(MSDN)
