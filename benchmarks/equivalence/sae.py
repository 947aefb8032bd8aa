"""Equivalence check: SAE (methods/sae.py) against the official SAE code.

Official: github.com/Elyorcv/SAE (MATLAB: library/SAE.m, awa_demo.m) is not runnable here, so the
check imports the faithful Python port of the same math, mvp18/Popular-ZSL-Algorithms
``SAE/sae.py`` (``find_W`` = SAE.m line for line; ``zsl_acc`` = the demos' [F→S] / [S→F]
scoring, with ``NormalizeFea(W)`` row-normalisation of W). The solution W and both scorings are
compared; the row-normalisation of W in the official scoring is a documented difference of ours.

    python benchmarks/equivalence/sae.py --official /path/to/Popular-ZSL-Algorithms
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from _e2_common import Report, load_file, official_dir, parser, random_features, random_task  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__.splitlines()[0], "mvp18/Popular-ZSL-Algorithms, containing SAE/sae.py")
    p.add_argument("--feat-dim", type=int, default=512, help="feature dimension (real: 2048)")
    p.add_argument("--lam", type=float, nargs="+", default=[0.2, 100.0, 500000.0],
                   help="λ values to compare (default: the demos' CUB 0.2, ours 100, AwA 5e5)")
    args = p.parse_args(argv)
    root = official_dir(args.official, "SAE/sae.py")
    off = load_file(os.path.join(root, "SAE", "sae.py"), "official_sae")
    from methods.sae import SAE, SAEConfig, solve_sae

    task = random_task(args.seed, n_classes=50, n_seen=40, n_att=85, n_feat=args.feat_dim)
    x, y = random_features(args.seed, task, n=800)
    xt, yt = random_features(args.seed + 7, task, n=300)
    unseen = task.unseen
    rng = np.random.default_rng(args.seed + 3)
    yt = rng.choice(unseen, size=300)
    xt = xt + np.asarray(task.att)[yt] @ rng.standard_normal((task.num_attributes, task.feature_dim))
    xt = np.maximum(xt, 0)

    rep = Report(f"SAE vs mvp18 SAE/sae.py (port of Elyorcv/SAE SAE.m), F={args.feat_dim}")
    offself = type("S", (), {})()  # the official methods use self only for normalizeFeature
    offself.normalizeFeature = lambda a: off.SAE.normalizeFeature(offself, a)
    # Official preprocessing: X_train = normalizeFeature(X_train.T).T (sae.py:86).
    X_off = offself.normalizeFeature(x).T  # [F, N]
    S_off = np.asarray(task.att, np.float64)[y].T  # [A, N]
    sig_te = np.asarray(task.att, np.float64)[unseen].T  # [A, U]
    for lam in args.lam:
        W_off = off.SAE.find_W(offself, X_off, S_off, lam)  # [A, F]
        # ours, float64 solver on the same (official-normalised) inputs
        W_solve = solve_sae(X_off, S_off, lam)
        rep.check(f"λ={lam:g}: solve_sae W (float64) vs find_W", W_solve, W_off, 1e-9 * max(1, np.abs(W_off).max()))
        # ours, the method end to end (normalises x itself with F.normalize, stores W in float32)
        m = SAE(SAEConfig(lam=lam), task)
        m.fit(torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y))
        rep.check(f"λ={lam:g}: SAE.fit W (float32 buffer) vs find_W", m.W, W_off,
                  1e-4 * np.abs(W_off).max())
        # scoring [F→S]: official cosine(x W_rownorm^T, s); ours cosine(x W^T, s)
        W64 = W_off
        Wn = offself.normalizeFeature(W64)  # NormalizeFea(W): each row of W [A, F]
        F2S_off = xt @ Wn.T
        cos_off = (F2S_off / np.linalg.norm(F2S_off, axis=1, keepdims=True)) @ (sig_te / np.linalg.norm(sig_te, axis=0))
        F2S_ours = xt @ W64.T
        cos_ours = (F2S_ours / np.linalg.norm(F2S_ours, axis=1, keepdims=True)) @ (sig_te / np.linalg.norm(sig_te, axis=0))
        with torch.no_grad():
            m.W.copy_(torch.as_tensor(Wn))  # ours with the official row-normalised W
            got = m(torch.as_tensor(xt, dtype=torch.float32))["logits"][:, torch.as_tensor(unseen)]
        rep.check(f"λ={lam:g}: [F→S] scores, ours given NormalizeFea(W) vs official", got, cos_off, 1e-5)
        rep.measure(f"λ={lam:g}: [F→S] scores, W as solved (ours) vs NormalizeFea(W)", cos_ours, cos_off)
        agree = float((cos_ours.argmax(1) == cos_off.argmax(1)).mean())
        rep.value(f"λ={lam:g}: [F→S] share of test predictions that differ", 1 - agree)
        # official accuracy function on official W, against ours computed the same way
        local = np.searchsorted(unseen, yt)
        acc_off = off.SAE.zsl_acc(offself, xt.T, W64, local, sig_te, "F2S")
        pred = cos_off.argmax(1)
        ours_acc = np.mean([np.mean(pred[local == c] == c) for c in range(len(unseen))])
        rep.check(f"λ={lam:g}: official zsl_acc(F2S) vs class-mean acc of the same scores", ours_acc, acc_off, 1e-12)
        # [S→F]: official cosine(x, NormalizeFea(sig^T NormalizeFea(W))); ours (space: feature)
        S2F_off = sig_te.T @ Wn
        S2F_off = S2F_off / np.linalg.norm(S2F_off, axis=1, keepdims=True)
        s2f_off = (xt / np.linalg.norm(xt, axis=1, keepdims=True)) @ S2F_off.T
        mf = SAE(SAEConfig(lam=lam, space="feature"), task)
        with torch.no_grad():
            mf.W.copy_(torch.as_tensor(Wn))
            got = mf(torch.as_tensor(xt, dtype=torch.float32))["logits"][:, torch.as_tensor(unseen)]
            mf.W.copy_(torch.as_tensor(W64))
            got_raw = mf(torch.as_tensor(xt, dtype=torch.float32))["logits"][:, torch.as_tensor(unseen)]
        rep.check(f"λ={lam:g}: [S→F] scores, ours given NormalizeFea(W) vs official", got, s2f_off, 1e-5)
        rep.measure(f"λ={lam:g}: [S→F] scores, W as solved (ours) vs NormalizeFea(W)", got_raw, s2f_off)
    return rep.finish()


if __name__ == "__main__":
    sys.exit(main())
