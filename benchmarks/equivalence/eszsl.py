"""Equivalence check: ESZSL (methods/eszsl.py) against mvp18/Popular-ZSL-Algorithms ``ESZSL/eszsl.py``.

The official code (bernard24/Embarrassingly-simple-ZSL) is MATLAB; mvp18's ``find_W`` is the
closed form our presets' (α, γ) were validated with. Compared in float64: the solution V and the
scores, (a) ours as shipped (one-hot targets Y ∈ {0, 1}, ``targets: zero_one``, as eszsl.py:80-81)
against the official, which must match, (b) ``targets: plus_minus_one`` (the paper's Y ∈ {−1, 1})
against the official given ±1 targets (must match), and the size of the ±1 vs one-hot difference;
(c) the presets against the validated (α, γ) read from eszsl.py.

    python benchmarks/equivalence/eszsl.py --official /path/to/Popular-ZSL-Algorithms
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from _e2_common import Report, load_file, official_dir, parser, random_features, random_task, read_validated  # noqa: E402


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
        mpm = ESZSL(ESZSLConfig(alpha=10.0 ** a_exp, gamma=10.0 ** g_exp, targets="plus_minus_one"), task)
        mpm.fit(torch.as_tensor(x), torch.as_tensor(y))
        tag = f"(α, γ) = (10^{a_exp}, 10^{g_exp})"
        rep.check(f"{tag}: V as shipped (one-hot Y) vs official find_W", V, W_off01, 1e-6 * np.abs(W_off01).max())
        rep.check(f"{tag}: V, targets plus_minus_one, vs official find_W given Y ∈ ±1", mpm.V.double().numpy(),
                  W_offpm, 1e-6 * np.abs(W_offpm).max())
        rep.measure(f"{tag}: V with ±1 targets (the old default) vs one-hot", mpm.V.double().numpy(), W_off01)
        s_off = xt @ W_off01 @ sig_te  # the scores of eszsl.py zsl_acc
        with torch.no_grad():
            s_ours = m(torch.as_tensor(xt))["logits"][:, torch.as_tensor(unseen)].double().numpy()
            s_pm = mpm(torch.as_tensor(xt))["logits"][:, torch.as_tensor(unseen)].double().numpy()
        rep.check(f"{tag}: scores as shipped vs official x V S", s_ours, s_off, 1e-5 * np.abs(s_off).max())
        rep.check_true(f"{tag}: same unseen predictions as official", bool((s_ours.argmax(1) == s_off.argmax(1)).all()))
        rep.value(f"{tag}: share of unseen-class predictions that differ, ±1 (old default) vs one-hot",
                  float((s_pm.argmax(1) != s_off.argmax(1)).mean()))
    path = os.path.join(root, "ESZSL", "eszsl.py")
    table = read_validated(path)
    for ds, up in {"cub": "CUB", "sun": "SUN", "awa2": "AWA2"}.items():
        line, (a, g) = table[up]
        pre = ESZSL.presets[ds]["method"]
        rep.check_true(f"{ds}: preset (α, γ) = (10^{a}, 10^{g}) (ESZSL/eszsl.py:{line})",
                       pre["alpha"] == 10.0 ** int(a) and pre["gamma"] == 10.0 ** int(g))
    return rep.finish()


if __name__ == "__main__":
    sys.exit(main())
