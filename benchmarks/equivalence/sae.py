"""Equivalence check: SAE (methods/sae.py) against the official SAE code.

Official: github.com/Elyorcv/SAE (MATLAB: library/SAE.m, awa_demo.m) is not runnable here, so the
check imports the faithful Python port of the same math, mvp18/Popular-ZSL-Algorithms
``SAE/sae.py`` (``find_W`` = SAE.m line for line; ``zsl_acc`` = the demos' [F→S] / [S→F]
scoring, with ``NormalizeFea(W)`` row-normalisation of W). Compared: the Sylvester solution; our stored W against
the official row-normalised W; both scorings as shipped; the official accuracy function; and the λ
grid tuned on validation against every validated value mvp18 published (sae.py:25-29), and the
presets against its [F→S] values.

    python benchmarks/equivalence/sae.py --official /path/to/Popular-ZSL-Algorithms
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from _e2_common import Report, load_file, official_dir, parser, random_features, random_task, read_validated  # noqa: E402


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
        W64 = W_off
        Wn = offself.normalizeFeature(W64)  # NormalizeFea(W): each row of W [A, F]
        # ours, the method end to end (normalises x itself, solves, row-normalises, stores float32)
        m = SAE(SAEConfig(lam=lam), task)
        m.fit(torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y))
        rep.check(f"λ={lam:g}: SAE.fit W (float32 buffer) vs NormalizeFea(find_W)", m.W, Wn, 1e-5)
        # scoring [F→S]: official cosine(x NormalizeFea(W)^T, s)
        F2S_off = xt @ Wn.T
        cos_off = (F2S_off / np.linalg.norm(F2S_off, axis=1, keepdims=True)) @ (sig_te / np.linalg.norm(sig_te, axis=0))
        with torch.no_grad():
            got = m(torch.as_tensor(xt, dtype=torch.float32))["logits"][:, torch.as_tensor(unseen)]
        rep.check(f"λ={lam:g}: [F→S] scores as shipped vs official", got, cos_off, 1e-5)
        rep.check_true(f"λ={lam:g}: [F→S] same predictions as official", bool((got.numpy().argmax(1) == cos_off.argmax(1)).all()))
        F2S_raw = xt @ W64.T  # the difference fixed here: scoring with W as solved
        cos_raw = (F2S_raw / np.linalg.norm(F2S_raw, axis=1, keepdims=True)) @ (sig_te / np.linalg.norm(sig_te, axis=0))
        rep.value(f"λ={lam:g}: [F→S] share of predictions that W as solved (the old code) changed",
                  float((cos_raw.argmax(1) != cos_off.argmax(1)).mean()))
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
        mf.fit(torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y))
        with torch.no_grad():
            got = mf(torch.as_tensor(xt, dtype=torch.float32))["logits"][:, torch.as_tensor(unseen)]
        rep.check(f"λ={lam:g}: [S→F] scores as shipped vs official", got, s2f_off, 1e-5)
    # λ: the grid tuned on validation and the presets against mvp18's validated values.
    path = os.path.join(root, "SAE", "sae.py")
    table = read_validated(path)
    for ds, up in {"cub": "CUB", "sun": "SUN", "awa2": "AWA2"}.items():
        line, (f2s, s2f) = table[up]
        rep.check_true(f"{ds}: validated λ {f2s} [F→S] and {s2f} [S→F] are in the tuned grid (SAE/sae.py:{line})",
                       float(f2s) in SAE.tuned_on_val["lam"] and float(s2f) in SAE.tuned_on_val["lam"])
        rep.check_true(f"{ds}: preset λ {SAE.presets[ds]['method']['lam']:g} = validated [F→S] {f2s} (SAE/sae.py:{line})",
                       SAE.presets[ds]["method"]["lam"] == float(f2s))
    return rep.finish()


if __name__ == "__main__":
    sys.exit(main())
