"""Equivalence check: ESZSL (methods/eszsl.py) against mvp18/Popular-ZSL-Algorithms ``ESZSL/eszsl.py``.

The official code (bernard24/Embarrassingly-simple-ZSL) is MATLAB; mvp18's ``find_W`` is the
closed form our presets' (α, γ) were validated with. Compared in float64: the solution V and the
scores, (a) with the official one-hot targets Y ∈ {0, 1} (eszsl.py:80-81) passed to both, which must
match, and (b) ours as shipped, Y ∈ {−1, 1} (the paper's), whose difference is measured.

    python benchmarks/equivalence/eszsl.py --official /path/to/Popular-ZSL-Algorithms
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from _e2_common import Report, load_file, official_dir, parser, random_features, random_task  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__.splitlines()[0], "mvp18/Popular-ZSL-Algorithms, containing ESZSL/eszsl.py")
    p.add_argument("--feat-dim", type=int, default=512, help="feature dimension (real: 2048)")
    args = p.parse_args(argv)
    root = official_dir(args.official, "ESZSL/eszsl.py")
    off = load_file(os.path.join(root, "ESZSL", "eszsl.py"), "official_eszsl")
    from methods.eszsl import ESZSL, ESZSLConfig

    task = random_task(args.seed, n_classes=50, n_seen=40, n_att=85, n_feat=args.feat_dim)
    x, y = random_features(args.seed, task, n=1000)
    seen, unseen = task.seen, task.unseen
    yl = np.searchsorted(seen, y)
    gt = np.zeros((len(y), len(seen)))
    gt[np.arange(len(y)), yl] = 1  # eszsl.py:80-81
    sig = np.asarray(task.att, np.float64)[seen].T
    sig_te = np.asarray(task.att, np.float64)[unseen].T
    xt, _ = random_features(args.seed + 9, task, n=200)
    rep = Report(f"ESZSL vs mvp18 ESZSL/eszsl.py, F={args.feat_dim}, float64")
    for a_exp, g_exp in ((3, 0), (3, -1), (3, 2)):  # the validated (α, γ) of eszsl.py:18-22
        W_off01 = off.ESZSL.find_W(None, x.T, gt, sig, a_exp, g_exp)
        W_offpm = off.ESZSL.find_W(None, x.T, 2 * gt - 1, sig, a_exp, g_exp)
        m = ESZSL(ESZSLConfig(alpha=10.0 ** a_exp, gamma=10.0 ** g_exp), task)
        m.fit(torch.as_tensor(x), torch.as_tensor(y))
        V = m.V.double().numpy()  # stored float32
        tag = f"(α, γ) = (10^{a_exp}, 10^{g_exp})"
        rep.check(f"{tag}: V (Y ∈ ±1) vs official find_W given Y ∈ ±1", V, W_offpm, 1e-6 * np.abs(W_offpm).max())
        rep.measure(f"{tag}: V as shipped (Y ∈ ±1) vs official (one-hot Y)", V, W_off01)
        s_off = xt @ W_off01 @ sig_te  # the scores of eszsl.py zsl_acc
        with torch.no_grad():
            s_ours = m(torch.as_tensor(xt))["logits"][:, torch.as_tensor(unseen)].double().numpy()
        rep.check(f"{tag}: scores of V vs x V S (official scoring) ", s_ours, xt @ V @ sig_te,
                  1e-5 * np.abs(s_ours).max())
        rep.value(f"{tag}: share of unseen-class predictions that differ, ±1 vs one-hot",
                  float((s_ours.argmax(1) != s_off.argmax(1)).mean()))
    return rep.finish()


if __name__ == "__main__":
    sys.exit(main())
