"""Equivalence check: SJE and DeViSE (methods/sje.py, methods/devise.py) against mvp18/Popular-ZSL-Algorithms.

Neither has official code; mvp18's ``SJE/sje.py`` and ``DeViSE/devise.py`` are the common numpy
re-implementations whose validated hyper-parameters our presets copy. Both make one update per image,
``W += lr · x (φ_y − φ_k)`` for one class k: SJE the most violating class after standardising xW
(sje.py:108-133), DeViSE the first violating class in class order (devise.py:110-126). Ours takes
one SGD step per image (``train.batch_size: 1``) on a loss whose gradient is that update.

Compared in float64, same W, same images:
- per image: the official update against −lr · the gradient of our loss on that image (SJE with
  and without the standardisation; DeViSE on every image, however many classes violate);
- a trajectory: ``--epochs`` passes over the images in the same shuffled order, official
  ``update_W`` against torch SGD (batch 1) on our loss; the final W;
- the presets (margin, lr, normalisation, batch 1, epochs, early stopping) against the values read
  from the official files (validated table, argparse defaults), each with its line.
mvp18's ``std`` normalisation (SJE CUB/SUN, DeViSE AWA2: ``StandardScaler().fit(X_train)``, then
every split transformed) is ``method.standardize_input``: the per-image and trajectory checks run it
too (SJE with CUB's setting, DeViSE with AWA2's), ours fitting its scaler through
``observe_training_features`` on the raw images, the official code reading images standardised by
sklearn's StandardScaler (what its ``__init__`` calls; the ``__init__`` itself reads .mat files).

    python benchmarks/equivalence/sje.py --official /path/to/Popular-ZSL-Algorithms
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


def our_step(m: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, lr: float) -> np.ndarray:
    m.zero_grad()
    m.loss(m(x), y)["loss"].backward()
    return -lr * m.W.grad.double().numpy()


def check_presets(rep: Report, name: str, path: str, cls: type) -> None:
    """Our presets against mvp18's validated (norm, lr, margin) and its schedule defaults."""
    table = read_validated(path)
    rel = os.path.relpath(path, os.path.dirname(os.path.dirname(path)))
    for key, (flag, attr) in {"epochs": ("epochs", None), "early_stop": ("early_stop", "early_stop")}.items():
        line, default = read_arg_default(path, flag)
        for ds in DATASETS:
            ours = cls.presets[ds]["train"]["epochs"] if attr is None else getattr(cls, attr)
            rep.check_true(f"{name} {ds}: {key} {ours} = official default {default} ({rel}:{line})", ours == int(default))
    for ds, up in DATASETS.items():
        line, (norm, lr, margin) = table[up]
        pre = cls.presets[ds]
        rep.check_true(f"{name} {ds}: batch 1 (one update per image, {rel} update_W)", pre["train"]["batch_size"] == 1)
        cfg = cls.config_cls(**pre["method"])
        ours_norm = "std" if cfg.standardize_input else "L2" if cfg.normalize_input else "None"
        rep.check_true(f"{name} {ds}: (norm, lr, margin) = ({norm}, {lr}, {margin}) = preset ({rel}:{line})",
                       norm == ours_norm and float(lr) == pre["train"]["lr"] and float(margin) == pre["method"]["margin"])


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__.splitlines()[0], "mvp18/Popular-ZSL-Algorithms, containing SJE/sje.py and DeViSE/devise.py")
    p.add_argument("--feat-dim", type=int, default=512)
    p.add_argument("--images", type=int, default=32)
    p.add_argument("--epochs", type=int, default=3, help="trajectory length in passes over the images")
    args = p.parse_args(argv)
    root = official_dir(args.official, "SJE/sje.py")
    off_sje = load_file(os.path.join(root, "SJE", "sje.py"), "official_sje")
    off_dev = load_file(os.path.join(root, "DeViSE", "devise.py"), "official_devise")
    from methods.devise import DeViSE, DeViSEConfig, input_norm
    from methods.sje import SJE, SJEConfig

    task = random_task(args.seed, n_classes=50, n_seen=40, n_att=85, n_feat=args.feat_dim)
    x, y = random_features(args.seed, task, n=args.images)
    seen = task.seen
    yl = np.searchsorted(seen, y)
    sig = np.asarray(task.att, np.float64)[seen].T
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    rng = np.random.default_rng(args.seed + 5)
    M = xn.T @ (sig[:, yl].T - sig.mean(1))
    W_l2 = rng.random((args.feat_dim, sig.shape[0])) * 0.01 + 2 * M / np.abs(M).max()
    rep = Report(f"SJE / DeViSE vs mvp18 SJE/sje.py, DeViSE/devise.py, F={args.feat_dim}")
    train_classes = np.arange(len(seen))
    import sklearn.preprocessing as skp
    order = [rng.permutation(args.images) for _ in range(args.epochs)]
    xs = skp.StandardScaler().fit(x).transform(x)  # mvp18's -norm std (sje.py:87-94, devise.py:87-94)
    std_cfg = input_norm("std")
    W_std = rng.random((args.feat_dim, sig.shape[0])) * 0.01 + 2 * (xs.T @ (sig[:, yl].T - sig.mean(1))) / 50
    for label, name, off, cls, cfg, margin, lr in (
            ("SJE", "SJE", off_sje, SJE, SJEConfig(margin=2.5), 2.5, 1.0),  # AWA2 (L2, 1.0, 2.5), sje.py:26
            ("SJE std", "SJE", off_sje, SJE, SJEConfig(margin=4.0, **std_cfg), 4.0, 0.1),  # CUB (std, 0.1, 4.0)
            ("DeViSE", "DeViSE", off_dev, DeViSE, DeViSEConfig(margin=1.0), 1.0, 1.0),  # CUB (L2, 1.0, 1.0)
            ("DeViSE std", "DeViSE", off_dev, DeViSE, DeViSEConfig(margin=150.0, **std_cfg), 150.0, 0.001)):  # AWA2
        std = cfg.standardize_input
        W = W_std if std else W_l2
        stub = Mvp18Stub(getattr(off, name), xs if std else xn, yl, sig, lr=lr, margin=margin)
        if std:  # our scaler, fitted by the engine's hook, against sklearn's
            m = cls(cfg, task).double()
            m.observe_training_features(torch.as_tensor(x))
            rep.check(f"{label}: our standardised features vs sklearn StandardScaler", m.prepare_input(
                torch.as_tensor(x)), xs, 1e-12 * max(1.0, np.abs(xs).max()))

        def build(cls: type = cls, cfg: object = cfg, std: bool = std, W: np.ndarray = W) -> torch.nn.Module:
            m = cls(cfg, task).double()
            if std:
                m.observe_training_features(torch.as_tensor(x))
            with torch.no_grad():
                m.W.copy_(torch.as_tensor(W))
            return m


        def official(Wc: np.ndarray, idx: list[int], off: types.ModuleType = off, name: str = name,
                     stub: Mvp18Stub = stub) -> np.ndarray:
            if name == "SJE":
                return stub.update_W(Wc, idx)
            return stub.update_W(Wc, idx, train_classes)

        m = build()
        feats = xs if std else xn
        n_viol, n_step = 0, 0
        for j in range(args.images):
            xj = torch.as_tensor(x[j:j + 1])
            ours = our_step(m, xj, torch.as_tensor(y[j:j + 1]), lr)
            upd = official(W.copy(), [j]) - W
            rep.check(f"{label} image {j}: −lr·∇(our loss) vs official update", ours, upd, 1e-10 * max(1.0, np.abs(upd).max()))
            n_step += int(np.abs(upd).max() > 0)
            if label == "SJE":  # the standardisation of xW switched off on both sides
                off.preprocessing = types.SimpleNamespace(scale=lambda v: v)
                upd_id = official(W.copy(), [j]) - W
                off.preprocessing = skp
                mi = cls(SJEConfig(margin=margin, standardize=False), task).double()
                with torch.no_grad():
                    mi.W.copy_(torch.as_tensor(W))
                rep.check(f"SJE image {j}, no standardisation on either side: −lr·∇ vs official",
                          our_step(mi, xj, torch.as_tensor(y[j:j + 1]), lr), upd_id, 1e-10 * max(1.0, np.abs(upd_id).max()))
                mi = None
                s = xn[j] @ W @ sig
                upd_std = upd
                rep.value(f"SJE image {j}: |update with standardisation − without| (the fixed difference)",
                          float(np.abs(upd_std - upd_id).max()))
            elif name == "DeViSE":
                s = feats[j] @ W @ sig
                n_viol += int((margin + s - s[yl[j]] > 0).sum() - 1)
        rep.value(f"{label}: images (of {args.images}) with a step", n_step)
        if name == "DeViSE":
            rep.value(f"{label}: mean margin violators per image (both step on the first only)", n_viol / args.images)
        # trajectory: the same passes, official update_W against SGD with batch 1 on our loss
        W_off = W.copy()
        for idx in order:
            W_off = official(W_off, list(idx))
        m = build()
        opt = torch.optim.SGD([m.W], lr=lr, momentum=0.0)
        for idx in order:
            for j in idx:
                opt.zero_grad()
                m.loss(m(torch.as_tensor(x[j:j + 1])), torch.as_tensor(y[j:j + 1]))["loss"].backward()
                opt.step()
        rep.check(f"{label}: W after {args.epochs} per-image SGD passes over {args.images} images vs official update_W",
                  m.W, W_off, 1e-9 * max(1.0, np.abs(W_off).max()))
        if not std:
            check_presets(rep, name, os.path.join(root, name, f"{name.lower()}.py"), cls)
    return rep.finish()


if __name__ == "__main__":
    sys.exit(main())
