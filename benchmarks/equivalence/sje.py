"""Equivalence check: SJE and DeViSE (methods/sje.py, methods/devise.py) against mvp18/Popular-ZSL-Algorithms.

Neither has official code; mvp18's ``SJE/sje.py`` and ``DeViSE/devise.py`` are the common numpy
re-implementations. Both make one update per image, ``W += lr · x (φ_y − φ_k)`` for one class k:
SJE the most violating class (after standardising xW, sje.py:108-121), DeViSE the first violating
class in class order (devise.py:110-126). Compared in float64 per image, same W: the official update
against −lr · our gradient on that image, exactly where both pick the same classes (SJE with the
standardisation replaced by the identity; DeViSE on images with one violator), and the difference is
measured where they do not (standardisation; our DeViSE sums every violator).

    python benchmarks/equivalence/sje.py --official /path/to/Popular-ZSL-Algorithms
"""

from __future__ import annotations

import os
import sys
import types

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from _e2_common import Mvp18Stub, Report, load_file, official_dir, parser, random_features, random_task  # noqa: E402


def our_step(m: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, lr: float) -> np.ndarray:
    m.zero_grad()
    m.loss(m(x), y)["loss"].backward()
    return -lr * m.W.grad.double().numpy()


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__.splitlines()[0], "mvp18/Popular-ZSL-Algorithms, containing SJE/sje.py and DeViSE/devise.py")
    p.add_argument("--feat-dim", type=int, default=512)
    p.add_argument("--images", type=int, default=32)
    args = p.parse_args(argv)
    root = official_dir(args.official, "SJE/sje.py")
    off_sje = load_file(os.path.join(root, "SJE", "sje.py"), "official_sje")
    off_dev = load_file(os.path.join(root, "DeViSE", "devise.py"), "official_devise")
    from methods.devise import DeViSE, DeViSEConfig
    from methods.sje import SJE, SJEConfig

    task = random_task(args.seed, n_classes=50, n_seen=40, n_att=85, n_feat=args.feat_dim)
    x, y = random_features(args.seed, task, n=args.images)
    seen = task.seen
    yl = np.searchsorted(seen, y)
    sig = np.asarray(task.att, np.float64)[seen].T
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    rng = np.random.default_rng(args.seed + 5)
    M = xn.T @ (sig[:, yl].T - sig.mean(1))
    W = rng.random((args.feat_dim, sig.shape[0])) * 0.01 + 2 * M / np.abs(M).max()
    rep = Report(f"SJE / DeViSE vs mvp18 SJE/sje.py, DeViSE/devise.py, F={args.feat_dim}")
    train_classes = np.arange(len(seen))
    for name, off, cls, cfg, margin, lr in (
            ("SJE", off_sje, SJE, SJEConfig(margin=2.5), 2.5, 1.0),  # AWA2 (L2, 1.0, 2.5), sje.py:24-28
            ("DeViSE", off_dev, DeViSE, DeViSEConfig(margin=1.0), 1.0, 1.0)):  # CUB (L2, 1.0, 1.0)
        stub = Mvp18Stub(getattr(off, name), xn, yl, sig, lr=lr, margin=margin)
        m = cls(cfg, task)
        with torch.no_grad():
            m.W.copy_(torch.as_tensor(W))
        m = m.double()
        same, diff_ours, diff_off, n_picked = [], [], [], 0
        for j in range(args.images):
            xj = torch.as_tensor(x[j:j + 1])
            ours = our_step(m, xj, torch.as_tensor(y[j:j + 1]), lr)
            if name == "SJE":
                off.preprocessing = types.SimpleNamespace(scale=lambda v: v)  # no standardisation
                upd_id = stub.update_W(W.copy(), [j]) - W
                import sklearn.preprocessing as skp
                off.preprocessing = skp
                upd = stub.update_W(W.copy(), [j]) - W
                same.append((ours, upd_id))
            else:
                upd = stub.update_W(W.copy(), [j], train_classes) - W
                s = xn[j] @ W @ sig
                r = int((margin + s - s[yl[j]] > 0).sum() - 1)
                if r == 1:
                    same.append((ours, upd))
                n_picked += r
            diff_ours.append(ours)
            diff_off.append(upd)
        for k, (o, u) in enumerate(same):
            rep.check(f"{name} image {k}: −lr·∇(our loss) vs official update ({'no standardisation' if name == 'SJE' else 'one violator'})",
                      o, u, 1e-10 * max(1.0, np.abs(u).max()))
        rep.measure(f"{name}: −lr·∇(our loss) vs official update over {args.images} images, as shipped",
                    np.stack(diff_ours), np.stack(diff_off))
        if name == "DeViSE":
            rep.value("DeViSE: mean violators per image (ours sums them, official takes the first)", n_picked / args.images)
    return rep.finish()


if __name__ == "__main__":
    sys.exit(main())
