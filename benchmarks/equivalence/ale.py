"""Equivalence check: ALE (methods/ale.py) against mvp18/Popular-ZSL-Algorithms ``ALE/ale.py``.

ALE has no official code; mvp18's numpy re-implementation is the one our presets copy. It makes one
SGD update per image: it draws wrong classes at random until one violates the margin (draw t) and
adds ``lr · β[⌊n/t⌋] · x (φ_y − φ_k)`` (WARP rank estimate ⌊n/t⌋, β_r = Σ_{i≤r} 1/i). Ours takes the
exact rank r and the full rank-weighted hinge ``β_r / r · Σ_k ℓ_k``, the expectation of that update
when the rank estimate is exact.

What is compared (float64, same W, same images):
- scores: our logits vs the official cosine ``1 − cdist(XW, sig, 'cosine')`` (same ranking);
- one update: the official ``update_W`` for every (draw t, violator k) outcome, with
  ``random.choice`` replaced by a scripted draw, weighted by its probability, gives the exact
  expected official update; ours (−lr · gradient of our loss on the same image) must equal it times
  β_r / E[β_⌊n/t⌋] (checked), and that factor is printed (the WARP estimate's bias);
- schedule: our presets (one SGD step per image, lr per dataset, at most 100 epochs, early stopping
  10 epochs after the best) against the values read from ale.py (table and argparse defaults).
Cannot be equal: a sampled training trajectory (the official draws wrong classes at random).

    python benchmarks/equivalence/ale.py --official /path/to/Popular-ZSL-Algorithms
"""

from __future__ import annotations

import os
import sys
import types

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from _e2_common import (  # noqa: E402
    Mvp18Stub,
    Report,
    load_file,
    official_dir,
    parser,
    random_features,
    random_task,
    read_arg_default,
    read_validated,
)

DATASETS = {"cub": "CUB", "sun": "SUN", "awa2": "AWA2"}


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__.splitlines()[0], "mvp18/Popular-ZSL-Algorithms, containing ALE/ale.py")
    p.add_argument("--feat-dim", type=int, default=2048)
    p.add_argument("--images", type=int, default=8, help="images whose expected update is compared")
    args = p.parse_args(argv)
    root = official_dir(args.official, "ALE/ale.py")
    off = load_file(os.path.join(root, "ALE", "ale.py"), "official_ale")
    from methods.ale import ALE, ALEConfig

    task = random_task(args.seed, n_classes=50, n_seen=40, n_att=85, n_feat=args.feat_dim)
    x, y = random_features(args.seed, task, n=256)
    seen = task.seen
    yl = np.searchsorted(seen, y)
    sig = np.asarray(task.att, np.float64)[seen].T  # [A, S]
    lr = 0.01  # the AWA2 value (ale.py docstring, line 25)
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    stub = Mvp18Stub(off.ALE, xn, yl, sig, lr=lr)  # official: L2 norm of X_train (ale.py:95-97)
    rng = np.random.default_rng(args.seed + 5)
    W0 = rng.random((args.feat_dim, sig.shape[0]))  # official init (ale.py:139-140)
    W0 = stub.normalizeFeature(W0.T).T
    rep = Report(f"ALE vs mvp18 ALE/ale.py, F={args.feat_dim} (ours float32, official float64)")

    m = ALE(ALEConfig(), task)  # ALE.forward/loss compute in float32 (methods/ale.py:87, 95)
    with torch.no_grad():
        m.W.copy_(torch.as_tensor(W0))
    xt = torch.as_tensor(x, dtype=torch.float32)
    with torch.no_grad():
        logits = m(xt)["logits"]
        emb_norm = torch.linalg.norm(torch.nn.functional.normalize(xt, dim=1) @ m.W, dim=1, keepdim=True)
    from scipy import spatial
    cos_off = 1 - spatial.distance.cdist(xn @ W0, np.asarray(task.att, np.float64), "cosine")
    rep.check("scores: our logits / |x̂W| vs official 1 − cosine distance (float32)", logits / emb_norm,
              cos_off, 1e-5)
    rep.check_true("scores: same argmax over all classes", bool((logits.argmax(1).numpy() == cos_off.argmax(1)).all()))

    train_classes = np.arange(len(seen))
    beta = np.zeros(len(train_classes))  # as ale.py:144-149
    for i in range(1, len(beta)):
        beta[i] = sum(1.0 / j for j in range(1, i + 1))
    n = len(seen) - 1
    ratios = []
    # Second W: official init plus a class-aligned direction, so that only some wrong classes
    # violate the margin (0 < r < n) and the WARP rank estimate ⌊n/t⌋ matters.
    M = stub.X_train @ (sig[:, yl].T - sig.mean(1))
    for scale in (1.0, 3.0, 10.0, 30.0, 100.0, 300.0):
        W1 = W0 + scale * M / np.abs(M).max()
        s1 = xn[: args.images] @ W1 @ sig
        r1 = [(1 + s1[i] - s1[i, yl[i]] > 0).sum() - 1 for i in range(args.images)]
        if np.median(r1) < n / 2:
            break
    for tag, Wc in (("official init", W0), (f"aligned W (scale {scale:g})", W1)):
        with torch.no_grad():
            m.W.copy_(torch.as_tensor(Wc))
        for j in range(args.images):
            xj = stub.X_train[:, j]
            yj = yl[j]
            others = train_classes[train_classes != yj]
            s = xj @ Wc @ sig
            viol = [k for k in others if 1 + s[k] - s[yj] > 0]
            non = [k for k in others if k not in viol]
            r = len(viol)
            if r == 0:
                continue
            expected = np.zeros_like(Wc)
            q = r / n
            for t in range(1, n + 1):  # first violator at draw t (t ≤ n draws, ale.py:119)
                p_t = (1 - q) ** (t - 1) * q
                if p_t == 0:
                    continue
                for k in viol:
                    script = [non[0]] * (t - 1) + [k] if t > 1 else [k]
                    it = iter(script)
                    off.random = types.SimpleNamespace(choice=lambda _seq, it=it: next(it))
                    upd = stub.update_W(Wc.copy(), [j], train_classes, beta) - Wc
                    expected += p_t / r * upd
            # our update on the same image: −lr · ∇ loss (batch of one)
            m.zero_grad()
            out = m(xt[j:j + 1])
            m.loss(out, torch.as_tensor(y[j:j + 1]))["loss"].backward()
            ours = -lr * m.W.grad.numpy()
            e_beta = sum((1 - q) ** (t - 1) * q * beta[int(n / t)] for t in range(1, n + 1))
            beta_r = beta[r]
            rep.check(f"{tag}, image {j} (r={r}/{n}): ours · E[β_⌊n/t⌋]/β_r vs exact expected official update",
                      ours * e_beta / beta_r, expected, 1e-5 * np.abs(expected).max())
            ratios.append(e_beta / beta_r)
    rep.value("E[β_⌊n/t⌋] / β_r, official over ours, min over images", min(ratios))
    rep.value("E[β_⌊n/t⌋] / β_r, official over ours, max over images", max(ratios))
    # Schedule: the presets against the values read from the official file.
    path = os.path.join(root, "ALE", "ale.py")
    table = read_validated(path)
    for flag, ours in (("epochs", {ds: ALE.presets[ds]["train"]["epochs"] for ds in DATASETS}),
                       ("early_stop", {ds: ALE.early_stop for ds in DATASETS})):
        line, default = read_arg_default(path, flag)
        for ds in DATASETS:
            rep.check_true(f"{ds}: {flag} {ours[ds]} = official default {default} (ALE/ale.py:{line})",
                           ours[ds] == int(default))
    for ds, up in DATASETS.items():
        line, (norm, lr_off) = table[up]
        pre = ALE.presets[ds]["train"]
        rep.check_true(f"{ds}: one SGD step per image at lr {lr_off}, norm {norm} (ALE/ale.py:{line}, update_W)",
                       pre["batch_size"] == 1 and pre["optimizer"] == "sgd" and float(lr_off) == pre["lr"]
                       and pre["momentum"] == 0.0 and pre["weight_decay"] == 0.0 and norm == "L2"
                       and ALEConfig().normalize_features)
    return rep.finish()


if __name__ == "__main__":
    sys.exit(main())
