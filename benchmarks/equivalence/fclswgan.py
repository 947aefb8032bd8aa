"""Equivalence check: f-CLSWGAN (methods/fclswgan.py) against the f-CLSWGAN PyTorch release.

The authors' release (MPI-INF project page, ``clswgan.py``, ``model.py``, ``classifier.py``,
``classifier2.py``, ``util.py``) is not on GitHub. Its files survive unchanged in derivative
repositories; ``--official DIR`` takes a directory holding them, e.g. a checkout of
github.com/EthanZhu90/ZSL_ABP at commit e66ac2c (2018-07-28, "Add files via upload": the five
release files next to ABP's own; ``git archive e66ac2c``). github.com/lijin118/LisGAN carries the
same ``model.py`` classes. Labelled as such in docs/FIDELITY.md.

Imports ``model.MLP_G``, ``model.MLP_CRITIC``, ``classifier.LINEAR_LOGSOFTMAX`` and, from
``clswgan.py`` (taken out with ``ast``, the script is not run), ``calc_gradient_penalty`` and
``generate_syn_feature``. With weights copied, in float64: generator and critic outputs, the
gradient penalty and critic loss (same ε), the generator loss (adversarial + β·NLL of the frozen
pretrained classifier), critic and generator gradients, and a 3-iteration GAN trajectory (5 critic
steps + 1 generator step each, Adam(lr, β1 = 0.5), the same batches and noise fed to both), and
**one whole GAN epoch**: the release's inner loop (clswgan.py:187-243, with its ``sample()``) run
unchanged from the same torch seed as ours (``_GANLoop.epoch``), which draws the same random numbers
in the same order (``randperm(n)[:B]`` batches as util.py:193-194, noise, GP ε): every weight after
the epoch and the optimiser step counts.

    python benchmarks/equivalence/fclswgan.py --official /path/to/f-clswgan-release-files
"""

from __future__ import annotations

import argparse
import ast
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from _e2_common import Report, load_file, official_dir, parser, random_task  # noqa: E402


def _variable(t: torch.Tensor, requires_grad: bool = False, volatile: bool = False) -> torch.Tensor:
    """The old ``torch.autograd.Variable`` the official code calls."""
    return t.detach().requires_grad_(True) if requires_grad else t


def official_functions(path: str, opt: argparse.Namespace) -> dict:
    tree = ast.parse(open(path).read())
    keep = [n for n in tree.body if isinstance(n, ast.FunctionDef)
            and n.name in ("calc_gradient_penalty", "generate_syn_feature")]
    ns: dict = {"torch": torch, "autograd": torch.autograd, "Variable": _variable, "opt": opt}
    exec(compile(ast.Module(body=keep, type_ignores=[]), path, "exec"), ns)
    return ns


def copy_linear(dst: torch.nn.Linear, src: torch.nn.Linear) -> None:
    with torch.no_grad():
        dst.weight.copy_(src.weight)
        if dst.bias is not None:
            dst.bias.copy_(src.bias)


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__.splitlines()[0], "a directory with the release's clswgan.py, model.py, classifier.py")
    p.add_argument("--feat-dim", type=int, default=256, help="resSize (real: 2048)")
    p.add_argument("--att-dim", type=int, default=32, help="attSize = nz (real: 85 / 102 / 312 / 1024)")
    p.add_argument("--hidden", type=int, default=128, help="ngh = ndh (real: 4096)")
    p.add_argument("--batch", type=int, default=16, help="batch_size (real: 64)")
    args = p.parse_args(argv)
    root = official_dir(args.official, "clswgan.py")
    for f in ("model.py", "classifier.py"):
        official_dir(root, f)
    sys.path.insert(0, root)
    off_model = load_file(os.path.join(root, "model.py"), "official_fclswgan_model")
    off_cls = load_file(os.path.join(root, "classifier.py"), "official_fclswgan_classifier")
    Fd, A, H, B = args.feat_dim, args.att_dim, args.hidden, args.batch
    opt = argparse.Namespace(resSize=Fd, attSize=A, nz=A, ngh=H, ndh=H, batch_size=B, lambda1=10.0,
                             cls_weight=0.01, cuda=False)
    fns = official_functions(os.path.join(root, "clswgan.py"), opt)
    from methods.fclswgan import FCLSWGAN, FCLSWGANConfig, class_block, critic_terms

    torch.set_default_dtype(torch.float64)
    torch.manual_seed(args.seed)
    task = random_task(args.seed, n_classes=20, n_seen=15, n_att=A, n_feat=Fd)
    seen = torch.as_tensor(task.seen)
    netG, netD = off_model.MLP_G(opt), off_model.MLP_CRITIC(opt)
    pre = off_cls.LINEAR_LOGSOFTMAX(Fd, len(seen))  # pretrain_cls.model (classifier.py)
    cfg = FCLSWGANConfig(hidden_g=H, hidden_d=H, batch_size=B, gp_weight=opt.lambda1, cls_weight=opt.cls_weight)
    ours = FCLSWGAN(cfg, task).double()
    copy_linear(ours.generator[0][0], netG.fc1)
    copy_linear(ours.generator[0][2], netG.fc2)
    with torch.no_grad():
        netD.fc2.bias.zero_()  # ours has no output bias (it cancels in every WGAN term)
        pre.fc.weight.normal_(0, 0.1)
        ours.pre_classifier.weight.zero_()
        ours.pre_classifier.bias.zero_()
        ours.pre_classifier.weight[seen] = pre.fc.weight
        ours.pre_classifier.bias[seen] = pre.fc.bias
    copy_linear(ours.critic[0], netD.fc1)
    copy_linear(ours.critic[2], netD.fc2)
    pre.requires_grad_(False)
    ours.pre_classifier.requires_grad_(False)
    rep = Report(f"f-CLSWGAN vs the f-CLSWGAN release files, F={Fd} A={A} H={H} B={B}, float64")

    g = torch.Generator().manual_seed(args.seed + 1)
    att_all = torch.as_tensor(task.att, dtype=torch.float64)

    def batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        y = seen[torch.randint(0, len(seen), (B,), generator=g)]
        return torch.rand(B, Fd, generator=g), att_all[y], y, torch.randn(B, A, generator=g)

    real, att, y, z = batch()
    rep.check("generator G(z, a) vs MLP_G(noise, att)", ours.generator(torch.cat([z, att], 1)), netG(z, att), 1e-12)
    rep.check("critic D(x, a) vs MLP_CRITIC (official output bias set to 0)",
              ours.critic(torch.cat([real, att], 1)), netD(real, att), 1e-12)
    block = class_block(ours.seen, torch.float64)
    fake = netG(z, att)
    rep.check("pretrained classifier: ours log-softmax over seen vs LINEAR_LOGSOFTMAX",
              torch.log_softmax(ours.pre_classifier(fake) + block, 1)[:, seen], pre(fake), 1e-12)

    def critic_loss_ours(xb, fb, ab, seed):
        torch.manual_seed(seed)
        w, gp = critic_terms(ours.critic, xb, fb, ab)
        return -w + cfg.gp_weight * gp  # methods/fclswgan.py _train_gan

    def critic_loss_off(xb, fb, ab, seed):  # clswgan.py: criticD_real (mone) + criticD_fake (one) + gp
        torch.manual_seed(seed)
        return netD(fb, ab).mean() - netD(xb, ab).mean() + fns["calc_gradient_penalty"](netD, xb, fb, ab)

    def gen_loss_ours(zb, ab, yb):
        fk = ours.generator(torch.cat([zb, ab], 1))
        adv = -ours.critic(torch.cat([fk, ab], 1)).mean()
        return adv + cfg.cls_weight * F.cross_entropy(ours.pre_classifier(fk) + block, yb)

    def gen_loss_off(zb, ab, yb):  # clswgan.py: G_cost + cls_weight · NLL(pretrain_cls.model(fake))
        fk = netG(zb, ab)
        return -netD(fk, ab).mean() + opt.cls_weight * F.nll_loss(pre(fk), torch.searchsorted(seen, yb))

    fake = fake.detach()
    lo, lf = critic_loss_ours(real, fake, att, 7), critic_loss_off(real, fake, att, 7)
    rep.check("critic loss −W + λ·GP (same ε) vs official D_cost", lo, lf, 1e-12)
    ours.critic.zero_grad()
    netD.zero_grad()
    critic_loss_ours(real, fake, att, 7).backward()
    critic_loss_off(real, fake, att, 7).backward()
    rep.check("critic gradient, layer 1", ours.critic[0].weight.grad, netD.fc1.weight.grad, 1e-10)
    rep.check("critic gradient, layer 2", ours.critic[2].weight.grad, netD.fc2.weight.grad, 1e-10)
    rep.check("generator loss −D(G(z,a)) + β·CE(pre(G(z,a)))", gen_loss_ours(z, att, y), gen_loss_off(z, att, y), 1e-12)
    ours.generator.zero_grad()
    netG.zero_grad()
    gen_loss_ours(z, att, y).backward()
    gen_loss_off(z, att, y).backward()
    rep.check("generator gradient, layer 1", ours.generator[0][0].weight.grad, netG.fc1.weight.grad, 1e-10)
    rep.check("generator gradient, layer 2", ours.generator[0][2].weight.grad, netG.fc2.weight.grad, 1e-10)
    # A 3-iteration trajectory: Adam(lr, β1 0.5) on both (clswgan.py optimizerD / optimizerG).
    from methods.fclswgan import adam
    od, og = adam(ours.critic.parameters(), 1e-4), adam(ours.generator.parameters(), 1e-4)
    fd = torch.optim.Adam(netD.parameters(), lr=1e-4, betas=(0.5, 0.999))
    fg = torch.optim.Adam(netG.parameters(), lr=1e-4, betas=(0.5, 0.999))
    for it in range(3):
        for k in range(5):
            xb, ab, yb, zb = batch()
            with torch.no_grad():
                fo, ff = ours.generator(torch.cat([zb, ab], 1)), netG(zb, ab)
            od.zero_grad()
            critic_loss_ours(xb, fo, ab, 100 * it + k).backward()
            od.step()
            fd.zero_grad()
            critic_loss_off(xb, ff, ab, 100 * it + k).backward()
            netD.fc2.bias.grad = None  # no gradient reaches it (it cancels); keep it at 0
            fd.step()
        zb = torch.randn(B, A, generator=g)
        ours.critic.requires_grad_(False)
        netD.requires_grad_(False)
        og.zero_grad()
        gen_loss_ours(zb, ab, yb).backward()
        og.step()
        fg.zero_grad()
        gen_loss_off(zb, ab, yb).backward()
        fg.step()
        ours.critic.requires_grad_(True)
        netD.requires_grad_(True)
    rep.check("after 3 GAN iterations: critic layer 1", ours.critic[0].weight, netD.fc1.weight, 1e-10)
    rep.check("after 3 GAN iterations: generator layer 2", ours.generator[0][2].weight, netG.fc2.weight, 1e-10)
    # Synthesis: official generate_syn_feature vs ours _synthesise, same seed.
    n_syn = 7
    torch.manual_seed(11)
    with torch.no_grad():
        f_ours, l_ours = ours._synthesise(n_syn)
    torch.manual_seed(11)
    unseen = torch.as_tensor(task.unseen)
    with torch.no_grad():
        # generate_syn_feature fills torch.FloatTensor buffers: run it on a float32 copy of netG
        import copy
        f_off, l_off = fns["generate_syn_feature"](copy.deepcopy(netG).float(), unseen, att_all.float(), n_syn)
    rep.check_true("synthetic labels: same classes and order", bool(torch.equal(l_ours, l_off)))
    rep.measure("synthetic features, same seed (official: noise per class, float32 buffers)",
                f_ours, f_off.double())
    # One whole GAN epoch of the release, run unchanged, vs ours from the same weights and seed.
    epoch_trajectory(rep, root, off_model, fns, opt, task, seen, args.seed + 20, n=4 * B + 3)
    torch.set_default_dtype(torch.float32)  # restore for callers that import main()
    return rep.finish()


class _Data:
    """Stands in for ``util.DATA_LOADER``: what clswgan.py's GAN loop reads (util.py:193-197)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, att: torch.Tensor, seen: torch.Tensor) -> None:
        self.train_feature, self.train_label, self.attribute, self.seenclasses = x, y, att, seen
        self.ntrain = x.shape[0]

    def next_batch(self, batch: int):
        idx = torch.randperm(self.ntrain)[0:batch]
        label = self.train_label[idx]
        return self.train_feature[idx], label, self.attribute[label]


class _Util:
    @staticmethod
    def map_label(label: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        return torch.searchsorted(classes, label)


def epoch_trajectory(rep: Report, root: str, off_model, fns: dict, opt: argparse.Namespace, task, seen, seed: int,
                     n: int) -> None:
    from methods.fclswgan import FCLSWGAN, FCLSWGANConfig, GradLog, _GANLoop

    Fd, A, H, B = opt.resSize, opt.attSize, opt.ngh, opt.batch_size
    torch.manual_seed(seed)
    netG, netD = off_model.MLP_G(opt), off_model.MLP_CRITIC(opt)
    pre = torch.nn.Linear(Fd, len(seen))
    g = torch.Generator().manual_seed(seed + 1)
    xs = torch.rand(n, Fd, generator=g)
    ys = seen[torch.randint(0, len(seen), (n,), generator=g)]
    att_all = torch.as_tensor(task.att, dtype=torch.float64)
    cfg = FCLSWGANConfig(hidden_g=H, hidden_d=H, batch_size=B, gp_weight=opt.lambda1, cls_weight=opt.cls_weight,
                         lr=1e-4)
    ours = FCLSWGAN(cfg, task).double()
    copy_linear(ours.generator[0][0], netG.fc1)
    copy_linear(ours.generator[0][2], netG.fc2)
    with torch.no_grad():
        netD.fc2.bias.zero_()
        pre.weight.normal_(0, 0.1, generator=g)
        ours.pre_classifier.weight.zero_()
        ours.pre_classifier.bias.zero_()
        ours.pre_classifier.weight[seen] = pre.weight
        ours.pre_classifier.bias[seen] = pre.bias
    copy_linear(ours.critic[0], netD.fc1)
    copy_linear(ours.critic[2], netD.fc2)
    pre.requires_grad_(False)
    ours.pre_classifier.requires_grad_(False)
    pretrain = argparse.Namespace(model=torch.nn.Sequential(pre, torch.nn.LogSoftmax(dim=1)))
    optimD = torch.optim.Adam(netD.parameters(), lr=1e-4, betas=(0.5, 0.999))
    optimG = torch.optim.Adam(netG.parameters(), lr=1e-4, betas=(0.5, 0.999))
    o = argparse.Namespace(**{**vars(opt), "critic_iter": 5})
    fns["calc_gradient_penalty"].__globals__["opt"] = o
    ns = {**fns, "opt": o, "data": _Data(xs, ys, att_all, seen), "util": _Util, "netG": netG, "netD": netD,
          "optimizerD": optimD, "optimizerG": optimG, "pretrain_cls": pretrain, "cls_criterion": torch.nn.NLLLoss(),
          "input_res": torch.zeros(B, Fd), "input_att": torch.zeros(B, A), "noise": torch.zeros(B, A),
          "input_label": torch.zeros(B, dtype=torch.long), "one": torch.tensor(1.0), "mone": torch.tensor(-1.0),
          "Variable": _variable, "torch": torch}
    path = os.path.join(root, "clswgan.py")
    tree = ast.parse(open(path).read())
    sample = [x for x in tree.body if isinstance(x, ast.FunctionDef) and x.name == "sample"]
    epoch_loop = next(x for x in tree.body if isinstance(x, ast.For) and getattr(x.target, "id", "") == "epoch")
    inner = next(x for x in epoch_loop.body if isinstance(x, ast.For))  # for i in range(0, data.ntrain, B)
    code = compile(ast.Module(body=sample + [inner], type_ignores=[]), path, "exec")
    counts = {"critic": 0, "generator": 0}

    def counted(o_, name):
        step = o_.step

        def wrapped(*a, **k):
            counts[name] += 1
            return step(*a, **k)
        o_.step = wrapped

    counted(optimD, "critic")
    counted(optimG, "generator")
    torch.manual_seed(seed + 3)
    exec(code, ns)
    off_counts = dict(counts)
    loop = _GANLoop(ours, xs, ys, GradLog())
    counts.update(critic=0, generator=0)
    counted(loop.opt_d, "critic")
    counted(loop.opt_g, "generator")
    torch.manual_seed(seed + 3)
    loop.epoch(1)
    rep.check(f"one GAN epoch (n={n}, B={B}): critic layer 1", ours.critic[0].weight, netD.fc1.weight, 1e-9)
    rep.check(f"one GAN epoch (n={n}, B={B}): critic layer 2", ours.critic[2].weight, netD.fc2.weight, 1e-9)
    rep.check(f"one GAN epoch (n={n}, B={B}): generator layer 1", ours.generator[0][0].weight, netG.fc1.weight, 1e-9)
    rep.check(f"one GAN epoch (n={n}, B={B}): generator layer 2 bias", ours.generator[0][2].bias, netG.fc2.bias, 1e-9)
    rep.check_true(f"one GAN epoch: optimiser steps equal (official {off_counts}, ours {counts})", off_counts == counts)


if __name__ == "__main__":
    sys.exit(main())
