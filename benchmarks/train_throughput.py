"""Training throughput of MSDN / MSDN++ against a plain reference in the official code's style.

Shapes are CUB's (A=312, F=2048, K=200 with 150 seen / 50 unseen, D=300), inputs random. Measures
samples/s of one training step (forward + loss + backward + RMSprop step) for our module and, in the
same process and with the same initial weights, for :class:`OfficialStyleMSDN`, written from METHOD.md
the way the official ``core/MSDN.py`` computes it: separate einsums per product, the dead tensors
(uniform-attention ablation, attribute-based features, attention over attributes through ``W_3``,
``Pred_att``, pooled feature, ``v_a``) and the unused ``W_3_1`` parameter. Steps of the two models
alternate (AB BA AB ...) after warm-up, so machine noise hits both alike; the reported speedup is
the median over pairs of the reference/ours step-time ratio (throughputs use median step times).
Before timing, the two models' losses on one batch are compared (same weights => same loss).

    python benchmarks/train_throughput.py --method msdn --regions 196 --batch 50 --iters 10
    python benchmarks/train_throughput.py --method msdnpp --intervention random --regions 49

The last line is ``speedup_vs_reference=X.XX`` (reference step time / ours).
"""

from __future__ import annotations

import argparse
import logging
import resource
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from methods.msdn import MSDN
from methods.msdnpp import INTERVENTIONS, MSDNPP
from zsl_bench.config import resolve
from zsl_bench.contract import TaskInfo

log = logging.getLogger("train_throughput")

CUB = {"classes": 200, "seen": 150, "attributes": 312, "features": 2048, "w2v": 300}


class OfficialStyleMSDN(nn.Module):
    """MSDN as the official module computes it (METHOD.md §1 equations, official layout and dead work)."""

    def __init__(self, model: MSDN) -> None:
        super().__init__()
        cfg = model.cfg
        self.lambda_cal, self.w_distill, self.normalize_v = cfg.lambda_cal, cfg.w_distill, cfg.normalize_v
        self.V = nn.Parameter(model.V.detach().clone())
        self.W_1 = nn.Parameter(model.W1.detach().clone())
        self.W_2 = nn.Parameter(model.W2.detach().clone())
        self.W_3 = nn.Parameter(torch.zeros_like(model.W2))  # dead in the official module
        self.W_1_1 = nn.Parameter(model.W11.detach().clone())
        self.W_2_1 = nn.Parameter(model.W21.detach().clone())
        self.W_3_1 = nn.Parameter(torch.zeros_like(model.W11))  # never used, as in the official module
        self.register_buffer("att", model.att.clone())
        self.register_buffer("vec_bias", model.margin.clone().unsqueeze(0))
        self.register_buffer("unseen", torch.as_tensor(model.task.unseen, dtype=torch.long))
        self.register_buffer("eye", torch.eye(model.task.num_classes))

    def forward(self, fs: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        b, f, r = fs.shape
        side = int(round(r ** 0.5))
        visualf_ori = F.avg_pool2d(fs.view(b, f, side, side), kernel_size=(side, side)).view(b, f)
        v = F.normalize(self.V) if self.normalize_v else self.V
        fs = F.normalize(fs, dim=1)
        num_attr = v.shape[0]
        # attribute -> visual
        s = torch.einsum("iv,vf,bfr->bir", v, self.W_1, fs)
        a_b = fs.new_full((b, num_attr, r), 1 / r)
        a_b_p = self.att.new_full((b, num_attr), fill_value=1)
        s_b_p = torch.einsum("bir,bir->bi", a_b, s)
        s_b_pp = torch.einsum("ki,bi,bi->bk", self.att, a_b_p, s_b_p)
        a = torch.einsum("iv,vf,bfr->bir", v, self.W_2, fs).softmax(dim=-1)
        f_p = torch.einsum("bir,bfr->bif", a, fs)
        s_p = torch.einsum("bir,bir->bi", a, s)
        a_p = torch.sigmoid(torch.einsum("iv,vf,bif->bi", v, self.W_3, f_p))
        s_pp = torch.einsum("ki,bi->bik", self.att, s_p).sum(dim=1) + self.vec_bias
        s_attr = torch.einsum("bi,bi->bi", a_b_p, s_p)
        pred_att = torch.einsum("iv,vf,bif->bi", v, self.W_1, f_p)
        out1 = {"S_pp": s_pp, "Pred_att": pred_att, "S_b_pp": s_b_pp, "A_p": a_p, "A": a,
                "S_attr": s_attr, "visualf_ori": visualf_ori, "a_v": f_p}
        # visual -> attribute
        t = torch.einsum("bfr,fv,iv->bri", fs, self.W_1_1, v)
        beta = torch.einsum("iv,vf,bfr->bir", v, self.W_2_1, fs).softmax(dim=1)
        v_a = torch.einsum("bir,iv->brv", beta, v)
        omega = torch.einsum("bir,bri->bi", beta, t)
        s_pp2 = torch.einsum("ki,bi->bik", self.att, omega).sum(dim=1) + self.vec_bias
        return out1, {"S_pp": s_pp2, "v_a": v_a}

    def compute_loss(self, s_pp: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        labels = self.eye[y]
        ce = torch.mean(-torch.einsum("bk,bk->b", F.log_softmax(s_pp - self.vec_bias, dim=1), labels))
        mass_unseen = F.softmax(s_pp, dim=-1)[:, self.unseen].sum(dim=1)
        return ce - self.lambda_cal * torch.log(torch.mean(mass_unseen))

    @staticmethod
    def distill(s1: torch.Tensor, s2: torch.Tensor) -> torch.Tensor:
        wt = (s1 - s2).pow(2)
        wt = wt / wt.sum(1).sqrt().unsqueeze(1)
        loss = (wt * (s1 - s2).abs()).sum() / s1.shape[0]
        p, q = F.softmax(s1, dim=1), F.softmax(s2, dim=1)
        log_m = ((p + q) / 2).log()
        kl = nn.KLDivLoss(reduction="batchmean")
        return loss + (kl(log_m, q) + kl(log_m, p)) / 2

    def total_loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        out1, out2 = self(x)
        loss = self.compute_loss(out1["S_pp"], y) + self.compute_loss(out2["S_pp"], y)
        return loss + self.w_distill * self.distill(out1["S_pp"], out2["S_pp"])


def build_models(method: str, regions: int, intervention: str) -> tuple[MSDN, OfficialStyleMSDN]:
    rng = np.random.default_rng(0)
    k, s, a, f, d = (CUB[n] for n in ("classes", "seen", "attributes", "features", "w2v"))
    task = TaskInfo(dataset="cub", att=rng.random((k, a), dtype=np.float32), seen=np.arange(s),
                    unseen=np.arange(s, k), feature_dim=f, regions=regions,
                    w2v=rng.standard_normal((a, d)).astype(np.float32))
    cls = MSDNPP if method == "msdnpp" else MSDN
    cfg = resolve(cls, "cub").method
    if method == "msdnpp":
        cfg = replace(cfg, intervention=intervention)
    torch.manual_seed(0)
    ours = cls(cfg, task)
    # Move W11/W21 off their zero init so every branch carries signal (timing is unaffected).
    with torch.no_grad():
        ours.W11.normal_(0, 0.01)
        ours.W21.normal_(0, 0.01)
    return ours, OfficialStyleMSDN(ours)


def rmsprop(model: nn.Module) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.RMSprop(params, lr=1e-4, weight_decay=1e-4, momentum=0.9)


def make_step(loss_fn: Callable[[], torch.Tensor], opt: torch.optim.Optimizer) -> Callable[[], None]:
    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss_fn().backward()
        opt.step()
    return step


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--method", choices=("msdn", "msdnpp"), default="msdn")
    ap.add_argument("--regions", type=int, choices=(196, 49), default=196)
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--iters", type=int, default=10, help="timed steps per model (after warm-up)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--device", default="cpu", help="cpu | cuda")
    ap.add_argument("--intervention", choices=INTERVENTIONS, default="random", help="msdnpp only")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.batch < 1 or args.iters < 1 or args.warmup < 0:
        ap.error("--batch and --iters must be >= 1, --warmup >= 0")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        ap.error(f"--device {args.device}: CUDA is not available; use --device cpu")
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    ours, ref = build_models(args.method, args.regions, args.intervention)
    ours.to(device)
    ref.to(device)
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(args.batch, CUB["features"], args.regions, generator=gen).to(device)
    y = torch.randint(0, CUB["seen"], (args.batch,), generator=gen).to(device)

    steps = {
        "ours": make_step(lambda: ours.loss(ours(x), y)["loss"], rmsprop(ours)),
        "reference": make_step(lambda: ref.total_loss(x, y), rmsprop(ref)),
    }
    # Same initial weights, same equations => same MSDN loss (the reference keeps its initial copy).
    with torch.no_grad():
        l_ours = MSDN.loss(ours, MSDN.forward(ours, x), y)["loss"].item()
    steps["ours"]()  # first warm-up step of ours alone: the process peak so far is ours
    peak_ours = _peak_memory_mb(device)
    with torch.no_grad():
        l_ref = ref.total_loss(x, y).item()
    log.info("loss check: ours %.6f reference %.6f (|diff| %.2e)", l_ours, l_ref, abs(l_ours - l_ref))

    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(args.warmup):
        for step in steps.values():
            step()
    sync(device)
    for i in tqdm(range(args.iters), desc="timing", disable=None):
        order = list(steps) if i % 2 == 0 else list(reversed(steps))  # alternate who goes first
        for name in order:
            sync(device)
            t0 = time.perf_counter()
            steps[name]()
            sync(device)
            times[name].append(time.perf_counter() - t0)

    label = args.method + (f" (intervention {args.intervention})" if args.method == "msdnpp" else "")
    print(f"method={label} regions={args.regions} batch={args.batch} iters={args.iters} "
          f"device={args.device} threads={args.threads}")
    med = {name: statistics.median(ts) for name, ts in times.items()}
    for name in steps:
        print(f"{name}: {args.batch / med[name]:.1f} samples/s (median step {med[name] * 1e3:.1f} ms)")
    kind = "rss" if device.type == "cpu" else "cuda"
    print(f"peak_{kind}_mb_ours={peak_ours:.0f} (process peak after one training step of ours, "
          f"inputs included; the reference had not run yet)")
    # Each pair of steps ran back to back under the same machine load: the median of the pairs'
    # ratios is steadier on a shared machine than the ratio of medians.
    ratios = [r / o for r, o in zip(times["reference"], times["ours"])]
    print(f"ratio_of_medians={med['reference'] / med['ours']:.2f} pair_ratios(min/max)="
          f"{min(ratios):.2f}/{max(ratios):.2f}")
    print(f"speedup_vs_reference={statistics.median(ratios):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
