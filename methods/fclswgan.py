"""f-CLSWGAN: a conditional WGAN-GP feature generator with a classification loss.

Paper: Y. Xian, T. Lorenz, B. Schiele, Z. Akata, "Feature Generating Networks for Zero-Shot
Learning", CVPR 2018.
Official code: the authors' release on the MPI-INF project page (PyTorch, ``clswgan.py``).

fit(x, y) does the whole schedule, so the engine calls it once:
1. min-max scale features to [0, 1] (the official ``--preprocessing``), fitted on training data;
2. pretrain a softmax classifier on real seen-class features, then freeze it;
3. train G(z, a) and the critic D(x, a) (WGAN-GP, ``critic_iters`` critic steps per generator
   step); the generator loss adds ``cls_weight``·CE of the frozen classifier on fake features;
4. synthesise ``n_synth`` features per unseen class of the phase;
5. train the final softmax classifier over the phase's classes (seen ∪ unseen) on real seen +
   synthetic unseen features. Its logits are the method's scores; the harness evaluates them.

Where this implementation differs:
- One final classifier over seen ∪ unseen classes serves both ZSL (the harness takes the argmax
  over unseen classes) and GZSL; the official code trains a separate unseen-only classifier for
  ZSL and reports its best epoch on the test set.
- Classes outside the phase get a fixed very low (finite) score.
- Per-dataset schedule values follow the official command lines as copied into derivative
  repositories (e.g. LisGAN's scripts): the original MPI-INF release was not available to check. The pretrain classifier (50 epochs, batch 100, lr 1e-3) and the final
  classifier's batch size (``clf_batch_size: 0`` = ``n_synth``) follow the official calls.
- ``fit_grad_norms`` sums |grad| over the first few steps of each network only (enough to show
  every parameter learned; summing every step was most of the cost on CPU).
- The critic's real, fake and interpolated rows go through one forward pass (same values).

This file also holds the pieces tf-VAEGAN shares (scaler, gradient penalty, softmax training,
gradient bookkeeping).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from zsl_bench.config import check
from zsl_bench.contract import TaskInfo, ZSLMethod
from zsl_bench.registry import METHODS

log = logging.getLogger(__name__)

OUTSIDE_PHASE = -1.0e4  # score of classes the final classifier was not trained on (finite)


def mlp(n_in: int, hidden: int, n_out: int, out_bias: bool = True) -> nn.Sequential:
    """Two-layer MLP with LeakyReLU(0.2), the GAN building block of the official code."""
    return nn.Sequential(nn.Linear(n_in, hidden), nn.LeakyReLU(0.2),
                         nn.Linear(hidden, n_out, bias=out_bias))


def wgan_critic(n_in: int, hidden: int) -> nn.Sequential:
    """Critic D(x, a) -> scalar. No output bias: it cancels in every WGAN-GP term."""
    return mlp(n_in, hidden, 1, out_bias=False)


def critic_terms(critic: nn.Module, real: torch.Tensor, fake: torch.Tensor,
                 cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(W-distance estimate ``E[D(x, a)] − E[D(x̃, a)]``, WGAN-GP penalty) in one critic pass.

    The penalty is ``E[(‖∇D(x̂, a)‖₂ − 1)²]`` on random interpolates x̂ of real and fake rows. The
    critic is a per-row MLP, so one forward over the stacked real, fake and interpolated rows gives
    the values of three separate calls.
    """
    B = real.shape[0]
    eps = torch.rand(B, 1, device=real.device)
    mix = (eps * real + (1 - eps) * fake).requires_grad_(True)
    out = critic(torch.cat([torch.cat([real, fake, mix]), cond.repeat(3, 1)], 1)).squeeze(1)
    (grad,) = torch.autograd.grad(out[2 * B:].sum(), mix, create_graph=True)
    gp = ((grad.norm(2, dim=1) - 1) ** 2).mean()
    return out[:B].mean() - out[B:2 * B].mean(), gp


def class_block(allowed: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """[K] 0 for ``allowed`` classes, −inf elsewhere: ``CE(logits + block, y)`` is the
    cross-entropy over the allowed classes only."""
    return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill(~allowed, -torch.inf)


class GradLog:
    """Sums |grad| per named parameter over the first ``steps`` steps of each stage (prefix).

    Enough for the ``fit_grad_norms`` contract (did every trainable parameter get a gradient?)
    without a per-parameter reduction on every one of thousands of optimiser steps.
    """

    def __init__(self, steps: int = 3) -> None:
        self.steps = steps
        self._sums: dict[str, torch.Tensor] = {}
        self._seen: dict[str, int] = {}

    def add(self, module: nn.Module, prefix: str) -> None:
        done = self._seen.get(prefix, 0)
        if done >= self.steps:
            return
        self._seen[prefix] = done + 1
        for name, p in module.named_parameters():
            if p.grad is not None:
                key = f"{prefix}.{name}"
                g = p.grad.detach().abs().sum()
                self._sums[key] = self._sums[key] + g if key in self._sums else g

    def result(self) -> dict[str, float]:
        return {k: float(v) for k, v in self._sums.items()}


def adam(params: Any, lr: float) -> torch.optim.Adam:
    """Adam(β1=0.5, β2=0.999), the optimiser of every network in the official code; the
    multi-tensor (``foreach``) update costs far less Python per step on small networks."""
    return torch.optim.Adam(params, lr=lr, betas=(0.5, 0.999), foreach=True)


def train_softmax(clf: nn.Module, x: torch.Tensor, y: torch.Tensor, allowed: torch.Tensor, *,
                  epochs: int, lr: float, batch_size: int, grads: GradLog, prefix: str) -> None:
    """Train ``clf`` with Adam(β1=0.5) on (x, y), CE over ``allowed`` classes; shuffled
    mini-batches of ``batch_size``, ``epochs`` passes (the official CLASSIFIER loop)."""
    opt = adam(clf.parameters(), lr)
    n = x.shape[0]
    block = class_block(allowed, x.dtype)
    for _ in range(epochs):
        perm = torch.randperm(n, device=x.device)
        xp, yp = x[perm], y[perm]  # one gather per epoch; batches are contiguous slices
        for start in range(0, n, batch_size):
            opt.zero_grad(set_to_none=True)
            xb, yb = xp[start:start + batch_size], yp[start:start + batch_size]
            F.cross_entropy(clf(xb) + block, yb).backward()
            grads.add(clf, prefix)
            opt.step()


class GenerativeZSL(ZSLMethod):
    """Shared skeleton of feature-generating methods: scaling, phase masks, final scores."""

    fits_closed_form = True
    att: torch.Tensor
    seen: torch.Tensor
    unseen: torch.Tensor
    lo: torch.Tensor
    span: torch.Tensor

    def __init__(self, cfg: Any, task: TaskInfo) -> None:
        super().__init__(cfg, task)
        self.register_buffer("att", torch.as_tensor(task.att, dtype=torch.float32))  # [K, A]
        seen = task.seen_mask()
        unseen = torch.zeros_like(seen)
        unseen[torch.as_tensor(task.unseen, dtype=torch.long)] = True
        self.register_buffer("seen", seen)
        self.register_buffer("unseen", unseen)
        self.register_buffer("lo", torch.zeros(task.feature_dim))
        self.register_buffer("span", torch.ones(task.feature_dim))
        self.fit_grad_norms: dict[str, float] = {}

    def _fit_scaler(self, x: torch.Tensor) -> None:
        lo, hi = x.min(0).values, x.max(0).values
        self.lo.copy_(lo)
        self.span.copy_((hi - lo).clamp_min(1e-6))

    def _scale(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.lo) / self.span

    def _synthesise(self, n_per_class: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Generated features [U·n, F] and their labels for the phase's unseen classes."""
        classes = torch.nonzero(self.unseen).squeeze(1)
        labels = classes.repeat_interleave(n_per_class)
        feats = [self.lo.new_zeros(0, self.lo.shape[0])]  # a phase may have no unseen classes
        for start in range(0, labels.shape[0], 4096):  # bounded memory for large n_synth
            feats.append(self.generate(labels[start:start + 4096]))
        return torch.cat(feats), labels

    def generate(self, labels: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _final_scores(self, logits: torch.Tensor) -> torch.Tensor:
        phase = self.seen | self.unseen
        out = torch.log_softmax(logits.masked_fill(~phase, -torch.inf), 1)
        return out.masked_fill(~phase, OUTSIDE_PHASE)


@dataclass(frozen=True)
class FCLSWGANConfig:
    n_z: int = 0  # noise dim; 0 = the attribute dim (official nz = attSize)
    hidden_g: int = 4096
    hidden_d: int = 4096
    gan_epochs: int = 56
    batch_size: int = 64
    lr: float = 1e-4
    critic_iters: int = 5
    gp_weight: float = 10.0  # λ of WGAN-GP
    cls_weight: float = 0.01  # β, classification loss of the generator
    pretrain_epochs: int = 50  # official (lr 1e-3, batch 100)
    n_synth: int = 300  # synthetic features per unseen class
    pretrain_batch_size: int = 100  # official: CLASSIFIER(..., 0.001, 0.5, 50, 100)
    clf_epochs: int = 25
    clf_lr: float = 1e-3
    clf_batch_size: int = 0  # 0 = n_synth (official: the final CLASSIFIER's batch size is syn_num)

    def __post_init__(self) -> None:
        for key in ("hidden_g", "hidden_d", "batch_size", "critic_iters", "n_synth",
                    "pretrain_batch_size"):
            check(getattr(self, key) >= 1, f"method.{key}", getattr(self, key), "an integer >= 1")
        for key in ("gan_epochs", "pretrain_epochs", "clf_epochs", "n_z", "clf_batch_size"):
            check(getattr(self, key) >= 0, f"method.{key}", getattr(self, key), "an integer >= 0")
        for key in ("lr", "clf_lr"):
            check(getattr(self, key) > 0, f"method.{key}", getattr(self, key), "a float > 0")
        for key in ("gp_weight", "cls_weight"):
            check(getattr(self, key) >= 0, f"method.{key}", getattr(self, key), "a float >= 0")


@METHODS.register("fclswgan")
class FCLSWGAN(GenerativeZSL):
    """Conditional WGAN-GP feature generator + softmax on real seen and synthetic unseen features."""

    name = "fclswgan"
    family = "generative"
    input = "pooled"
    paper = "Xian et al., f-CLSWGAN, CVPR 2018"
    config_cls = FCLSWGANConfig
    # The official command lines as copied in derivative repos (see the module docstring); "train" is unused.
    presets: ClassVar[dict[str, dict[str, dict[str, Any]]]] = {
        "cub": {"method": {"gan_epochs": 56, "cls_weight": 0.01, "n_synth": 300, "lr": 1e-4}},
        "sun": {"method": {"gan_epochs": 40, "cls_weight": 0.01, "n_synth": 100, "lr": 2e-4}},
        "awa2": {"method": {"gan_epochs": 30, "cls_weight": 0.01, "n_synth": 300, "lr": 1e-5}},
        "flo": {"method": {"gan_epochs": 80, "cls_weight": 0.1, "n_synth": 300, "lr": 1e-4}},
    }
    tiny: ClassVar[dict[str, Any]] = {"hidden_g": 32, "hidden_d": 32, "gan_epochs": 3,
                                      "batch_size": 16, "lr": 1e-3, "critic_iters": 2,
                                      "pretrain_epochs": 3, "n_synth": 20, "clf_epochs": 5,
                                      "clf_batch_size": 32, "cls_weight": 0.1}

    def __init__(self, cfg: FCLSWGANConfig, task: TaskInfo) -> None:
        super().__init__(cfg, task)
        A, F_, K = task.num_attributes, task.feature_dim, task.num_classes
        self.n_z = cfg.n_z or A
        self.generator = nn.Sequential(mlp(self.n_z + A, cfg.hidden_g, F_), nn.ReLU())
        self.critic = wgan_critic(F_ + A, cfg.hidden_d)
        self.pre_classifier = nn.Linear(F_, K)
        self.classifier = nn.Linear(F_, K)

    def generate(self, labels: torch.Tensor) -> torch.Tensor:
        return self._generate(self.att[labels])

    def _generate(self, a: torch.Tensor) -> torch.Tensor:
        """G(z, a) for class semantics ``a`` [B, A], z ~ N(0, I)."""
        return self.generator(torch.cat([torch.randn(a.shape[0], self.n_z, device=a.device), a], 1))

    def fit(self, x: torch.Tensor, y: torch.Tensor) -> None:
        cfg, grads = self.cfg, GradLog()
        self._fit_scaler(x)
        xs = self._scale(x)
        self.pre_classifier.requires_grad_(True)
        train_softmax(self.pre_classifier, xs, y, self.seen, epochs=cfg.pretrain_epochs,
                      lr=cfg.clf_lr, batch_size=cfg.pretrain_batch_size, grads=grads,
                      prefix="pre_classifier")
        self.pre_classifier.requires_grad_(False)
        self._train_gan(xs, y, grads)
        self.pre_classifier.requires_grad_(True)  # frozen only while it guides the generator
        with torch.no_grad():
            fake, fake_y = self._synthesise(cfg.n_synth)
        train_softmax(self.classifier, torch.cat([xs[self.seen[y]], fake]),
                      torch.cat([y[self.seen[y]], fake_y]), self.seen | self.unseen,
                      epochs=cfg.clf_epochs, lr=cfg.clf_lr,
                      batch_size=cfg.clf_batch_size or cfg.n_synth, grads=grads, prefix="classifier")
        self.fit_grad_norms = grads.result()

    def _train_gan(self, xs: torch.Tensor, y: torch.Tensor, grads: GradLog) -> None:
        cfg, n, B = self.cfg, xs.shape[0], self.cfg.batch_size
        opt_d, opt_g = adam(self.critic.parameters(), cfg.lr), adam(self.generator.parameters(), cfg.lr)
        att_y = self.att[y]  # [N, A] semantics of each training row
        block = class_block(self.seen, xs.dtype)
        iters = max(1, n // B)
        for epoch in tqdm(range(cfg.gan_epochs), desc="f-CLSWGAN", leave=False, disable=None):
            for _ in range(iters):
                self.critic.requires_grad_(True)
                for _ in range(cfg.critic_iters):
                    idx = torch.randint(0, n, (B,), device=xs.device)
                    real, a = xs[idx], att_y[idx]
                    with torch.no_grad():
                        fake = self._generate(a)
                    opt_d.zero_grad(set_to_none=True)
                    wdist, gp = critic_terms(self.critic, real, fake, a)
                    (-wdist + cfg.gp_weight * gp).backward()
                    grads.add(self.critic, "critic")
                    opt_d.step()
                # Generator step on the last critic batch; the critic is fixed for it.
                self.critic.requires_grad_(False)
                opt_g.zero_grad(set_to_none=True)
                fake = self._generate(a)
                adv = -self.critic(torch.cat([fake, a], 1)).mean()
                cls = F.cross_entropy(self.pre_classifier(fake) + block, y[idx])
                (adv + cfg.cls_weight * cls).backward()
                grads.add(self.generator, "generator")
                opt_g.step()
            log.debug("f-CLSWGAN epoch %d: W-dist %.4f, cls %.4f", epoch, wdist.item(), cls.item())
        self.critic.requires_grad_(True)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"logits": self._final_scores(self.classifier(self._scale(x)))}
