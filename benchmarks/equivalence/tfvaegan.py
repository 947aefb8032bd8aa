"""Equivalence check: tf-VAEGAN (methods/tfvaegan.py) against the official akshitac8/tfvaegan.

Imports ``networks/TFVAEGAN_model.py`` (the networks) and, from ``train_images.py``, the functions
``loss_fn``, ``WeightedL1`` and ``calc_gradient_penalty`` (taken out of the script with ``ast`` at run
time). Weights are copied across (encoder, generator, feedback module, semantic decoder, critic)
and compared in float64:
- forward outputs (encoder, generator with and without feedback, decoder output and hidden layer,
  critic);
- each loss term (VAE BCE + KL, gradient penalty, critic loss with γD, WeightedL1 cycle term);
- critic gradients and a 5-step critic trajectory with the official optimiser and the same batches;
- **one whole GAN epoch**: the official epoch body (``for loop in range(feedback_loop)``: decoder,
  critic, adaptive λ, encoder, generator, feedback and decoder steps) run unchanged from the same
  torch seed as ours (``_VAEGANLoop.epoch``), which draws the same random numbers in the same order
  (``randperm(N)[:B]`` batches, encoder ε, GP ε): every weight after the epoch, λ, and the optimiser
  step counts, with ``--encoded_noise`` (CUB/SUN/AWA2 scripts) and without (FLO), and with
  ``--freeze_dec`` (AWA2);
- the final classifier input width ([x, â, h]) and the encoder's Adam β1.

    python benchmarks/equivalence/tfvaegan.py --official /path/to/tfvaegan
"""

from __future__ import annotations

import argparse
import ast
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from _e2_common import Report, load_file, max_diff, official_dir, parser, random_task  # noqa: E402


def _variable(t: torch.Tensor, requires_grad: bool = False, **_: object) -> torch.Tensor:
    """The old ``torch.autograd.Variable`` the official code calls."""
    return t.detach().requires_grad_(True) if requires_grad else t


def official_functions(path: str, opt: argparse.Namespace) -> dict:
    """``loss_fn``, ``WeightedL1``, ``calc_gradient_penalty`` of train_images.py, bound to ``opt``."""
    tree = ast.parse(open(path).read())
    keep = [n for n in tree.body if isinstance(n, ast.FunctionDef)
            and n.name in ("loss_fn", "WeightedL1", "calc_gradient_penalty")]
    ns: dict = {"torch": torch, "autograd": torch.autograd, "Variable": _variable, "opt": opt}
    exec(compile(ast.Module(body=keep, type_ignores=[]), path, "exec"), ns)
    return ns


class _SeenData:
    """Stands in for ``util.DATA_LOADER``: only what the training loop reads (ntrain, next_seen_batch)."""

    def __init__(self, x: torch.Tensor, att: torch.Tensor) -> None:
        self.ntrain, self.x, self.att = x.shape[0], x, att

    def next_seen_batch(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.randperm(self.ntrain)[0:batch]  # as image_util.py:92-97
        return self.x[idx], self.att[idx]


def count_steps(optimizers: dict, run) -> dict:
    """Run ``run()`` and count ``step()`` calls of each named optimizer."""
    counts = {name: 0 for name in optimizers}
    originals = {}
    for name, o in optimizers.items():
        originals[name] = o.step

        def stepped(*a, _name=name, _orig=o.step, **k):
            counts[_name] += 1
            return _orig(*a, **k)

        o.step = stepped
    try:
        run()
    finally:
        for name, o in optimizers.items():
            o.step = originals[name]
    return counts


def run_official_epoch(path: str, ns: dict) -> None:
    """Execute one epoch of the official loop (train_images.py, the body of ``for epoch``:
    ``for loop in range(feedback_loop)`` with the critic, decoder, encoder, generator and
    feedback steps), unchanged, in ``ns``. Its unconditional ``.cuda()`` calls (e.g. :166, :215)
    are made no-ops for the duration (CPU run)."""
    tree = ast.parse(open(path).read())
    sample = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "sample"]
    epoch_loop = next(n for n in tree.body if isinstance(n, ast.For) and getattr(n.target, "id", "") == "epoch")
    body = [epoch_loop.body[0]]  # the ``for loop in range(0, opt.feedback_loop)`` statement
    code = compile(ast.Module(body=sample + body, type_ignores=[]), path, "exec")
    cuda = torch.Tensor.cuda
    torch.Tensor.cuda = lambda self, *a, **k: self
    try:
        exec(code, ns)
    finally:
        torch.Tensor.cuda = cuda


class _NoGrads:
    def add(self, *_: object) -> None:
        pass


def copy_linear(dst: torch.nn.Linear, src: torch.nn.Linear) -> None:
    with torch.no_grad():
        dst.weight.copy_(src.weight)
        if dst.bias is not None:
            dst.bias.copy_(src.bias)


def copy_official(ours, netE, netG, netD, netF, netDec) -> None:
    """Official weights into ours (the critic's output bias is dropped: set it to 0 there)."""
    copy_linear(ours.encoder.fc1, netE.fc1)
    copy_linear(ours.encoder.fc3, netE.fc3)
    copy_linear(ours.encoder.mu, netE.linear_means)
    copy_linear(ours.encoder.logvar, netE.linear_log_var)
    copy_linear(ours.generator.fc1, netG.fc1)
    copy_linear(ours.generator.fc2, netG.fc3)
    copy_linear(ours.feedback_net[0], netF.fc1)
    copy_linear(ours.feedback_net[2], netF.fc2)
    copy_linear(ours.decoder.fc1, netDec.fc1)
    copy_linear(ours.decoder.fc2, netDec.fc3)
    with torch.no_grad():
        netD.fc2.bias.zero_()
    copy_linear(ours.critic[0], netD.fc1)
    copy_linear(ours.critic[2], netD.fc2)


PAIRS = [("encoder.fc1.weight", "E", "fc1.weight"), ("encoder.fc3.weight", "E", "fc3.weight"),
         ("encoder.mu.weight", "E", "linear_means.weight"), ("encoder.logvar.bias", "E", "linear_log_var.bias"),
         ("generator.fc1.weight", "G", "fc1.weight"), ("generator.fc2.bias", "G", "fc3.bias"),
         ("feedback_net.0.weight", "F", "fc1.weight"), ("feedback_net.2.weight", "F", "fc2.weight"),
         ("decoder.fc1.weight", "Dec", "fc1.weight"), ("decoder.fc2.weight", "Dec", "fc3.weight"),
         ("critic.0.weight", "D", "fc1.weight"), ("critic.2.weight", "D", "fc2.weight")]


def epoch_trajectory(rep: Report, root: str, off, fns: dict, opt: argparse.Namespace, task, seed: int, *,
                     encoded_noise: bool, freeze_dec: bool, n: int) -> None:
    """One official epoch (run unchanged) vs one of ours from the same weights and torch seed."""
    from methods.tfvaegan import TFVAEGAN, TFVAEGANConfig, _VAEGANLoop

    Fd, A, H, B = opt.resSize, opt.attSize, opt.ngh, opt.batch_size
    torch.manual_seed(seed)
    netE, netG, netD = off.Encoder(opt), off.Generator(opt), off.Discriminator_D1(opt)
    netF, netDec = off.Feedback(opt), off.AttDec(opt, A)
    opt.encoder_layer_sizes[0] = Fd  # Encoder() adds latent_size to it in place
    g = torch.Generator().manual_seed(seed + 5)
    xs = torch.rand(n, Fd, generator=g)  # min-max scaled features lie in [0, 1]
    seen = torch.as_tensor(task.seen)
    ys = seen[torch.randint(0, len(seen), (n,), generator=g)]
    att = torch.as_tensor(task.att, dtype=torch.float64)
    cfg = TFVAEGANConfig(hidden=H, batch_size=B, gamma_d=opt.gammaD, gamma_g=opt.gammaG, gp_weight=10.0,
                         a1=opt.a1, recons_weight=opt.recons_weight, lr=1e-4, feedback_lr=1e-5, decoder_lr=1e-4,
                         encoded_noise=encoded_noise, freeze_dec=freeze_dec)
    ours = TFVAEGAN(cfg, task).double()
    copy_official(ours, netE, netG, netD, netF, netDec)
    o = argparse.Namespace(**{**vars(opt), "feedback_loop": 2, "critic_iter": 5, "encoded_noise": encoded_noise,
                              "freeze_dec": freeze_dec, "lambda1": 10.0, "beta1": 0.5})
    optims = {"encoder": torch.optim.Adam(netE.parameters(), lr=1e-4),  # train_images.py:109-113
              "generator": torch.optim.Adam(netG.parameters(), lr=1e-4, betas=(0.5, 0.999)),
              "critic": torch.optim.Adam(netD.parameters(), lr=1e-4, betas=(0.5, 0.999)),
              "feedback": torch.optim.Adam(netF.parameters(), lr=1e-5, betas=(0.5, 0.999)),
              "decoder": torch.optim.Adam(netDec.parameters(), lr=1e-4, betas=(0.5, 0.999))}
    ns = {**fns, "opt": o, "data": _SeenData(xs, att[ys]), "netE": netE, "netG": netG, "netD": netD,
          "netF": netF, "netDec": netDec, "optimizer": optims["encoder"], "optimizerG": optims["generator"],
          "optimizerD": optims["critic"], "optimizerF": optims["feedback"], "optimizerDec": optims["decoder"],
          "input_res": torch.zeros(B, Fd), "input_att": torch.zeros(B, A), "noise": torch.zeros(B, A),
          # 0-dim: the old torch the official code ran on accepted shape [1] grads for scalars
          "one": torch.tensor(1.0), "mone": torch.tensor(-1.0), "Variable": _variable, "torch": torch, "epoch": 0}
    for fn in ("loss_fn", "WeightedL1", "calc_gradient_penalty"):
        fns[fn].__globals__["opt"] = o
    torch.manual_seed(seed + 3)
    off_counts = count_steps(optims, lambda: run_official_epoch(os.path.join(root, "train_images.py"), ns))
    loop = _VAEGANLoop(ours, xs, ys, _NoGrads())
    ours_optims = {"encoder": loop.opt_e, "generator": loop.opt_g, "critic": loop.opt_d, "feedback": loop.opt_f,
                   "decoder": loop.opt_dec}
    torch.manual_seed(seed + 3)
    ours_counts = count_steps(ours_optims, lambda: loop.epoch(1))
    tag = f"{'encoded' if encoded_noise else 'prior'} noise{', freeze_dec' if freeze_dec else ''}"
    nets = {"E": netE, "G": netG, "D": netD, "F": netF, "Dec": netDec}
    ours_p = dict(ours.named_parameters())
    worst = max(max_diff(ours_p[k], dict(nets[net].named_parameters())[name])[0] for k, net, name in PAIRS)
    rep.check(f"one GAN epoch ({tag}; n={n}, B={B}, 2 passes): every weight, max over E/G/F/Dec/D layers",
              torch.tensor(worst), torch.tensor(0.0), 1e-9)
    rep.check(f"one GAN epoch ({tag}): adaptive λ after the epoch (official opt.lambda1, :193-197)",
              torch.tensor(ours.gp_lambda), torch.tensor(o.lambda1), 1e-9)
    rep.check_true(f"one GAN epoch ({tag}): optimiser steps per network equal "
                   f"(official {off_counts}, ours {ours_counts})", off_counts == ours_counts)


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__.splitlines()[0], "akshitac8/tfvaegan, containing networks/TFVAEGAN_model.py")
    p.add_argument("--feat-dim", type=int, default=256, help="resSize (real: 2048)")
    p.add_argument("--att-dim", type=int, default=32, help="attSize = latent_size (real: 85 / 102 / 312 / 1024)")
    p.add_argument("--hidden", type=int, default=128, help="ngh = ndh (real: 4096)")
    p.add_argument("--batch", type=int, default=16, help="batch_size (real: 64)")
    args = p.parse_args(argv)
    root = official_dir(args.official, "networks/TFVAEGAN_model.py")
    sys.path.insert(0, root)
    off = load_file(os.path.join(root, "networks", "TFVAEGAN_model.py"), "official_tfvaegan_model")
    Fd, A, H, B = args.feat_dim, args.att_dim, args.hidden, args.batch
    opt = argparse.Namespace(resSize=Fd, attSize=A, ngh=H, ndh=H, latent_size=A, nz=A, batch_size=B,
                             encoder_layer_sizes=[Fd, H], decoder_layer_sizes=[H, Fd], lambda1=10.0,
                             gammaD=10.0, gammaG=10.0, a1=1.0, cuda=False, recons_weight=0.01)
    fns = official_functions(os.path.join(root, "train_images.py"), opt)
    from methods.fclswgan import adam, critic_terms
    from methods.tfvaegan import TFVAEGAN, TFVAEGANConfig, _VAEGANLoop, weighted_l1

    torch.set_default_dtype(torch.float64)
    torch.manual_seed(args.seed)
    task = random_task(args.seed, n_classes=20, n_seen=15, n_att=A, n_feat=Fd)
    netE, netG, netD = off.Encoder(opt), off.Generator(opt), off.Discriminator_D1(opt)
    opt.encoder_layer_sizes[0] = Fd
    netF, netDec = off.Feedback(opt), off.AttDec(opt, A)
    cfg = TFVAEGANConfig(hidden=H, batch_size=B, gamma_d=opt.gammaD, gamma_g=opt.gammaG,
                         gp_weight=opt.lambda1, a1=opt.a1, recons_weight=opt.recons_weight)
    ours = TFVAEGAN(cfg, task).double()
    copy_official(ours, netE, netG, netD, netF, netDec)
    rep = Report(f"tf-VAEGAN vs akshitac8/tfvaegan, F={Fd} A={A} H={H} B={B}, float64")

    g = torch.Generator().manual_seed(args.seed + 1)
    real = torch.rand(B, Fd, generator=g)  # min-max scaled features lie in [0, 1]
    att = torch.as_tensor(task.att, dtype=torch.float64)[torch.randint(0, 20, (B,), generator=g)]
    z = torch.randn(B, A, generator=g)
    # 1. forward
    mu_o, lv_o = ours.encoder(real, att)
    mu_f, lv_f = netE(real, att)
    rep.check("encoder μ (fc1 → fc3 → heads, TFVAEGAN_model.py:16-37)", mu_o, mu_f, 1e-12)
    rep.check("encoder log σ²", lv_o, lv_f, 1e-12)
    rep.check("generator, no feedback: ours G(z, a) vs netG(z, c=a)", ours.generator(z, att), netG(z, c=att), 1e-12)
    fake0 = netG(z, c=att)
    netDec(fake0)
    fb = netF(netDec.getLayersOutDet())
    fake_off = netG(z, a1=opt.a1, c=att, feedback_layers=fb)  # train_images.py:173-177
    rep.check("generator with feedback (a1): ours _generate vs official two-pass sequence",
              ours._generate(z, att, opt.a1), fake_off, 1e-12)
    dec_out, dec_h = ours.decoder(real)
    off_out = netDec(real)
    rep.check("semantic decoder hidden layer (feature transformation input)", dec_h, netDec.hidden, 1e-12)
    rep.check("semantic decoder output, L2-normalised (TFVAEGAN_model.py:122)", dec_out, off_out, 1e-12)
    rep.check("critic D(x, a) (official output bias set to 0)", ours.critic(torch.cat([real, att], 1)), netD(real, att), 1e-12)
    # 2. loss terms
    recon = ours._generate(z, att, opt.a1)
    mu, logvar = torch.randn(B, A, generator=g), 0.1 * torch.randn(B, A, generator=g)
    bce = F.binary_cross_entropy(recon + 1e-12, real, reduction="sum") / B  # methods/tfvaegan.py
    kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp()) / B
    rep.check("VAE loss: ours BCE + KL vs official loss_fn (train_images.py:63-67)", bce + kl,
              fns["loss_fn"](recon, real, mu, logvar), 1e-8)
    fake = fake_off.detach()
    torch.manual_seed(args.seed + 2)
    wdist, gp = critic_terms(ours.critic, real, fake, att)
    torch.manual_seed(args.seed + 2)
    gp_off = fns["calc_gradient_penalty"](netD, real, fake, att)  # includes · lambda1
    rep.check("gradient penalty: ours gp · λ vs official calc_gradient_penalty (same ε)", gp * opt.lambda1, gp_off, 1e-12)
    d_real, d_fake = netD(real, att).mean(), netD(fake, att).mean()
    rep.check("Wasserstein estimate: ours vs official criticD_real − criticD_fake", wdist, d_real - d_fake, 1e-12)
    loss_off = opt.gammaD * (d_fake - d_real) + opt.gammaD * gp_off  # train_images.py:160-188
    loss_ours = -cfg.gamma_d * wdist + cfg.gamma_d * ours.gp_lambda * gp  # methods/tfvaegan.py critic step
    rep.check("critic loss: ours γD·(−W) + γD·λ·gp vs official (:160-188)", loss_ours, loss_off, 1e-12)
    ours.critic.zero_grad()
    torch.manual_seed(args.seed + 2)
    w2, gp2 = critic_terms(ours.critic, real, fake, att)
    (-cfg.gamma_d * w2 + cfg.gamma_d * ours.gp_lambda * gp2).backward()
    netD.zero_grad()
    torch.manual_seed(args.seed + 2)
    (opt.gammaD * (netD(fake, att).mean() - netD(real, att).mean())
     + opt.gammaD * fns["calc_gradient_penalty"](netD, real, fake, att)).backward()
    rep.check("critic gradients vs official, layer 1", ours.critic[0].weight.grad, netD.fc1.weight.grad, 1e-10)
    rep.check("critic gradients vs official, layer 2", ours.critic[2].weight.grad, netD.fc2.weight.grad, 1e-10)
    # 3. 5-step critic trajectory, Adam(lr, β1 = 0.5) as train_images.py:110 and methods/fclswgan.adam
    opt_o = adam(ours.critic.parameters(), 1e-4)
    opt_f = torch.optim.Adam(netD.parameters(), lr=1e-4, betas=(0.5, 0.999))
    for step in range(5):
        xb = torch.rand(B, Fd, generator=g)
        fb_ = torch.rand(B, Fd, generator=g)
        opt_o.zero_grad()
        torch.manual_seed(100 + step)
        w_, gp_ = critic_terms(ours.critic, xb, fb_, att)
        (-cfg.gamma_d * w_ + cfg.gamma_d * ours.gp_lambda * gp_).backward()
        opt_o.step()
        opt_f.zero_grad()
        torch.manual_seed(100 + step)
        (opt.gammaD * (netD(fb_, att).mean() - netD(xb, att).mean())
         + opt.gammaD * fns["calc_gradient_penalty"](netD, xb, fb_, att)).backward()
        netD.fc2.bias.grad = None  # the bias gets no gradient (it cancels), keep it at 0
        opt_f.step()
    rep.check("critic weights after 5 Adam steps (same batches, ε)", ours.critic[0].weight, netD.fc1.weight, 1e-10)
    # 4. cycle term
    rep.check("cycle term: ours weighted_l1(Dec(x̃), a) vs official WeightedL1(netDec(x̃), a) (:74-78, :250)",
              weighted_l1(ours.decoder(fake)[0], att), fns["WeightedL1"](netDec(fake), att), 1e-12)
    # 5. one whole epoch of the official loop, run unchanged, vs ours
    n = 4 * B + 3
    for enc, frz in ((True, False), (False, False), (True, True)):
        epoch_trajectory(rep, root, off, fns, opt, task, args.seed + 10, encoded_noise=enc, freeze_dec=frz, n=n)
    rep.check_true("encoder Adam β1: official default 0.9 (train_images.py:109) = ours",
                   _VAEGANLoop(ours, real, torch.as_tensor(task.seen)[:B], _NoGrads()).opt_e.defaults["betas"][0]
                   == torch.optim.Adam(netE.parameters(), lr=1e-4).defaults["betas"][0])
    rep.check_true("final classifier input width: official [x, â, h] (classifier_images.py:33-34, :218) = ours",
                   ours.classifier.in_features == Fd + A + H)
    torch.set_default_dtype(torch.float32)  # restore for callers that import main()
    return rep.finish()


if __name__ == "__main__":
    sys.exit(main())
