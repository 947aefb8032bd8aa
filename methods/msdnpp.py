"""MSDN++: MSDN with causal (counterfactual) attention in both sub-nets.

Paper: "Mutually Causal Semantic Distillation Network for Zero-Shot Learning", arXiv 2603.17412
(Mar 2026); only its abstract and introduction could be read. Closest published designs: CAL (Rao et
al., ICCV 2021, github.com/raoyongming/CAL) and CVsC (ACM MM 2024, github.com/DingjieFu/CVsC).
No official MSDN++ code was available. Specification: ``../shared/spec/METHOD.md`` §2.

What follows which source:

- [paper] Two sub-nets, attribute→visual causal attention (AVCA) and visual→attribute causal
  attention (VACA), taught by each other through semantic distillation. Everything MSDN does is
  inherited unchanged [code] (:mod:`methods.msdn`), so ``intervention: none`` *is* MSDN.
- [design] Causal attention as a counterfactual intervention on a sub-net's attention map (CAL,
  CVsC): the AVCA prediction under do(α = Ā) is ``s̄1 = Z ψ̄`` with ``ψ̄ = Σ_r Ā S``; VACA's under
  do(β = B̄) is ``s̄2 = Z ω̄``. S and T are reused, so a counterfactual costs one weighted sum
  (computed inside MSDN's fused attention core, whose backward adds ``gψ̄·Ā`` to dS in place).
  Effects: ``e_j = s_j − s̄_j`` (class level, carries the margin once) and ``ε_j = ψ_j − ψ̄_j``
  (attribute level).
- [design] The ``effect_*`` terms are summed over the intervened sub-nets, unweighted; ``loss``
  adds ``λ_eff·effect_class + λ_sem·effect_attr``. Losses per intervened sub-net: ``λ_eff·CE(e_j − margin, y)`` (``effect_class``) and
  ``λ_sem·mean|BN(ε_j) − z_y|`` (``effect_attr``; BN is a parameter-free batch standardisation).
  Optional distillation between e1 and e2 (``distill_effects``, added to the distillation terms).
- [design] Intervened maps are constants (do() sets them; no gradient flows into Ā / B̄);
  ``detach_counterfactual`` also stops the gradient through S / T in the counterfactual branch.
- [design] ``random`` draws i.i.d. U(0, 2) maps as CAL does, then normalises them over the
  attention's axis so that, like α and β, they are distributions (CAL's maps are unnormalised
  activations; ours replace softmax attention). ``n_samples`` random draws are averaged (the
  maps are averaged: ψ̄ is linear in Ā). ``shuffle_*`` draw one permutation per forward.
- [design] Inference uses the factual fused logits (``eval_logits: factual``) or the fused effects
  (``effect``; a sub-net not intervened contributes its factual logits). Built-in margin and γ as
  in MSDN (see :mod:`methods.msdn`).
- [design] Starting values λ_eff = 1.0, λ_sem = 0.1 are ours, not the paper's; the per-dataset
  presets are MSDN's official ones [code] (no MSDN++ settings are published).

Random draws use torch's global generator, so the engine's seeding makes runs deterministic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from zsl_bench.config import check
from zsl_bench.registry import METHODS

from .msdn import MSDN, MSDNConfig

INTERVENTIONS = ("none", "random", "uniform", "reversed", "shuffle_batch", "shuffle_region",
                 "shuffle_attribute")
APPLY_TO = ("avca", "vaca", "both")
EFFECT_LOSSES = ("class", "attribute", "both")
EVAL_LOGITS = ("factual", "effect")


@dataclass(frozen=True)
class MSDNPPConfig(MSDNConfig):
    """MSDN's settings plus the causal-intervention ablation switches (METHOD.md §2)."""

    intervention: str = "random"
    apply_to: str = "both"
    effect_loss: str = "class"
    lambda_eff: float = 1.0
    lambda_sem: float = 0.1
    n_samples: int = 1
    detach_counterfactual: bool = False
    eval_logits: str = "factual"
    distill_effects: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        for key, valid in (("intervention", INTERVENTIONS), ("apply_to", APPLY_TO),
                           ("effect_loss", EFFECT_LOSSES), ("eval_logits", EVAL_LOGITS)):
            value = getattr(self, key)
            check(value in valid, f"method.{key}", value, "one of " + ", ".join(valid))
        for key in ("lambda_eff", "lambda_sem"):
            value = getattr(self, key)
            check(isinstance(value, (int, float)) and math.isfinite(value) and value >= 0, f"method.{key}", value,
                   "a finite number >= 0")
        check(isinstance(self.n_samples, int) and self.n_samples >= 1, "method.n_samples", self.n_samples,
               "an integer >= 1")
        check(not self.distill_effects or (self.apply_to == "both" and self.intervention != "none"),
               "method.distill_effects", self.distill_effects,
               "false unless apply_to is both and intervention is not none (both effects must exist)")
        check(self.eval_logits == "factual" or self.intervention != "none", "method.eval_logits",
               self.eval_logits, "factual when intervention is none (there is no effect)")


class MSDNPP(MSDN):
    """MSDN whose attention maps are trained to carry the class evidence causally."""

    name: ClassVar[str] = "msdnpp"
    paper: ClassVar[str] = "Mutually Causal Semantic Distillation Network for ZSL (MSDN++), arXiv 2603.17412"
    description: ClassVar[str] = "MSDN with counterfactual-attention (causal) effect losses in both sub-nets"
    config_cls: ClassVar[type] = MSDNPPConfig
    presets: ClassVar[dict[str, dict[str, dict[str, Any]]]] = MSDN.presets

    cfg: MSDNPPConfig

    def _intervened(self, which: str) -> bool:
        return self.cfg.intervention != "none" and self.cfg.apply_to in (which, "both")

    def _counterfactual_map(self, att: torch.Tensor, logit: torch.Tensor, dim: int) -> torch.Tensor:
        """One draw of do(attention): a constant [B, R, A] distribution over ``dim``."""
        kind = self.cfg.intervention
        att, logit = att.detach(), logit.detach()
        if kind == "random":
            m = torch.rand(att.shape, device=att.device, dtype=att.dtype) * 2.0  # U(0, 2), CAL
            return m / m.sum(dim=dim, keepdim=True).clamp_min(1e-12)
        if kind == "uniform":
            return torch.full_like(att, 1.0 / att.shape[dim])
        if kind == "reversed":
            return (-logit).softmax(dim=dim)
        if kind == "shuffle_batch":
            return att[torch.randperm(att.shape[0], device=att.device)]
        if kind == "shuffle_region":
            return att[:, torch.randperm(att.shape[1], device=att.device)]
        if kind == "shuffle_attribute":
            return att[:, :, torch.randperm(att.shape[2], device=att.device)]
        raise AssertionError(f"unhandled intervention {kind!r}")  # config validation rules this out

    def _averaged_map(self, att: torch.Tensor, logit: torch.Tensor, dim: int) -> torch.Tensor:
        """do(attention) averaged over ``n_samples`` draws (ψ̄ is linear in the map: average once)."""
        draws = 1 if self.cfg.intervention in ("uniform", "reversed") else self.cfg.n_samples
        maps = self._counterfactual_map(att, logit, dim)
        for _ in range(draws - 1):
            maps = maps + self._counterfactual_map(att, logit, dim)
        return maps.div_(draws) if draws > 1 else maps

    def _intervene(self, alpha: torch.Tensor, a_logit: torch.Tensor, beta: torch.Tensor,
                   b_logit: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Counterfactual maps Ā (over regions) and B̄ (over attributes) of the intervened sub-nets."""
        a_bar = self._averaged_map(alpha, a_logit, 1) if self._intervened("avca") else None
        b_bar = self._averaged_map(beta, b_logit, 2) if self._intervened("vaca") else None
        return a_bar, b_bar

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """MSDN's outputs plus, per intervened sub-net, ``e1``/``eps1`` and ``e2``/``eps2``."""
        if self.cfg.intervention == "none":
            return super().forward(x)
        net = self._subnets(x, self._intervene, through_values=not self.cfg.detach_counterfactual)
        out = {k: net[k] for k in ("s1", "s2", "psi", "omega")}
        z = self.att.t()  # [A, K]
        if "psi_cf" in net:
            out["e1"] = net["s1"] - net["psi_cf"] @ z
            out["eps1"] = net["psi"] - net["psi_cf"]
        if "omega_cf" in net:
            out["e2"] = net["s2"] - net["omega_cf"] @ z
            out["eps2"] = net["omega"] - net["omega_cf"]
        if self.cfg.eval_logits == "effect":
            out["logits"] = self._fuse(out.get("e1", out["s1"]), out.get("e2", out["s2"]))
        else:
            out["logits"] = self._fuse(out["s1"], out["s2"])
        return out

    @staticmethod
    def _standardise(e: torch.Tensor) -> torch.Tensor:
        """Batch normalisation without affine parameters or running statistics."""
        mean = e.mean(0, keepdim=True)
        var = e.var(0, unbiased=False, keepdim=True)
        return (e - mean) / torch.sqrt(var + 1e-5)

    def loss(self, out: dict[str, torch.Tensor], y: torch.Tensor) -> dict[str, torch.Tensor]:
        terms = super().loss(out, y)
        cfg = self.cfg
        if cfg.intervention == "none":
            return terms
        yp = self._phase_targets(y)
        effects = [(out[e], out[eps]) for e, eps in (("e1", "eps1"), ("e2", "eps2")) if e in out]
        zero = terms["loss"].new_zeros(())
        eff_class, eff_attr = zero, zero
        if cfg.effect_loss in ("class", "both"):
            for e, _ in effects:
                eff_class = eff_class + self.margin_cross_entropy(e, yp)
        if cfg.effect_loss in ("attribute", "both"):
            target = self.att[y]  # [B, A]
            for _, eps in effects:
                eff_attr = eff_attr + (self._standardise(eps) - target).abs().mean()
        extra = cfg.lambda_eff * eff_class + cfg.lambda_sem * eff_attr
        if cfg.distill_effects:
            l2, js = self.distill_terms(out["e1"], out["e2"])
            terms["distill_l2"] = terms["distill_l2"] + l2
            terms["distill_js"] = terms["distill_js"] + js
            extra = extra + cfg.w_distill * (l2 + js)
        terms["effect_class"], terms["effect_attr"] = eff_class, eff_attr
        terms["loss"] = terms["loss"] + extra
        return terms


METHODS.register("msdnpp")(MSDNPP)
