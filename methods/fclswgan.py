"""f-CLSWGAN: a conditional WGAN-GP feature generator with a classification loss.

Paper: Y. Xian, T. Lorenz, B. Schiele, Z. Akata, "Feature Generating Networks for Zero-Shot
Learning", CVPR 2018.
Official code: the authors' release on the MPI-INF project page (PyTorch, ``clswgan.py``); its files
survive unchanged in EthanZhu90/ZSL_ABP @ e66ac2c (see docs/FIDELITY.md).

fit(x, y) does the whole schedule, so the engine calls it once:
1. min-max scale features to [0, 1] (the official ``--preprocessing``), fitted on training data;
2. pretrain a softmax classifier on real seen-class features, then freeze it;
3. train G(z, a) and the critic D(x, a) (WGAN-GP, ``critic_iters`` critic steps per generator
   step, ⌈N/B⌉ generator steps per epoch, batches ``randperm(N)[:B]`` as the release's
   ``util.next_batch``); the generator loss adds ``cls_weight``·CE of the frozen classifier;
4. after every GAN epoch, as the release (clswgan.py:250-265): synthesise ``n_synth`` features
   per unseen class and train a fresh GZSL softmax over the phase's classes on real seen +
   synthetic unseen features, and a fresh unseen-only ZSL softmax on ``n_synth_zsl`` synthetic
   features per unseen class (the release's ZSL run, clswgan.py:261-265), ``clf_epochs`` each.
   The harness evaluates each classifier after each of its epochs (``fit_monitor``) and selects
   the GAN epoch and the classifier epoch: the best GZSL H and the best ZSL accuracy, on
   validation under ``val`` (phase 2 retrains on trainval to the selected counts:
   ``gan_epochs``/``clf_epochs`` for GZSL, ``zsl_gan_epochs``/``zsl_clf_epochs`` for ZSL), on test
   under ``test-oracle`` (what the release prints: classifier2.py:57-110 keeps the best epoch on
   test). Without a monitor (phase 2, direct ``fit``) the classifiers are trained only at their
   selected GAN epochs. Synthesis and classifier training draw from their own generator, so the
   GAN's trajectory does not depend on how often classifiers were trained.
GZSL scores (``scores``) are the GZSL classifier's log-probabilities, ZSL scores (``zsl_scores``)
the ZSL classifier's; the harness evaluates them.

Where this implementation differs:
- Classes outside the phase get a fixed very low (finite) score.
- ``select_every: k`` (default 1, the official) trains and evaluates the classifiers only after
  every k-th GAN epoch and the last, to save CPU (benchmarks/main_table_cpu.yaml uses 5).
- Per-dataset schedule values follow the official GZSL command lines as copied into derivative
  repositories (lijin118/LisGAN README.md:39-49; its ZSL lines :24-34 give ``n_synth_zsl`` and
  SUN's ZSL classifier lr): the original MPI-INF page was not available to check. Those lines are
  for AWA1; AWA2 uses them unchanged. The pretrain classifier (50 epochs, batch 100, lr 1e-3) and
  the final classifiers' batch size (``clf_batch_size: 0`` = the synthetic count) follow the
  release's calls.
- One GAN serves both classifiers; the release trains GZSL and ZSL in two separate runs (with the
  GZSL and the ZSL command line: the same GAN settings except the synthetic count and SUN's
  classifier lr, both modelled here).
- The classifiers' mini-batches are shuffled slices of each epoch (the release's ``next_batch``
  carries a partial batch over into the next epoch); networks keep PyTorch's default
  initialisation (the release: N(0, 0.02) weights, zero biases), final classifiers excepted.
- ``fit_grad_norms`` sums |grad| over the first few steps of each network only (enough to show
  every parameter learned; summing every step was most of the cost on CPU).
- The critic's real, fake and interpolated rows go through one forward pass (same values).

This file also holds the pieces tf-VAEGAN shares (scaler, gradient penalty, softmax training,
the classifier schedule, gradient bookkeeping).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

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


def official_linear_init(layer: nn.Linear, gen: torch.Generator | None = None) -> None:
    """N(0, 0.02) weights and zero bias: the official ``weights_init`` (util.py:8-12 of both releases)."""
    with torch.no_grad():
        layer.weight.normal_(0.0, 0.02, generator=gen)
        if layer.bias is not None:
            layer.bias.zero_()


def train_softmax(clf: nn.Module, x: torch.Tensor, y: torch.Tensor, allowed: torch.Tensor, *,
                  epochs: int, lr: float, batch_size: int, grads: GradLog, prefix: str,
                  gen: torch.Generator | None = None,
                  after_epoch: Callable[[int], None] | None = None) -> None:
    """Train ``clf`` with Adam(β1=0.5) on (x, y), CE over ``allowed`` classes; shuffled
    mini-batches of ``batch_size`` (order drawn from ``gen``), ``epochs`` passes (the official
    CLASSIFIER loop); ``after_epoch(e)`` is called after pass e (1-based)."""
    opt = adam(clf.parameters(), lr)
    n = x.shape[0]
    block = class_block(allowed, x.dtype)
    for epoch in range(1, epochs + 1):
        perm = torch.randperm(n, device=x.device, generator=gen)
        xp, yp = x[perm], y[perm]  # one gather per epoch; batches are contiguous slices
        for start in range(0, n, batch_size):
            opt.zero_grad(set_to_none=True)
            xb, yb = xp[start:start + batch_size], yp[start:start + batch_size]
            F.cross_entropy(clf(xb) + block, yb).backward()
            grads.add(clf, prefix)
            opt.step()
        if after_epoch is not None:
            after_epoch(epoch)


class GenerativeZSL(ZSLMethod):
    """Shared skeleton of feature-generating methods: scaling, phase masks, the classifier schedule
    (a GZSL and an unseen-only ZSL softmax after GAN epochs, evaluated by the harness through
    ``fit_monitor``), final scores.

    Subclasses define ``classifier`` and ``zsl_classifier`` (linear, over :meth:`clf_input`
    features), ``generate(labels, gen)`` and the config fields ``gan_epochs``, ``zsl_gan_epochs``,
    ``clf_epochs``, ``zsl_clf_epochs``, ``n_synth``, ``clf_lr``, ``clf_batch_size``.
    """

    fits_closed_form = True
    selects_in_fit = True
    separate_zsl_scores = True
    att: torch.Tensor
    seen: torch.Tensor
    unseen: torch.Tensor
    lo: torch.Tensor
    span: torch.Tensor
    classifier: nn.Linear
    zsl_classifier: nn.Linear

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

    def _synthesise(self, n_per_class: int, gen: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Generated features [U·n, F] and their labels for the phase's unseen classes."""
        classes = torch.nonzero(self.unseen).squeeze(1)
        labels = classes.repeat_interleave(n_per_class)
        feats = [self.lo.new_zeros(0, self.lo.shape[0])]  # a phase may have no unseen classes
        for start in range(0, labels.shape[0], 4096):  # bounded memory for large n_synth
            feats.append(self.generate(labels[start:start + 4096], gen))
        return torch.cat(feats), labels

    def generate(self, labels: torch.Tensor, gen: torch.Generator | None = None) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def clf_input(self, x: torch.Tensor, zsl: bool = False) -> torch.Tensor:
        """Scaled features -> the final classifiers' input (identity here; tf-VAEGAN transforms)."""
        return x

    def _snapshot_for_zsl(self) -> None:
        """Called when the ZSL classifier is trained: keep what ``clf_input(zsl=True)`` needs."""

    def _final_scores(self, logits: torch.Tensor, allowed: torch.Tensor | None = None) -> torch.Tensor:
        phase = (self.seen | self.unseen) if allowed is None else allowed
        out = torch.log_softmax(logits.masked_fill(~phase, -torch.inf), 1)
        return out.masked_fill(~phase, OUTSIDE_PHASE)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"logits": self._final_scores(self.classifier(self.clf_input(self._scale(x))))}

    @torch.no_grad()
    def zsl_scores(self, x: torch.Tensor) -> torch.Tensor:
        return self._final_scores(self.zsl_classifier(self.clf_input(self._scale(x), zsl=True)), self.unseen)

    # ------------------------------------------------------------ the schedule
    def _classifier_schedule(self, gan_epoch: Callable[[int], None], xs_seen: torch.Tensor,
                             y_seen: torch.Tensor, grads: GradLog, *, n_synth_zsl: int, zsl_clf_lr: float) -> None:
        """GAN epochs with the final classifiers after them (see the module docstring, step 4).

        With ``fit_monitor`` (an evaluated phase): ``gan_epochs`` GAN epochs, after each (every
        ``select_every``-th and the last; the official: each) a fresh GZSL and a fresh ZSL
        classifier, reported after every classifier epoch. Without: GAN epochs
        up to the later of ``gan_epochs`` and ``zsl_gan_epochs``, the GZSL classifier trained for
        ``clf_epochs`` after GAN epoch ``gan_epochs``, the ZSL one for ``zsl_clf_epochs`` after
        ``zsl_gan_epochs`` (0: the GZSL value).
        """
        cfg, mon = self.cfg, self.fit_monitor
        dev = xs_seen.device
        # Synthesis and classifiers draw from their own stream, seeded from the run's.
        aux = torch.Generator(device=dev)
        aux.manual_seed(int(torch.randint(0, 2**62, (1,))))
        g_gzsl, g_zsl = cfg.gan_epochs, cfg.zsl_gan_epochs or cfg.gan_epochs
        c_zsl = cfg.zsl_clf_epochs or cfg.clf_epochs
        last = cfg.gan_epochs if mon is not None else max(g_gzsl, g_zsl)
        for epoch in range(last + 1):
            if epoch > 0:
                gan_epoch(epoch)
            evaluated = mon is not None and (last == 0 or (epoch > 0 and (epoch % cfg.select_every == 0
                                                                          or epoch == last)))
            if evaluated or (mon is None and epoch == g_gzsl):
                report = None if mon is None else (
                    lambda c, e=epoch: mon.gzsl({"gan_epochs": e, "clf_epochs": c}))
                self._train_gzsl(xs_seen, y_seen, grads, aux, report)
            if evaluated or (mon is None and epoch == g_zsl):
                report = None if mon is None else (
                    lambda c, e=epoch: mon.zsl({"zsl_gan_epochs": e, "zsl_clf_epochs": c}))
                self._train_zsl(grads, aux, report, n_synth_zsl, zsl_clf_lr, c_zsl)

    def _train_gzsl(self, xs_seen: torch.Tensor, y_seen: torch.Tensor, grads: GradLog, aux: torch.Generator,
                    report: Callable[[int], None] | None) -> None:
        cfg = self.cfg
        with torch.no_grad():
            fake, fake_y = self._synthesise(cfg.n_synth, aux)
            feats = torch.cat([self.clf_input(xs_seen), self.clf_input(fake)])
        official_linear_init(self.classifier, aux)  # a fresh classifier (classifier_*.py: weights_init)
        self.classifier.requires_grad_(True)
        train_softmax(self.classifier, feats, torch.cat([y_seen, fake_y]), self.seen | self.unseen,
                      epochs=cfg.clf_epochs, lr=cfg.clf_lr, batch_size=cfg.clf_batch_size or cfg.n_synth,
                      grads=grads, prefix="classifier", gen=aux, after_epoch=report)

    def _train_zsl(self, grads: GradLog, aux: torch.Generator, report: Callable[[int], None] | None,
                   n_synth: int, lr: float, epochs: int) -> None:
        cfg = self.cfg
        self._snapshot_for_zsl()
        with torch.no_grad():
            fake, fake_y = self._synthesise(n_synth, aux)
            feats = self.clf_input(fake, zsl=True)
        official_linear_init(self.zsl_classifier, aux)
        self.zsl_classifier.requires_grad_(True)
        train_softmax(self.zsl_classifier, feats, fake_y, self.unseen, epochs=epochs, lr=lr,
                      batch_size=cfg.clf_batch_size or n_synth, grads=grads, prefix="zsl_classifier",
                      gen=aux, after_epoch=report)


@dataclass(frozen=True)
class FCLSWGANConfig:
    n_z: int = 0  # noise dim; 0 = the attribute dim (official nz = attSize)
    hidden_g: int = 4096
    hidden_d: int = 4096
    gan_epochs: int = 56  # GAN epochs (evaluated phases: the last candidate; else the GZSL classifier's)
    zsl_gan_epochs: int = 0  # GAN epoch of the ZSL classifier without a monitor; 0 = gan_epochs
    batch_size: int = 64
    lr: float = 1e-4
    critic_iters: int = 5
    gp_weight: float = 10.0  # λ of WGAN-GP
    cls_weight: float = 0.01  # β, classification loss of the generator
    pretrain_epochs: int = 50  # official (lr 1e-3, batch 100)
    n_synth: int = 300  # synthetic features per unseen class for the GZSL classifier (GZSL run)
    n_synth_zsl: int = 0  # ... for the ZSL classifier (the ZSL run's syn_num); 0 = n_synth
    pretrain_batch_size: int = 100  # official: CLASSIFIER(..., 0.001, 0.5, 50, 100)
    select_every: int = 1  # evaluated phases: classifiers after every k-th GAN epoch and the last (official 1)
    clf_epochs: int = 25  # GZSL classifier epochs (official 25 with the best on test)
    zsl_clf_epochs: int = 0  # ZSL classifier epochs; 0 = clf_epochs
    clf_lr: float = 1e-3
    zsl_clf_lr: float = 0.0  # ZSL classifier lr (the ZSL run's classifier_lr); 0 = clf_lr
    clf_batch_size: int = 0  # 0 = the synthetic count (official: the final CLASSIFIER's batch size is syn_num)

    def __post_init__(self) -> None:
        for key in ("hidden_g", "hidden_d", "batch_size", "critic_iters", "n_synth",
                    "pretrain_batch_size", "select_every"):
            check(getattr(self, key) >= 1, f"method.{key}", getattr(self, key), "an integer >= 1")
        for key in ("gan_epochs", "zsl_gan_epochs", "pretrain_epochs", "clf_epochs", "zsl_clf_epochs", "n_z",
                    "clf_batch_size", "n_synth_zsl"):
            check(getattr(self, key) >= 0, f"method.{key}", getattr(self, key), "an integer >= 0")
        for key in ("lr", "clf_lr"):
            check(getattr(self, key) > 0, f"method.{key}", getattr(self, key), "a float > 0")
        for key in ("gp_weight", "cls_weight", "zsl_clf_lr"):
            check(getattr(self, key) >= 0, f"method.{key}", getattr(self, key), "a float >= 0")


@METHODS.register("fclswgan")
class FCLSWGAN(GenerativeZSL):
    """Conditional WGAN-GP feature generator + softmax on real seen and synthetic unseen features."""

    name = "fclswgan"
    family = "generative"
    input = "pooled"
    paper = "Xian et al., f-CLSWGAN, CVPR 2018"
    config_cls = FCLSWGANConfig
    # The official command lines as copied in lijin118/LisGAN README.md (see the module docstring):
    # GZSL lines :40 (CUB), :43 (FLO), :46 (SUN), :49 (AWA1) for nepoch, lr, cls_weight, syn_num;
    # ZSL lines :25, :28, :31, :34 for n_synth_zsl (syn_num) and SUN's zsl_clf_lr (classifier_lr).
    # "train" is unused.
    presets: ClassVar[dict[str, dict[str, dict[str, Any]]]] = {
        "cub": {"method": {"gan_epochs": 56, "cls_weight": 0.01, "n_synth": 300, "lr": 1e-4}},
        "sun": {"method": {"gan_epochs": 40, "cls_weight": 0.01, "n_synth": 400, "n_synth_zsl": 100,
                           "zsl_clf_lr": 5e-4, "lr": 2e-4}},
        "awa2": {"method": {"gan_epochs": 30, "cls_weight": 0.01, "n_synth": 1800, "n_synth_zsl": 300,
                            "lr": 1e-5}},
        "flo": {"method": {"gan_epochs": 80, "cls_weight": 0.1, "n_synth": 1200, "n_synth_zsl": 300,
                           "lr": 1e-4}},
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
        self.zsl_classifier = nn.Linear(F_, K)

    def generate(self, labels: torch.Tensor, gen: torch.Generator | None = None) -> torch.Tensor:
        return self._generate(self.att[labels], gen)

    def _generate(self, a: torch.Tensor, gen: torch.Generator | None = None) -> torch.Tensor:
        """G(z, a) for class semantics ``a`` [B, A], z ~ N(0, I)."""
        z = torch.randn(a.shape[0], self.n_z, device=a.device, generator=gen)
        return self.generator(torch.cat([z, a], 1))

    def fit(self, x: torch.Tensor, y: torch.Tensor) -> None:
        cfg, grads = self.cfg, GradLog()
        self._fit_scaler(x)
        xs = self._scale(x)
        self.pre_classifier.requires_grad_(True)
        train_softmax(self.pre_classifier, xs, y, self.seen, epochs=cfg.pretrain_epochs,
                      lr=cfg.clf_lr, batch_size=cfg.pretrain_batch_size, grads=grads,
                      prefix="pre_classifier")
        self.pre_classifier.requires_grad_(False)
        gan = _GANLoop(self, xs, y, grads)
        seen_rows = self.seen[y]
        self._classifier_schedule(gan.epoch, xs[seen_rows], y[seen_rows], grads,
                                  n_synth_zsl=cfg.n_synth_zsl or cfg.n_synth, zsl_clf_lr=cfg.zsl_clf_lr or cfg.clf_lr)
        self.critic.requires_grad_(True)
        self.pre_classifier.requires_grad_(True)  # frozen only while it guides the generator
        self.fit_grad_norms = grads.result()


class _GANLoop:
    """f-CLSWGAN's GAN training, one epoch per call (clswgan.py:183-243)."""

    def __init__(self, m: FCLSWGAN, xs: torch.Tensor, y: torch.Tensor, grads: GradLog) -> None:
        cfg = m.cfg
        self.m, self.xs, self.y, self.grads = m, xs, y, grads
        self.opt_d, self.opt_g = adam(m.critic.parameters(), cfg.lr), adam(m.generator.parameters(), cfg.lr)
        self.att_y = m.att[y]  # [N, A] semantics of each training row
        self.block = class_block(m.seen, xs.dtype)

    def epoch(self, epoch: int) -> None:
        m, cfg, xs, n, B = self.m, self.m.cfg, self.xs, self.xs.shape[0], self.m.cfg.batch_size
        m.generator.train()
        for _ in range(math.ceil(n / B)):  # clswgan.py:187: for i in range(0, ntrain, batch_size)
            m.critic.requires_grad_(True)
            for _ in range(cfg.critic_iters):
                idx = torch.randperm(n, device=xs.device)[:B]  # util.py:193-194
                real, a = xs[idx], self.att_y[idx]
                with torch.no_grad():
                    fake = m._generate(a)
                self.opt_d.zero_grad(set_to_none=True)
                wdist, gp = critic_terms(m.critic, real, fake, a)
                (-wdist + cfg.gp_weight * gp).backward()
                self.grads.add(m.critic, "critic")
                self.opt_d.step()
            # Generator step on the last critic batch; the critic is fixed for it.
            m.critic.requires_grad_(False)
            self.opt_g.zero_grad(set_to_none=True)
            fake = m._generate(a)
            adv = -m.critic(torch.cat([fake, a], 1)).mean()
            cls = F.cross_entropy(m.pre_classifier(fake) + self.block, self.y[idx])
            (adv + cfg.cls_weight * cls).backward()
            self.grads.add(m.generator, "generator")
            self.opt_g.step()
        log.debug("f-CLSWGAN epoch %d: W-dist %.4f, cls %.4f", epoch, wdist.item(), cls.item())
