"""Equivalence check: our MSDN (and MSDN++ with ``intervention: none``) against the official code.

Usage::

    git clone https://github.com/shiming-chen/MSDN /path/to/MSDN     # your own checkout
    PYTHONPATH=. python benchmarks/equivalence/msdn.py --official /path/to/MSDN

Builds the official ``core/MSDN.py`` model and ours per setting (CUB, SUN, AWA2, configured as
the official ``MSDN_{cub,sun,awa2}.py`` scripts do), in float64, on the same random region
features at the real class/attribute counts (R = 196, the 448-px 14x14 maps; F reduced unless
``--feature-dim 2048``), copies the weights across and compares: the attribute-scored logits of
both sub-nets, every loss term, the gradient of every loss term with respect to every parameter,
a ``--steps`` RMSprop trajectory (our optimizer from the harness's ``build_optimizer`` with our
preset, theirs as the script builds it) and the evaluation scores (the fusion weights are read
from the official ``core/helper_MSDN_*.py``). The official scripts' hyper-parameters are read
from their files and printed next to our presets.

The schedule is compared too, at each dataset's real number of training images: the steps of an
epoch (the official ``niters`` and ``report_interval`` lines evaluated, against the harness's
``steps_per_epoch`` under our preset) and the images per batch (the official loader's
``next_batch`` run on a stand-in object with the real class counts, against our sampler's
batches). What cannot be made equal is printed as a note: the batches themselves (the official
loaders draw with numpy's global stream) and the evaluation points (after step k·E + 1 there,
after step k·E here).
"""

from __future__ import annotations

import contextlib
import io
import re
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

SCRIPT = {"cub": "MSDN_cub.py", "sun": "MSDN_sun.py", "awa2": "MSDN_awa2.py"}
HELPER = {"cub": "core/helper_MSDN_CUB.py", "sun": "core/helper_MSDN_SUN.py", "awa2": "core/helper_MSDN_AWA2.py"}
REGIONS = 196  # 14 x 14
# our name -> official name
PARAMS = {"V": "V", "W1": "W_1", "W2": "W_2", "W11": "W_1_1", "W21": "W_2_1"}


def _line(text: str, pattern: str) -> tuple[str, int]:
    """First match of ``pattern`` (group 1) in a line that is not a comment, and its line number."""
    for no, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("#"):
            continue
        m = re.search(pattern, line)
        if m:
            return m.group(1).strip(), no
    raise SystemExit(f"error: pattern {pattern!r} not found in the official script; is this the MSDN repository?")


def official_settings(root: Path, ds: str) -> dict[str, tuple[object, str]]:
    """Hyper-parameters as the official script and helper set them: {key: (value, "file:line")}."""
    script, helper = SCRIPT[ds], HELPER[ds]
    text = (root / script).read_text()
    out: dict[str, tuple[object, str]] = {}
    for key, pat in (("lambda_", r"^lambda_\s*=\s*([^#\n]+)"), ("lr", r"^lr\s*=\s*([^#\n]+)"),
                     ("weight_decay", r"^weight_decay\s*=\s*([^#\n]+)"),
                     ("momentum", r"^momentum\s*=\s*([^#\n]+)"), ("batch_size", r"^batch_size\s*=\s*([^#\n]+)"),
                     ("nepoches", r"^nepoches\s*=\s*([^#\n]+)"),
                     ("w_distill", r"loss\s*=\s*loss\s*\+\s*([0-9.e-]+)\s*\*\s*constrastive"),
                     ("normalize_V", r"normalize_V\s*=\s*(True|False)")):
        value, no = _line(text, pat)
        out[key] = (eval(value, {}), f"{script}:{no}")  # literals only (numbers, True/False)
    value, no = _line(text, r"DataLoader\((.*)\)")
    balance = re.search(r"is_balance\s*=\s*(True|False)", value)
    # The loaders' default is is_balance=True (core/*DataLoader.py __init__).
    out["is_balance"] = (balance is None or balance.group(1) == "True", f"{script}:{no}")
    out["clip_att"] = ("att[att<0] = 0" in text or "att[att<0]=0" in text, script)
    htext = (root / helper).read_text()
    expr, no = _line(htext, r"^\s*output\s*=\s*(.*out_package1.*)$")
    w = {"1": 0.0, "2": 0.0}
    for coef, which in re.findall(r"(?:([0-9.]+)\s*\*\s*)?out_package([12])\['S_pp'\]", expr):
        w[which] = float(coef) if coef else 1.0
    out["w1"], out["w2"] = (w["1"], f"{helper}:{no}"), (w["2"], f"{helper}:{no}")
    return out


# Training images of the xlsa17 trainval split (what the official scripts train on), per dataset.
NTRAIN = {"cub": 7057, "sun": 10320, "awa2": 23527}
LOADER = {"cub": "CUBDataLoader", "sun": "SUNDataLoader", "awa2": "AWA2DataLoader"}


def _import_loader(root: Path, ds: str):
    """The official loader module; the file-reading libraries it imports at the top (never used
    by ``next_batch``) are stubbed when not installed, and the stubs removed afterwards."""
    import importlib
    import types

    needed = {"h5py": (), "pandas": (), "sklearn": ("preprocessing",), "scipy": ("io",)}
    stubbed = []
    for name, subs in needed.items():
        try:
            importlib.import_module(name)
            for sub in subs:
                importlib.import_module(f"{name}.{sub}")
        except ImportError:
            mod = types.ModuleType(name)
            sys.modules[name] = mod
            stubbed.append(name)
            for sub in subs:
                child = types.ModuleType(f"{name}.{sub}")
                setattr(mod, sub, child)
                sys.modules[f"{name}.{sub}"] = child
                stubbed.append(f"{name}.{sub}")
    try:
        return common.import_official(root, f"core.{LOADER[ds]}")
    finally:
        for name in stubbed:
            sys.modules.pop(name, None)


def official_schedule(root: Path, ds: str, settings: dict, n: int, num_seen: int) -> dict[str, tuple[int, str]]:
    """Steps per epoch, total steps and delivered batch size of the official script on ``n`` images.

    ``niters`` and ``report_interval`` are the script's own lines, evaluated; the batch size is
    what its loader's ``next_batch(batch_size)`` returns, run on a stand-in loader object that has
    ``num_seen`` classes over ``n`` images (numpy's and torch's global streams are saved and restored).
    """
    import types

    script = SCRIPT[ds]
    text = (root / script).read_text()
    batch_size, nepoches = int(settings["batch_size"][0]), int(settings["nepoches"][0])
    scope = {"dataloader": types.SimpleNamespace(ntrain=n), "batch_size": batch_size, "nepoches": nepoches}
    out: dict[str, tuple[int, str]] = {}
    for key in ("niters", "report_interval"):
        expr, no = _line(text, rf"^{key}\s*=\s*([^#\n]+)")
        scope[key] = int(eval(expr, {"__builtins__": {}}, scope))  # arithmetic on the names above only
        out[key] = (scope[key], f"{script}:{no}")
    module = _import_loader(root, ds)
    labels = np.arange(n) % num_seen
    fake = types.SimpleNamespace(
        is_balance=bool(settings["is_balance"][0]), ntrain=n, ntrain_class=num_seen, device="cpu",
        idxs_list=[np.flatnonzero(labels == c) for c in range(num_seen)],
        data={"train_seen": {"resnet_features": torch.zeros(n, 1), "labels": torch.from_numpy(labels)}},
        att=torch.zeros(num_seen, 1))
    state, torch_state = np.random.get_state(), torch.get_rng_state()
    try:
        got = getattr(module, LOADER[ds]).next_batch(fake, batch_size)
    finally:  # CUB's loader draws torch.randperm: both streams are left as they were
        np.random.set_state(state)
        torch.set_rng_state(torch_state)
    out["batch"] = (int(got[0].shape[0]), f"core/{LOADER[ds]}.py next_batch")
    return out


def _official(module, task, att, settings, args):
    return module.MSDN(args.feature_dim, task.w2v.shape[1], task.w2v, att, None,
                       torch.from_numpy(task.seen), torch.from_numpy(task.unseen),
                       float(settings["lambda_"][0]), True,
                       normalize_V=bool(settings["normalize_V"][0]), normalize_F=True,
                       is_conservative=True, uniform_att_1=False, uniform_att_2=False,
                       prob_prune=0, desired_mass=1, is_conv=False, is_bias=True).double()


def build(module, cls, cfg, task, official_settings_, args):
    """(ours, official) with official's weights copied into ours; zero-initialised weights scrambled."""
    from zsl_bench.contract import TaskInfo

    ds = task.dataset
    att = task.att.copy()
    if official_settings_["clip_att"][0]:
        att[att < 0] = 0  # as the official script does before building the model
    with contextlib.redirect_stdout(io.StringIO()):  # the official constructor prints its configuration
        official = _official(module, task, att, official_settings_, args)
    info = TaskInfo(dataset=ds, att=task.att.astype(np.float32), seen=task.seen, unseen=task.unseen,
                    feature_dim=args.feature_dim, regions=REGIONS, w2v=task.w2v.astype(np.float32))
    ours = cls(cfg, info).double()
    g = torch.Generator().manual_seed(args.seed + 1)
    with torch.no_grad():  # W_2, W_1_1, W_2_1 start at 0: move them so every branch carries signal
        for name in ("W_2", "W_1_1", "W_2_1"):
            getattr(official, name).normal_(0.0, 0.5, generator=g)
    return ours, official


def official_terms(official, x, y, w_distill, num_classes):
    x4 = x.view(x.shape[0], x.shape[1], 14, 14)
    p1, p2 = official(x4)
    onehot = torch.eye(num_classes, dtype=torch.float64)[y]
    p1["batch_label"], p2["batch_label"] = onehot, onehot
    o1, o2 = official.compute_loss(p1), official.compute_loss(p2)
    contrastive = official.compute_contrastive_loss(p1, p2)
    return {"s1": p1["S_pp"], "s2": p2["S_pp"], "ce": o1["loss_CE"] + o2["loss_CE"],
            "self_cal": o1["loss_cal"] + o2["loss_cal"], "distill": contrastive,
            "loss": o1["loss"] + o2["loss"] + w_distill * contrastive}


def our_terms(ours, x, y):
    out = ours(x)
    t = ours.loss(out, y)
    return {"s1": out["s1"], "s2": out["s2"], "ce": t["ce"], "self_cal": t["self_cal"],
            "distill": t["distill_l2"] + t["distill_js"], "loss": t["loss"]}


def check(ds: str, variant: str, module, root: Path, args) -> common.Report:
    import methods  # noqa: F401
    from methods.msdn import MSDN, MSDNConfig
    from methods.msdnpp import MSDNPP, MSDNPPConfig
    from zsl_bench.config import TrainConfig
    from zsl_bench.engine import build_optimizer

    rng = np.random.default_rng(args.seed)
    task = common.synthetic_task(ds, rng)
    off = official_settings(root, ds)
    preset = MSDN.presets[ds]
    if variant == "msdn":
        cls, cfg = MSDN, MSDNConfig(**preset["method"])
    else:
        cls, cfg = MSDNPP, MSDNPPConfig(**preset["method"], intervention="none")
    report = common.Report(f"{variant} {ds} (float64, B={args.batch}, F={args.feature_dim}, R={REGIONS}, "
                           f"{args.steps} steps)")

    # Hyper-parameters: ours (preset) against the official script, with where each was read.
    tr = preset["train"]
    pairs = [("lambda_cal", cfg.lambda_cal, "lambda_"), ("w_distill", cfg.w_distill, "w_distill"),
             ("w1", cfg.w1, "w1"), ("w2", cfg.w2, "w2"), ("normalize_v", cfg.normalize_v, "normalize_V"),
             ("clip_negative_att", cfg.clip_negative_att, "clip_att"), ("lr", tr["lr"], "lr"),
             ("weight_decay", tr["weight_decay"], "weight_decay"), ("momentum", tr["momentum"], "momentum"),
             ("epochs", tr["epochs"], "nepoches"), ("batch_size", tr["batch_size"], "batch_size"),
             ("sampler", tr["sampler"], "is_balance")]
    for ours_key, ours_val, off_key in pairs:
        off_val, where = off[off_key]
        if off_key == "is_balance":
            off_val = "class_balanced" if off_val else "uniform"
        same = ours_val == off_val if isinstance(ours_val, (bool, str)) else float(ours_val) == float(off_val)
        report.note(f"preset {ours_key}: ours {ours_val}, official {off_val} ({where})"
                    + ("" if same else "  <- DIFFERENT (documented in docs/FIDELITY.md)"))

    # Schedule at the real training-set size: steps per epoch and images per step.
    from zsl_bench.engine import steps_per_epoch, trainer_batches

    n = NTRAIN[ds]
    sched = official_schedule(root, ds, off, n, len(task.seen))
    tcfg = TrainConfig(**tr)
    ours_steps = steps_per_epoch(n, tcfg.batch_size, tcfg.epoch_batch_size) or -(-n // tcfg.batch_size)
    ours_batches = trainer_batches(tcfg, np.arange(n) % len(task.seen), np.random.default_rng(args.seed))
    sizes = sorted({len(b) for b in ours_batches})
    report.compare(f"steps per epoch, n={n} (ours {ours_steps}, official report_interval "
                   f"{sched['report_interval'][0]}, {sched['report_interval'][1]})",
                   torch.tensor(float(ours_steps)), torch.tensor(float(sched["report_interval"][0])), tol=0.0)
    report.compare(f"sampler batches per epoch = steps per epoch ({len(ours_batches)})",
                   torch.tensor(float(len(ours_batches))), torch.tensor(float(ours_steps)), tol=0.0)
    report.compare(f"images per step (ours {sizes}, official {sched['batch'][0]} from {sched['batch'][1]})",
                   torch.tensor([float(v) for v in sizes]), torch.tensor([float(sched["batch"][0])] * len(sizes)),
                   tol=0.0)
    epochs = int(tr["epochs"])
    report.note(f"schedule: official {sched['niters'][0]} steps ({sched['niters'][1]}), evaluated after steps "
                f"k*{sched['report_interval'][0]}+1 for k = 0..{(sched['niters'][0] - 1) // sched['report_interval'][0]}; "
                f"ours {epochs} epochs of {ours_steps} steps ({epochs * ours_steps}), evaluated after steps "
                f"k*{ours_steps} for k = 1..{epochs} (one step earlier; the official's step-1 evaluation and its "
                f"{sched['niters'][0] - epochs * sched['report_interval'][0]} steps after the last full epoch are "
                "not run)")

    ours, official = build(module, cls, cfg, task, off, args)
    # Class semantics: ours normalises in float32 (the buffer's dtype), the official in the input's.
    report.compare("att buffer (float32 normalisation)", ours.att, official.att, tol=1e-6)
    with torch.no_grad():
        ours.att.copy_(official.att)
    common.copy_params(ours, official, PARAMS)
    report.compare("margin (+1 unseen, -1 seen)", ours.margin, (official.mask_bias * official.bias)[0])

    data = common.batches(args.steps, args.batch, task, args.feature_dim, REGIONS, rng)
    x, y = data[0]
    ot, tt = our_terms(ours, x, y), official_terms(official, x, y, cfg.w_distill, task.num_classes)
    for key in ("s1", "s2", "ce", "self_cal", "distill", "loss"):
        report.compare(f"forward {key}", ot[key], tt[key])
    for key in ("ce", "self_cal", "distill", "loss"):
        common.compare_grads(report, key, ot[key], tt[key], ours, official, PARAMS)

    # Trajectory: same batches, our optimizer from the harness, theirs as MSDN_<ds>.py builds it.
    opt_ours = build_optimizer([p for p in ours.parameters() if p.requires_grad], TrainConfig(**tr))
    opt_off = torch.optim.RMSprop([p for p in official.parameters() if p.requires_grad],
                                  lr=float(off["lr"][0]), weight_decay=float(off["weight_decay"][0]),
                                  momentum=float(off["momentum"][0]))
    w_off = float(off["w_distill"][0])
    loss_ours, loss_off = common.trajectory(
        [(ours, opt_ours, lambda xb, yb: our_terms(ours, xb, yb)["loss"]),
         (official, opt_off, lambda xb, yb: official_terms(official, xb, yb, w_off, task.num_classes)["loss"])],
        data)
    report.compare(f"trajectory loss, {args.steps} steps", loss_ours, loss_off)
    off_named = dict(official.named_parameters())
    for n, p in ours.named_parameters():
        if p.requires_grad:
            report.compare(f"trajectory final {n}", p, off_named[PARAMS[n]], tol=1e-9)

    # Evaluation scores (GZSL prediction with the built-in margin) after training.
    ours.eval()
    official.eval()
    xe = data[-1][0]
    with torch.no_grad():
        p1, p2 = official(xe.view(xe.shape[0], xe.shape[1], 14, 14))
        s_off = float(off["w1"][0]) * p1["S_pp"] + float(off["w2"][0]) * p2["S_pp"]
        report.compare("eval scores (fusion weights from the helper)", ours.scores(xe), s_off, tol=1e-9)
    report.note("not compared: the batches themselves (the official loaders draw indices from numpy's "
                "global stream; CUB's takes an independent randperm(n)[:50] each step, ours cuts an epoch's "
                "permutation); the same batches are fed to both here")
    return report


def main(argv: list[str] | None = None) -> int:
    p = common.parser(__doc__.split("\n")[0])
    p.add_argument("--variants", default="msdn,msdnpp-none",
                   help="msdn and/or msdnpp-none (MSDN++ with intervention none), comma-separated")
    args = p.parse_args(argv)
    datasets = common.parse_datasets(args.datasets, tuple(SCRIPT))
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    if not variants or any(v not in ("msdn", "msdnpp-none") for v in variants):
        raise SystemExit(f"error: --variants {args.variants!r}: valid are msdn, msdnpp-none")
    root = common.check_official_dir(args.official, "core/MSDN.py")
    torch.set_default_dtype(torch.float64)
    warnings.filterwarnings("ignore", category=UserWarning, message="Implicit dimension choice")
    module = common.import_official(root, "core.MSDN", stubs=("tensorflow",))
    reports = []
    for ds in datasets:
        for v in variants:
            rep = check(ds, v, module, root, args)
            rep.print()
            reports.append(rep)
    return common.finish(reports)


if __name__ == "__main__":
    sys.exit(main())
