"""MSDN++'s attribute-effect loss on the real CUB class semantics: where is its minimum?

Compares the loss as it was (only the effect standardised, ``mean|BN(ε) − z_y|``) with the current
one (``MSDNPP.attribute_effect_loss``: ``mean|BN(ε) − BN(z_y)|``) for effects equal to the target,
random, spiky (one image per attribute carries it all) and a noisy target, averaged over 20
batches of 50 distinct classes. Needs the real metadata (``$ZSL_BENCH_SHARED_DATA/CUB/att_splits.mat``).

    PYTHONPATH=. python benchmarks/msdnpp_attribute_loss.py
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F


def main() -> int:
    from scipy.io import loadmat

    from methods.msdnpp import MSDNPP

    root = Path(os.environ.get("ZSL_BENCH_SHARED_DATA", "../shared/data/zsl"))
    path = root / "CUB" / "att_splits.mat"
    if not path.is_file():
        print(f"error: {path} not found; set ZSL_BENCH_SHARED_DATA to the real metadata", file=sys.stderr)
        return 2
    att = loadmat(path)["att"].T  # [200 classes, 312 attributes]
    z = F.normalize(torch.as_tensor(att, dtype=torch.float32), dim=1)  # as the model's buffer

    def before(eps: torch.Tensor, target: torch.Tensor) -> float:
        mean, var = eps.mean(0, keepdim=True), eps.var(0, unbiased=False, keepdim=True)
        return ((eps - mean) / torch.sqrt(var + 1e-5) - target).abs().mean().item()

    names = ("target", "random U(0,1)", "random N(0,1)", "spiky", "target + N(0, 0.05)")
    old: dict[str, list[float]] = {k: [] for k in names}
    new: dict[str, list[float]] = {k: [] for k in names}
    for seed in range(20):
        rng = np.random.default_rng(seed)
        t = z[torch.as_tensor(rng.choice(len(z), 50, replace=False))]
        spiky = torch.zeros_like(t)
        spiky[torch.as_tensor(rng.integers(0, 50, t.shape[1])), torch.arange(t.shape[1])] = 1.0
        cases = {"target": t, "random U(0,1)": torch.as_tensor(rng.random(t.shape), dtype=torch.float32),
                 "random N(0,1)": torch.as_tensor(rng.standard_normal(t.shape), dtype=torch.float32),
                 "spiky": spiky,
                 "target + N(0, 0.05)": t + 0.05 * torch.as_tensor(rng.standard_normal(t.shape), dtype=torch.float32)}
        for k, v in cases.items():
            old[k].append(before(v, t))
            new[k].append(MSDNPP.attribute_effect_loss(v, t).item())
    print(f"{'effect':<22} {'before: mean|BN(eps)-z|':>24} {'now: mean|BN(eps)-BN(z)|':>25}")
    for k in names:
        print(f"{k:<22} {np.mean(old[k]):>24.3f} {np.mean(new[k]):>25.3f}")
    a = att.shape[1]
    print(f"scale: a mean over A = {a} attributes; METHOD.md's per-image L1 norm is A times it "
          f"(lambda_sem 0.1 under the norm = {0.1 * a:.1f} under the mean)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
