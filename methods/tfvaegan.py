"""tf-VAEGAN: a VAE-GAN feature generator with semantic feedback and feature transformation.

Paper: S. Narayan, A. Gupta, F. S. Khan, C. G. M. Snoek, L. Shao, "Latent Embedding Feedback and
Discriminative Features for Zero-Shot Classification", ECCV 2020.
Official code: github.com/akshitac8/tfvaegan (``zero-shot-images/``, ``scripts/run_*_tfvaegan.py``),
read at a0de81c; line numbers below are of ``train_images.py`` unless a file is named.

Why tf-VAEGAN rather than f-VAEGAN-D2: it is f-VAEGAN (conditional VAE + WGAN-GP sharing the
generator) plus two additions, and its numbers for all four datasets are in
``../reference/published_results.csv``; with ``feedback: false`` and ``transform_features:
false`` this implementation *is* f-VAEGAN (without the transductive D2), so both are covered.

fit(x, y) runs the whole schedule (the engine calls it once):
1. min-max scale features to [0, 1] (fitted on training data);
2. each GAN epoch makes ``feedback_loop`` passes over the data (2, :138), the first without
   feedback; a pass has ⌈N/B⌉ iterations (:139) of
   - ``critic_iters`` steps (:148-191), each on a batch ``randperm(N)[:B]``: the semantic decoder
     Dec(x) → â (L2-normalised, TFVAEGAN_model.py:122) takes ``recons_weight``·WeightedL1(â, a)
     (:74-78, :155-158); the critic takes γD·(D(x̃) − D(x)) + γD·λ·GP (:160-188), with x̃ from the
     encoder's sample z = μ + σ·ε under ``encoded_noise`` (:162-167), else from prior noise;
   - the adaptive λ (:193-197): the mean raw penalty of those steps above 1.05 multiplies λ by
     1.1, below 1.001 divides it by 1.1 (``adaptive_gp``);
   - one step of encoder, generator (and, in the feedback pass, the feedback module) on
     BCE + KL + γG·adversarial + ``recons_weight``·WeightedL1(Dec(x̃), a) (:207-252), x̃ the
     encoder's reconstruction under ``encoded_noise`` (:229-231); the decoder also steps on the
     cycle term unless ``freeze_dec`` (:258-259). The encoder's Adam keeps PyTorch's default
     β1 = 0.9 (:109); every other network uses β1 = 0.5;
3. feedback (second pass, and synthesis with ``a2``): G runs twice; the second run adds
   ``a1``·F(Dec's hidden layer of the first run's output) to G's hidden layer;
4. after every GAN epoch, as the official (:262-287), ``n_synth`` features per unseen class train
   a fresh GZSL softmax (real seen + synthetic unseen) and a fresh unseen-only ZSL softmax, on
   ``[x, â, h]`` (classifier_images.py:206-220: features, normalised decoder output, decoder
   hidden layer). The harness evaluates them after every classifier epoch and selects the GAN and
   classifier epochs (on validation under ``val``, on test under ``test-oracle``, as the official
   reports); see :mod:`methods.fclswgan` for the schedule (shared).
The final classifiers' log-probabilities are the scores; the harness evaluates them.

Where this implementation differs:
- The critic has no output bias (it cancels in every WGAN-GP term); networks keep PyTorch's
  default initialisation (official: N(0, 0.02) weights, zero biases), final classifiers excepted.
- The classifiers' mini-batches are shuffled slices of each epoch (official ``next_batch`` carries
  a partial batch over into the next epoch).
- When the ZSL classifier is trained at another GAN epoch than the GZSL one (phase 2 of ``val``),
  a frozen copy of the decoder at that epoch gives its ``[x, â, h]`` input.
- Per-dataset values are those of the official scripts (``scripts/run_*_tfvaegan.py``).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from zsl_bench.config import check
from zsl_bench.contract import TaskInfo
from zsl_bench.registry import METHODS

from .fclswgan import GenerativeZSL, GradLog, adam, critic_terms, wgan_critic

log = logging.getLogger(__name__)


class Encoder(nn.Module):
    """E(x, a) → (μ, log σ²): fc1 → fc3 → two heads, LeakyReLU(0.2) (TFVAEGAN_model.py:16-37)."""

    def __init__(self, n_in: int, hidden: int, n_z: int) -> None:
        super().__init__()
        self.fc1, self.fc3 = nn.Linear(n_in, hidden), nn.Linear(hidden, 2 * n_z)
        self.mu, self.logvar = nn.Linear(2 * n_z, n_z), nn.Linear(2 * n_z, n_z)

    def forward(self, x: torch.Tensor, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = F.leaky_relu(self.fc3(F.leaky_relu(self.fc1(torch.cat([x, a], 1)), 0.2)), 0.2)
        return self.mu(h), self.logvar(h)


class FeedbackGenerator(nn.Module):
    """G(z, a) = σ(W2 (LReLU(W1 [z, a]) + feedback)); feedback is optional."""

    def __init__(self, n_in: int, hidden: int, n_out: int) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(n_in, hidden), nn.Linear(hidden, n_out)

    def forward(self, z: torch.Tensor, a: torch.Tensor,
                feedback: torch.Tensor | None = None) -> torch.Tensor:
        h = F.leaky_relu(self.fc1(torch.cat([z, a], 1)), 0.2)
        if feedback is not None:
            h = h + feedback
        return torch.sigmoid(self.fc2(h))


class SemanticDecoder(nn.Module):
    """Dec(x) → (â, hidden): maps features back to the class semantics; â is L2-normalised per row
    (TFVAEGAN_model.py:117-124)."""

    def __init__(self, n_feat: int, hidden: int, n_att: int) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(n_feat, hidden), nn.Linear(hidden, n_att)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = F.leaky_relu(self.fc1(x), 0.2)
        out = self.fc2(h)
        return out / out.pow(2).sum(1, keepdim=True).sqrt(), h


def weighted_l1(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The official ``WeightedL1`` (:74-78): |pred − a| weighted by (pred − a)² / ‖pred − a‖₂ per
    row, summed over attributes, averaged over rows."""
    diff = pred - target
    wt = diff.pow(2)
    wt = wt / wt.sum(1, keepdim=True).sqrt()
    return (wt * diff.abs()).sum() / diff.shape[0]


@dataclass(frozen=True)
class TFVAEGANConfig:
    n_z: int = 0  # latent dim; 0 = the attribute dim (official latent_size = attSize)
    hidden: int = 4096  # ngh = ndh = decoder hidden
    gan_epochs: int = 300  # GAN epochs (evaluated phases: the last candidate; else the GZSL classifier's)
    zsl_gan_epochs: int = 0  # GAN epoch of the ZSL classifier without a monitor; 0 = gan_epochs
    feedback_loop: int = 2  # passes per GAN epoch, the first without feedback (official 2)
    batch_size: int = 64
    lr: float = 1e-4
    feedback_lr: float = 1e-5
    decoder_lr: float = 1e-4
    critic_iters: int = 5
    gp_weight: float = 10.0  # initial λ of the gradient penalty (official lambda1)
    adaptive_gp: bool = True  # official: λ ×1.1 / ÷1.1 by the mean raw penalty (:193-197)
    gamma_d: float = 10.0  # weight of the critic's Wasserstein terms and its penalty
    gamma_g: float = 10.0  # weight of the generator's adversarial term
    recons_weight: float = 0.01  # cycle-consistency (semantic decoder) weight
    encoded_noise: bool = True  # critic and adversarial term on the encoder's sample (--encoded_noise)
    freeze_dec: bool = False  # the decoder does not step on the generator's cycle loss (--freeze_dec)
    feedback: bool = True
    a1: float = 1.0  # feedback strength while training
    a2: float = 1.0  # feedback strength while synthesising
    transform_features: bool = True  # classify [x, â, Dec_hidden(x)]
    n_synth: int = 300
    select_every: int = 1  # evaluated phases: classifiers after every k-th GAN epoch and the last (official 1)
    clf_epochs: int = 25  # GZSL classifier epochs (official 25 with the best on test)
    zsl_clf_epochs: int = 0  # ZSL classifier epochs; 0 = clf_epochs
    clf_lr: float = 1e-3
    clf_batch_size: int = 0  # 0 = n_synth (official: the final CLASSIFIER's batch size is syn_num)

    def __post_init__(self) -> None:
        for key in ("hidden", "batch_size", "critic_iters", "n_synth", "feedback_loop", "select_every"):
            check(getattr(self, key) >= 1, f"method.{key}", getattr(self, key), "an integer >= 1")
        for key in ("gan_epochs", "zsl_gan_epochs", "clf_epochs", "zsl_clf_epochs", "n_z", "clf_batch_size"):
            check(getattr(self, key) >= 0, f"method.{key}", getattr(self, key), "an integer >= 0")
        for key in ("lr", "feedback_lr", "decoder_lr", "clf_lr"):
            check(getattr(self, key) > 0, f"method.{key}", getattr(self, key), "a float > 0")
        for key in ("gp_weight", "gamma_d", "gamma_g", "recons_weight", "a1", "a2"):
            check(getattr(self, key) >= 0, f"method.{key}", getattr(self, key), "a float >= 0")


@METHODS.register("tfvaegan")
class TFVAEGAN(GenerativeZSL):
    """VAE-GAN feature generator with a semantic decoder, feedback and feature transformation."""

    name = "tfvaegan"
    family = "generative"
    input = "pooled"
    paper = "Narayan et al., tf-VAEGAN, ECCV 2020"
    config_cls = TFVAEGANConfig
    # From zero-shot-images/image-scripts/run_{cub,sun,awa,flo}_tfvaegan.py of the official code
    # (nepoch, syn_num, recons_weight, a1, a2, gammaD/G, lr, classifier_lr, feed_lr, dec_lr,
    # --encoded_noise (not FLO), --freeze_dec (AWA2)): run_cub :22-26, run_sun :62-66,
    # run_awa :8-14, run_flo :34-39 (line numbers of `cat scripts/run_*_tfvaegan.py` each).
    presets: ClassVar[dict[str, dict[str, dict[str, Any]]]] = {
        "cub": {"method": {"gan_epochs": 300, "n_synth": 300, "recons_weight": 0.01, "a1": 1.0,
                           "a2": 1.0, "gamma_d": 10.0, "gamma_g": 10.0, "clf_lr": 1e-3}},
        "sun": {"method": {"gan_epochs": 400, "n_synth": 400, "recons_weight": 0.01, "a1": 0.1,
                           "a2": 0.01, "gamma_d": 1.0, "gamma_g": 1.0, "lr": 1e-3, "feedback_lr": 1e-4,
                           "clf_lr": 5e-4}},
        "awa2": {"method": {"gan_epochs": 120, "n_synth": 1800, "recons_weight": 0.1, "a1": 0.01,
                            "a2": 0.01, "gamma_d": 10.0, "gamma_g": 10.0, "lr": 1e-5, "feedback_lr": 1e-4,
                            "clf_lr": 1e-3, "freeze_dec": True}},
        "flo": {"method": {"gan_epochs": 500, "n_synth": 1200, "recons_weight": 0.01, "a1": 0.5,
                           "a2": 0.5, "gamma_d": 10.0, "gamma_g": 10.0, "clf_lr": 1e-3,
                           "encoded_noise": False}},
    }
    tiny: ClassVar[dict[str, Any]] = {"hidden": 32, "gan_epochs": 3, "batch_size": 16, "lr": 1e-3,
                                      "feedback_lr": 1e-3, "decoder_lr": 1e-3, "critic_iters": 2,
                                      "gamma_d": 1.0, "gamma_g": 1.0, "recons_weight": 0.1,
                                      "n_synth": 20, "clf_epochs": 5, "clf_batch_size": 32}

    def __init__(self, cfg: TFVAEGANConfig, task: TaskInfo) -> None:
        super().__init__(cfg, task)
        A, F_, K, H = task.num_attributes, task.feature_dim, task.num_classes, cfg.hidden
        self.n_z = cfg.n_z or A
        self.encoder = Encoder(F_ + A, H, self.n_z)
        self.generator = FeedbackGenerator(self.n_z + A, H, F_)
        self.critic = wgan_critic(F_ + A, H)
        self.decoder = SemanticDecoder(F_, H, A)
        self.feedback_net = (nn.Sequential(nn.Linear(H, H), nn.LeakyReLU(0.2), nn.Linear(H, H),
                                           nn.LeakyReLU(0.2)) if cfg.feedback else None)
        width = F_ + (A + H if cfg.transform_features else 0)
        self.classifier = nn.Linear(width, K)
        self.zsl_classifier = nn.Linear(width, K)
        # The decoder as it was when the ZSL classifier was trained (its input transform).
        self.zsl_decoder = SemanticDecoder(F_, H, A) if cfg.transform_features else None
        if self.zsl_decoder is not None:
            self.zsl_decoder.requires_grad_(False)
        self.gp_lambda = float(cfg.gp_weight)  # the adaptive λ as the last fit left it

    def _generate(self, z: torch.Tensor, a: torch.Tensor, strength: float,
                  feedback_from: torch.Tensor | None = None) -> torch.Tensor:
        """G(z, a), with feedback when there is a feedback module: the decoder's hidden layer of
        ``feedback_from`` (default: G's own first output) enters F detached (getLayersOutDet)."""
        x = self.generator(z, a)
        if self.feedback_net is not None:
            _, h = self.decoder(x if feedback_from is None else feedback_from)
            x = self.generator(z, a, strength * self.feedback_net(h.detach()))
        return x

    def generate(self, labels: torch.Tensor, gen: torch.Generator | None = None) -> torch.Tensor:
        a = self.att[labels]
        z = torch.randn(labels.shape[0], self.n_z, device=a.device, generator=gen)
        return self._generate(z, a, self.cfg.a2)

    def clf_input(self, x: torch.Tensor, zsl: bool = False) -> torch.Tensor:
        if not self.cfg.transform_features:
            return x
        dec = self.zsl_decoder if zsl and self.zsl_decoder is not None else self.decoder
        out, h = dec(x)
        return torch.cat([x, out, h], 1)

    def _snapshot_for_zsl(self) -> None:
        if self.zsl_decoder is not None:
            self.zsl_decoder.load_state_dict(self.decoder.state_dict())

    def fit(self, x: torch.Tensor, y: torch.Tensor) -> None:
        cfg, grads = self.cfg, GradLog()
        self._fit_scaler(x)
        xs = self._scale(x)
        loop = _VAEGANLoop(self, xs, y, grads)
        seen_rows = self.seen[y]
        self._classifier_schedule(loop.epoch, xs[seen_rows], y[seen_rows], grads, n_synth_zsl=cfg.n_synth,
                                  zsl_clf_lr=cfg.clf_lr)
        self.critic.requires_grad_(True)
        self.decoder.requires_grad_(True)
        self.fit_grad_norms = grads.result()


class _VAEGANLoop:
    """tf-VAEGAN's training, one GAN epoch per call (train_images.py:137-259)."""

    def __init__(self, m: TFVAEGAN, xs: torch.Tensor, y: torch.Tensor, grads: GradLog) -> None:
        cfg = m.cfg
        self.m, self.xs, self.grads = m, xs, grads
        self.att_y = m.att[y]  # [N, A] semantics of each training row
        # train_images.py:109-113: the encoder's Adam has the default betas (0.9, 0.999).
        self.opt_e = torch.optim.Adam(m.encoder.parameters(), lr=cfg.lr, foreach=True)
        self.opt_g = adam(m.generator.parameters(), cfg.lr)
        self.opt_d = adam(m.critic.parameters(), cfg.lr)
        self.opt_dec = adam(m.decoder.parameters(), cfg.decoder_lr)
        self.opt_f = adam(m.feedback_net.parameters(), cfg.feedback_lr) if m.feedback_net is not None else None
        m.gp_lambda = float(cfg.gp_weight)

    def _z(self, real: torch.Tensor, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, logvar = self.m.encoder(real, a)
        return mu + torch.randn_like(mu) * torch.exp(0.5 * logvar), mu, logvar

    def epoch(self, epoch: int) -> None:
        m, cfg, xs = self.m, self.m.cfg, self.xs
        n, B = xs.shape[0], cfg.batch_size
        for loop in range(cfg.feedback_loop):
            fb = loop == 1 and m.feedback_net is not None  # :172, :217: feedback in the second pass
            for _ in range(math.ceil(n / B)):
                self.iteration(fb)
        log.debug("tf-VAEGAN epoch %d: λ %.4g", epoch, m.gp_lambda)

    def iteration(self, fb: bool) -> None:
        """One iteration: ``critic_iters`` decoder + critic steps, λ update, one E/G(/F/Dec) step."""
        m, cfg, xs, grads = self.m, self.m.cfg, self.xs, self.grads
        n, B = xs.shape[0], cfg.batch_size
        m.critic.requires_grad_(True)
        m.decoder.requires_grad_(True)
        gp_sum = 0.0
        for _ in range(cfg.critic_iters):
            idx = torch.randperm(n, device=xs.device)[:B]  # image_util.py next_seen_batch
            real, a = xs[idx], self.att_y[idx]
            self.opt_dec.zero_grad(set_to_none=True)
            (cfg.recons_weight * weighted_l1(m.decoder(real)[0], a)).backward()
            grads.add(m.decoder, "decoder")
            self.opt_dec.step()
            with torch.no_grad():
                z = self._z(real, a)[0] if cfg.encoded_noise else torch.randn(real.shape[0], m.n_z, device=xs.device)
                fake = m._generate(z, a, cfg.a1) if fb else m.generator(z, a)
            self.opt_d.zero_grad(set_to_none=True)
            wdist, gp = critic_terms(m.critic, real, fake, a)
            (-cfg.gamma_d * wdist + cfg.gamma_d * m.gp_lambda * gp).backward()
            grads.add(m.critic, "critic")
            self.opt_d.step()
            gp_sum += float(gp.detach())
        if cfg.adaptive_gp:  # :193-197, on the mean raw penalty (gp_sum / (γD·λ·critic_iter) there)
            mean_gp = gp_sum / cfg.critic_iters
            if mean_gp > 1.05:
                m.gp_lambda *= 1.1
            elif mean_gp < 1.001:
                m.gp_lambda /= 1.1
        # Encoder, generator (+ feedback, + decoder) on the last critic batch; the critic is fixed.
        m.critic.requires_grad_(False)
        if cfg.recons_weight > 0 and cfg.freeze_dec:
            m.decoder.requires_grad_(False)
        for o in (self.opt_e, self.opt_g, self.opt_dec, self.opt_f):
            if o is not None:
                o.zero_grad(set_to_none=True)
        z, mu, logvar = self._z(real, a)
        recon = m._generate(z, a, cfg.a1) if fb else m.generator(z, a)
        bce = F.binary_cross_entropy(recon + 1e-12, real, reduction="sum") / B
        kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp()) / B
        if cfg.encoded_noise:
            fake = recon  # :229-231
        else:  # :233-242 (the feedback of the prior-noise sample is taken from recon, as there)
            noise = torch.randn(real.shape[0], m.n_z, device=xs.device)
            fake = m._generate(noise, a, cfg.a1, feedback_from=recon) if fb else m.generator(noise, a)
        adv = -cfg.gamma_g * m.critic(torch.cat([fake, a], 1)).mean()
        cycle = cfg.recons_weight * weighted_l1(m.decoder(fake)[0], a)
        (bce + kl + adv + cycle).backward()
        grads.add(m.encoder, "encoder")
        grads.add(m.generator, "generator")
        self.opt_e.step()
        self.opt_g.step()
        if fb and self.opt_f is not None and m.feedback_net is not None:
            grads.add(m.feedback_net, "feedback_net")
            self.opt_f.step()
        if cfg.recons_weight > 0 and not cfg.freeze_dec:
            self.opt_dec.step()
