"""Equivalence check: our DAZLE against the official code (github.com/hbdat/cvpr20_DAZLE).

Usage::

    git clone https://github.com/hbdat/cvpr20_DAZLE /path/to/cvpr20_DAZLE     # your own checkout
    PYTHONPATH=. python benchmarks/equivalence/dazle.py --official /path/to/cvpr20_DAZLE

Builds the official ``core/DAZLE.py`` model and ours per setting, configured as the official
notebooks (``notebook/DAZLE_{CUB,SUN,AWA2}.ipynb``) do, in float64, on the same random region
features at the real class/attribute counts (R = 49, the 224-px 7x7 maps DAZLE used; F reduced
unless ``--feature-dim 2048``), copies the weights across and compares the logits, each loss term,
the gradient of each term with respect to every parameter, a ``--steps`` RMSprop trajectory (ours
from the harness's ``build_optimizer`` with our preset, theirs as the notebook builds it) and the
evaluation scores (``S_pp``, core/helper_func.py). The notebooks' hyper-parameters are read from
the files and printed next to our presets.

On AWA2 both clip negative class semantics at 0 (the notebook's ``att[att<0] = 0``; ours
``clip_negative_att``). Protocol ``val``: ours restricts CE and self-calibration to the phase's
classes; the check builds ours on a validation-shaped phase (a fifth of the seen classes held out,
the test classes outside the phase) and the official model on the phase's classes only, and
compares logits, loss terms and gradients.
Not compared: batch sampling (numpy's global stream in the official loaders) and the schedule;
the batch each loader yields per step is compared in words (images, distinct classes).
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

NOTEBOOK = {"cub": "notebook/DAZLE_CUB.ipynb", "sun": "notebook/DAZLE_SUN.ipynb", "awa2": "notebook/DAZLE_AWA2.ipynb"}
REGIONS = 49  # 7 x 7
PARAMS = {"V": "V", "W1": "W_1", "W2": "W_2", "W3": "W_3"}


def official_settings(root: Path, ds: str) -> dict[str, tuple[object, str]]:
    """Hyper-parameters as the notebook sets them: {key: (value, "notebook cell N line L")}."""
    nb = json.loads((root / NOTEBOOK[ds]).read_text())
    lines = []
    for ci, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "code":
            for li, line in enumerate("".join(cell["source"]).split("\n"), 1):
                lines.append((f"{NOTEBOOK[ds]} cell {ci} line {li}", line))

    def find(pattern: str) -> tuple[str, str] | None:
        for where, line in lines:
            if line.lstrip().startswith("#"):
                continue
            m = re.search(pattern, line)
            if m:
                return m.group(1).strip(), where
        return None

    out: dict[str, tuple[object, str]] = {}
    for key, pat in (("lambda_", r"^lambda_\s*=\s*([^#\n]+)"), ("lr", r"^lr\s*=\s*([^#\n]+)"),
                     ("weight_decay", r"^weight_decay\s*=\s*([^#\n]+)"),
                     ("momentum", r"^momentum\s*=\s*([^#\n]+)"), ("batch_size", r"^batch_size\s*=\s*([^#\n]+)"),
                     ("nepoches", r"^nepoches\s*=\s*([^#\n]+)"), ("uniform_att_2", r"^uniform_att_2\s*=\s*([^#\n]+)"),
                     ("normalize_V", r"normalize_V\s*=\s*(True|False)")):
        found = find(pat)
        if found is None:
            raise SystemExit(f"error: {NOTEBOOK[ds]}: {key} not found; is this the DAZLE repository?")
        out[key] = (eval(found[0], {}), found[1])  # literals only
    loader = find(r"(\w+DataLoader\(.*\))")
    balance = re.search(r"is_balance\s*=\s*(True|False)", loader[0]) if loader else None
    # The loaders default to is_balance=True (core/{SUN,AWA2}DataLoader.py __init__).
    out["is_balance"] = (balance is None or balance.group(1) == "True", loader[1] if loader else "?")
    clip = find(r"^(att\[att\s*<\s*0\]\s*=\s*0)")
    out["clip_att"] = (clip is not None, clip[1] if clip else NOTEBOOK[ds])
    return out


def our_terms(ours, x, y):
    out = ours(x)
    t = ours.loss(out, y)
    return {"logits": out["logits"], "ce": t["ce"], "self_cal": t["self_cal"], "loss": t["loss"]}


def official_terms(official, x, y, num_classes):
    p = official(x.view(x.shape[0], x.shape[1], 7, 7))
    p["batch_label"] = torch.eye(num_classes, dtype=torch.float64)[y]
    o = official.compute_loss(p)
    return {"logits": p["S_pp"], "ce": o["loss_CE"], "self_cal": o["loss_cal"], "loss": o["loss"]}


def check(ds: str, module, root: Path, args) -> common.Report:
    import methods  # noqa: F401
    from methods.dazle import DAZLE, DAZLEConfig
    from zsl_bench.config import TrainConfig
    from zsl_bench.contract import TaskInfo
    from zsl_bench.engine import build_optimizer

    rng = np.random.default_rng(args.seed)
    task = common.synthetic_task(ds, rng)
    off = official_settings(root, ds)
    preset = DAZLE.presets[ds]
    cfg = DAZLEConfig(**preset["method"])
    tr = preset["train"]
    report = common.Report(f"dazle {ds} (float64, B={args.batch}, F={args.feature_dim}, R={REGIONS}, "
                           f"{args.steps} steps)")
    pairs = [("lambda_sc", cfg.lambda_sc, "lambda_"), ("attribute_gate", cfg.attribute_gate, "uniform_att_2"),
             ("normalize_v", cfg.normalize_v, "normalize_V"), ("clip_negative_att", cfg.clip_negative_att, "clip_att"),
             ("lr", tr["lr"], "lr"), ("weight_decay", tr["weight_decay"], "weight_decay"),
             ("momentum", tr["momentum"], "momentum"), ("epochs", tr["epochs"], "nepoches"),
             ("sampler", tr.get("sampler", "uniform"), "is_balance")]
    for ours_key, ours_val, off_key in pairs:
        off_val, where = off[off_key]
        if off_key == "is_balance":
            off_val = "class_balanced" if off_val else "uniform"
        if off_key == "uniform_att_2":
            off_val = not off_val
        same = ours_val == off_val if isinstance(ours_val, (bool, str)) else float(ours_val) == float(off_val)
        report.note(f"preset {ours_key}: ours {ours_val}, official {off_val} ({where})"
                    + ("" if same else "  <- DIFFERENT (documented in docs/FIDELITY.md)"))
    common.note_batch_and_epoch(report, tr, off, len(task.seen))

    att_off = task.att.copy()
    if off["clip_att"][0]:
        att_off[att_off < 0] = 0
    def official_model(att, seen, unseen):
        with contextlib.redirect_stdout(io.StringIO()):  # the official constructor prints its configuration
            return module.DAZLE(args.feature_dim, task.w2v.shape[1], task.w2v, att, None,
                                torch.from_numpy(seen), torch.from_numpy(unseen),
                                float(off["lambda_"][0]), True, normalize_V=bool(off["normalize_V"][0]),
                                normalize_F=True, is_conservative=True, uniform_att_1=False,
                                uniform_att_2=bool(off["uniform_att_2"][0]), prob_prune=0, desired_mass=1,
                                is_conv=False, is_bias=True).double()

    official = official_model(att_off, task.seen, task.unseen)
    info = TaskInfo(dataset=ds, att=task.att.astype(np.float32), seen=task.seen, unseen=task.unseen,
                    feature_dim=args.feature_dim, regions=REGIONS, w2v=task.w2v.astype(np.float32))
    ours = DAZLE(cfg, info).double()
    g = torch.Generator().manual_seed(args.seed + 1)
    with torch.no_grad():  # W_2 and W_3 start at 0: move them so the attention and the gate carry signal
        for name in ("W_2", "W_3"):
            getattr(official, name).normal_(0.0, 0.5, generator=g)
    common.copy_params(ours, official, PARAMS)
    data = common.batches(args.steps, args.batch, task, args.feature_dim, REGIONS, rng)
    x, y = data[0]
    if off["clip_att"][0]:
        report.note(f"{int((task.att < 0).sum())} of {task.att.size} synthetic semantics are negative; "
                    "both clip them (the att buffer row)")
    report.compare("att buffer (float32 normalisation)", ours.att, official.att, tol=1e-6)
    with torch.no_grad():
        ours.att.copy_(official.att)
    report.compare("margin (+1 unseen, -1 seen)", ours.vec_bias, (official.mask_bias * official.bias)[0])

    ot, tt = our_terms(ours, x, y), official_terms(official, x, y, task.num_classes)
    for key in ("logits", "ce", "self_cal", "loss"):
        report.compare(f"forward {key}", ot[key], tt[key])
    for key in ("ce", "self_cal", "loss"):
        common.compare_grads(report, key, ot[key], tt[key], ours, official, PARAMS)

    # Protocol val: ours on a validation-shaped phase (losses over its classes) vs the official
    # model built on the phase's classes only, with the same weights.
    seen_p, unseen_p, phase = common.val_phase(task)
    local = {int(c): i for i, c in enumerate(phase)}
    official_p = official_model(att_off[phase], np.array([local[c] for c in seen_p]),
                                np.array([local[c] for c in unseen_p]))
    ours_p = DAZLE(cfg, replace(info, seen=seen_p, unseen=unseen_p)).double()
    common.copy_params(official_p, official, {v: v for v in PARAMS.values()})
    common.copy_params(ours_p, ours, {k: k for k in PARAMS})
    with torch.no_grad():
        ours_p.att.copy_(ours.att)
    yp = torch.from_numpy(rng.choice(seen_p, size=args.batch))
    yp_local = torch.tensor([local[int(c)] for c in yp])
    op, tp = our_terms(ours_p, x, yp), official_terms(official_p, x, yp_local, len(phase))
    report.compare(f"val phase ({len(seen_p)} seen + {len(unseen_p)} val classes of {task.num_classes}): "
                   "logits on the phase's classes", op["logits"][:, torch.from_numpy(phase)], tp["logits"])
    for key in ("ce", "self_cal", "loss"):
        report.compare(f"val phase {key} (official on the phase's classes)", op[key], tp[key])
    common.compare_grads(report, "loss (val phase)", op["loss"], tp["loss"], ours_p, official_p, PARAMS)
    ce_all = torch.nn.functional.cross_entropy(op["logits"] - ours_p.vec_bias, yp)
    report.measure("val phase: CE over the phase's classes vs over all K (the former code)", op["ce"], ce_all)

    opt_ours = build_optimizer([p for p in ours.parameters() if p.requires_grad], TrainConfig(**tr))
    opt_off = torch.optim.RMSprop([p for p in official.parameters() if p.requires_grad],
                                  lr=float(off["lr"][0]), weight_decay=float(off["weight_decay"][0]),
                                  momentum=float(off["momentum"][0]))
    l_ours, l_off = common.trajectory(
        [(ours, opt_ours, lambda xb, yb: our_terms(ours, xb, yb)["loss"]),
         (official, opt_off, lambda xb, yb: official_terms(official, xb, yb, task.num_classes)["loss"])], data)
    report.compare(f"trajectory loss, {args.steps} steps", l_ours, l_off)
    off_named = dict(official.named_parameters())
    for n, p in ours.named_parameters():
        if p.requires_grad:
            report.compare(f"trajectory final {n}", p, off_named[PARAMS[n]], tol=1e-9)
    ours.eval()
    official.eval()
    xe = data[-1][0]
    with torch.no_grad():
        report.compare("eval scores (S_pp, core/helper_func.py)", ours.scores(xe),
                       official(xe.view(xe.shape[0], xe.shape[1], 7, 7))["S_pp"], tol=1e-9)
    report.note("not compared: batch sampling (numpy's global stream in the official loaders) and the "
                "schedule; the same batches are fed to both here")
    return report


def main(argv: list[str] | None = None) -> int:
    args = common.parser(__doc__.split("\n")[0]).parse_args(argv)
    datasets = common.parse_datasets(args.datasets, tuple(NOTEBOOK))
    root = common.check_official_dir(args.official, "core/DAZLE.py")
    torch.set_default_dtype(torch.float64)
    module = common.import_official(root, "core.DAZLE")
    reports = []
    for ds in datasets:
        rep = check(ds, module, root, args)
        rep.print()
        reports.append(rep)
    return common.finish(reports)


if __name__ == "__main__":
    sys.exit(main())
