"""Equivalence check: our TransZero against the official code (github.com/shiming-chen/TransZero).

Usage::

    git clone https://github.com/shiming-chen/TransZero /path/to/TransZero     # your own checkout
    PYTHONPATH=. python benchmarks/equivalence/transzero.py --official /path/to/TransZero

Builds the official ``model.py`` TransZero and ours per setting, configured from the official
``wandb_config/<ds>_gzsl.yaml`` (the file ``train_<ds>.py`` loads), in float64, on the same random
region features at the real class/attribute counts and the official input size (F = 2048 and
R = 196 are hard-coded in the official ``Transformer``/``BoxRelationalEmbedding``), copies every
weight across (the geometry embedding's x/y channels are swapped between the two, so ``geo``'s
input columns are permuted) and compares the geometry embedding, the logits, each loss term, the
gradient of each term with respect to every parameter, a ``--steps`` trajectory with the official
script's optimizer and the evaluation scores.

The official code's hard-coded ``.cuda()`` calls are redirected to the CPU at runtime, and its
decoder layer is called without the ``*_is_causal`` flags newer torch passes (runtime wrapper).
The official model runs as published otherwise (both LayerNorms of its encoder layer included).

- Dropout: the streams differ, so the equality rows run with dropout 0 in both (the official
  encoder attention's dropout, a hard-coded 0.1, is set to 0 at runtime as well). The rates are
  compared instead: each dropout of an official layer built from the yaml against ours.
- Protocol ``val``: ours restricts CE and self-calibration to the phase's classes. The check
  builds ours on a validation-shaped phase of the same task (a fifth of the seen classes held
  out, the test classes outside the phase) and the official model on the phase's classes only,
  and compares logits, loss terms and gradients.
"""

from __future__ import annotations

import re
import sys
import types
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

TRAIN = {"cub": "train_cub.py", "sun": "train_sun.py", "awa2": "train_awa2.py"}
REGIONS, FEATURE_DIM = 196, 2048


def official_settings(root: Path, ds: str) -> dict[str, tuple[object, str]]:
    """Values from train_<ds>.py and the yaml it loads: {key: (value, "file:line")}."""
    script = TRAIN[ds]
    text = (root / script).read_text()
    out: dict[str, tuple[object, str]] = {}
    cfg_file = None
    for no, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("#"):
            continue
        m = re.search(r"config=['\"]([^'\"]+)['\"]", line)
        if m and cfg_file is None:
            cfg_file = m.group(1)
        m = re.search(r"optim\.(\w+)\((.*)\)", line)
        if m:
            kw = dict(re.findall(r"(\w+)\s*=\s*([0-9.e-]+)", m.group(2)))
            out["optimizer"] = (m.group(1).lower(), f"{script}:{no}")
            out["lr"] = (float(kw["lr"]), f"{script}:{no}")
            out["weight_decay"] = (float(kw.get("weight_decay", 0)), f"{script}:{no}")
            out["momentum"] = (float(kw.get("momentum", 0)), f"{script}:{no}")
        m = re.search(r"(\w+DataLoader\(.*\))", line)
        if m:
            b = re.search(r"is_balance\s*=\s*(True|False)", m.group(1))
            # the loaders default to is_balance=True (dataset.py __init__)
            out["is_balance"] = (b is None or b.group(1) == "True", f"{script}:{no}")
        if re.match(r"\s*att\[att\s*<\s*0\]\s*=\s*0", line):
            out["clip_att"] = (True, f"{script}:{no}")
    out.setdefault("clip_att", (False, script))
    if cfg_file is None or "optimizer" not in out:
        raise SystemExit(f"error: {script}: config file or optimizer not found; is this the TransZero repository?")
    ytext = (root / cfg_file).read_text()
    values = yaml.safe_load(ytext)
    lines = ytext.splitlines()
    for key, entry in values.items():
        no = next(i for i, line in enumerate(lines, 1) if line.startswith(f"{key}:")) + 1
        out[key] = (entry["value"], f"{cfg_file}:{no}")
    return out


def geometry_permutation() -> torch.Tensor:
    """perm[k]: the official embedding channel that holds our channel k (x and y swapped)."""
    perm = []
    for half in range(2):  # sin, cos
        for c in range(4):  # ours: dx(col), dy(row), dw, dh; official: dx(row), dy(col), dw, dh
            perm += [half * 32 + [1, 0, 2, 3][c] * 8 + j for j in range(8)]
    return torch.tensor(perm)


def param_map(enc_layers: int, dec_layers: int, self_attention: bool) -> dict[str, str]:
    m = {"V": "V", "W1": "W_1"}
    t = "transformer."
    for p in ("weight", "bias"):
        m[f"embed_cv.{p}"] = f"{t}embed_cv.0.{p}"
        m[f"embed_attr.{p}"] = f"{t}embed_attr.0.{p}"
        m[f"geo.{p}"] = f"{t}transformer_encoder.WGs.0.{p}"
        for i in range(enc_layers):
            e, o = f"encoder.{i}.", f"{t}transformer_encoder.layers.{i}."
            for a in "qkvo":
                m[f"{e}{a}.{p}"] = f"{o}mhatt.attention.fc_{a}.{p}"
            m[f"{e}norm1.{p}"] = f"{o}mhatt.layer_norm.{p}"
            m[f"{e}norm1_outer.{p}"] = f"{o}lnorm.{p}"
            m[f"{e}norm2.{p}"] = f"{o}pwff.layer_norm.{p}"
            m[f"{e}ff.0.{p}"] = f"{o}pwff.fc1.{p}"
            m[f"{e}ff.3.{p}"] = f"{o}pwff.fc2.{p}"
        for i in range(dec_layers):
            d, o = f"decoder.{i}.", f"{t}transformer_decoder.layers.{i}."
            if self_attention:
                m[f"{d}norm0.{p}"] = f"{o}norm1.{p}"
            m[f"{d}norm1.{p}"] = f"{o}norm2.{p}"
            m[f"{d}norm2.{p}"] = f"{o}norm3.{p}"
            m[f"{d}ff.0.{p}"] = f"{o}linear1.{p}"
            m[f"{d}ff.3.{p}"] = f"{o}linear2.{p}"
        for i in range(dec_layers):
            d, o = f"decoder.{i}.", f"{t}transformer_decoder.layers.{i}."
            attns = (("self_attn", "self_attn"), ("cross_attn", "multihead_attn")) if self_attention \
                else (("cross_attn", "multihead_attn"),)
            for ours, theirs in attns:
                m[f"{d}{ours}.in_proj_{p}"] = f"{o}{theirs}.in_proj_{p}"
                m[f"{d}{ours}.out_proj.{p}"] = f"{o}{theirs}.out_proj.{p}"
    return m


def our_terms(ours, x, y):
    out = ours(x)
    t = ours.loss(out, y)
    return {"logits": out["logits"], "ce": t["ce"], "self_cal": t["self_cal"], "attr_reg": t["attr_reg"],
            "loss": t["loss"]}


def official_terms(official, x, y, num_classes):
    p = official(x)
    p["batch_label"] = torch.eye(num_classes, dtype=torch.float64)[y]
    o = official.compute_loss(p)
    return {"logits": p["S_pp"], "ce": o["loss_CE"], "self_cal": o["loss_cal"], "attr_reg": o["loss_reg"],
            "loss": o["loss"]}


def check(ds: str, module, root: Path, args) -> common.Report:
    import methods  # noqa: F401
    from methods.transzero import TransZero, TransZeroConfig
    from zsl_bench.config import TrainConfig
    from zsl_bench.contract import TaskInfo
    from zsl_bench.engine import build_optimizer

    rng = np.random.default_rng(args.seed)
    task = common.synthetic_task(ds, rng)
    off = official_settings(root, ds)
    preset = TransZero.presets[ds]
    tr = preset["train"]
    report = common.Report(f"transzero {ds} (float64, B={args.batch}, F={FEATURE_DIM}, R={REGIONS}, "
                           f"{args.steps} steps, dropout 0)")
    cfg_full = TransZeroConfig(**preset["method"])
    pairs = [("lambda_sc", cfg_full.lambda_sc, "lambda_"), ("lambda_ar", cfg_full.lambda_ar, "lambda_reg"),
             ("dim_com", cfg_full.dim_com, "tf_common_dim"), ("dim_ff", cfg_full.dim_ff, "tf_dim_feedforward"),
             ("dropout", cfg_full.dropout, "tf_dropout"),
             ("attribute_self_attention", cfg_full.attribute_self_attention, "tf_SAtt"),
             ("heads", cfg_full.heads, "tf_heads"), ("enc_layers", cfg_full.enc_layers, "tf_ec_layer"),
             ("dec_layers", cfg_full.dec_layers, "tf_dc_layer"), ("normalize_v", cfg_full.normalize_v, "normalize_V"),
             ("clip_negative_att", cfg_full.clip_negative_att, "clip_att"), ("epochs", tr["epochs"], "epochs"),
             ("optimizer", tr["optimizer"], "optimizer"),
             ("lr", tr["lr"], "lr"), ("weight_decay", tr["weight_decay"], "weight_decay"),
             *([("momentum", tr.get("momentum", 0.9), "momentum")] if off["optimizer"][0] != "adam" else []),
             ("sampler", tr.get("sampler", "uniform"), "is_balance")]
    for ours_key, ours_val, off_key in pairs:
        off_val, where = off[off_key]
        if off_key == "is_balance":
            off_val = "class_balanced" if off_val else "uniform"
        if isinstance(ours_val, (bool, str)) or isinstance(off_val, (bool, str)):
            same = ours_val == off_val
        else:
            same = float(ours_val) == float(off_val)
        report.note(f"preset {ours_key}: ours {ours_val}, official {off_val} ({where})"
                    + ("" if same else "  <- DIFFERENT (documented in docs/FIDELITY.md)"))
    common.note_batch_and_epoch(report, tr, off, len(task.seen))

    # Dropout rates: an official encoder layer and decoder built from the yaml vs ours from the preset.
    d = int(off["tf_common_dim"][0])
    enc = module.EncoderLayer(d, d, d, 1, int(off["tf_dim_feedforward"][0]), float(off["tf_dropout"][0]))
    dec = module.TransformerDecoderLayer(d, int(off["tf_heads"][0]), int(off["tf_dim_feedforward"][0]),
                                         float(off["tf_dropout"][0]), SAtt=bool(off["tf_SAtt"][0]))
    tiny = TaskInfo(dataset=ds, att=task.att.astype(np.float32), seen=task.seen, unseen=task.unseen,
                    feature_dim=8, regions=4, w2v=task.w2v.astype(np.float32))
    built = TransZero(cfg_full, tiny)
    e, dl = built.encoder[0], built.decoder[0]
    report.compare("dropout rate, encoder attention weights (official model.py ScaledDotProductGeometryAttention)",
                   torch.tensor(e.p_att), torch.tensor(enc.mhatt.attention.dropout.p), tol=0.0)
    report.compare("dropout rates, encoder residuals and feed-forward (4 official modules)",
                   torch.tensor([e.p] * 4), torch.tensor([enc.mhatt.dropout.p, enc.dropout.p, enc.pwff.dropout.p,
                                                          enc.pwff.dropout_2.p]), tol=0.0)
    off_dec = [dec.dropout.p, dec.dropout2.p, dec.dropout3.p, dec.multihead_attn.dropout]
    ours_dec = [dl.p] * 3 + [dl.cross_attn.dropout]
    if cfg_full.attribute_self_attention:
        off_dec += [dec.dropout1.p, dec.self_attn.dropout]
        ours_dec += [dl.p, dl.self_attn.dropout]
    report.compare(f"dropout rates, decoder ({len(off_dec)} official modules)", torch.tensor(ours_dec),
                   torch.tensor(off_dec), tol=0.0)

    # Equality runs: dropout 0 everywhere (streams differ), each side's own optimizer.
    cfg = TransZeroConfig(**{**preset["method"], "dropout": 0.0, "attention_dropout": 0.0})
    conf = types.SimpleNamespace(**{k: v for k, (v, _) in off.items()})
    conf.tf_dropout, conf.dim_f, conf.num_class = 0.0, FEATURE_DIM, task.num_classes
    att_off = task.att.copy()
    if off["clip_att"][0]:
        att_off[att_off < 0] = 0
        report.note(f"{int((task.att < 0).sum())} of {task.att.size} synthetic semantics are negative; "
                    "both clip them (the att buffer row below)")

    def official_model(c, att, seen, unseen):
        torch.manual_seed(args.seed)
        m = module.TransZero(c, torch.from_numpy(att), torch.from_numpy(task.w2v), torch.from_numpy(seen),
                             torch.from_numpy(unseen)).double()
        for layer in m.transformer.transformer_encoder.layers:
            layer.mhatt.attention.dropout.p = 0.0  # hard-coded 0.1 in the official module
        return m

    official = official_model(conf, att_off, task.seen, task.unseen)
    info = TaskInfo(dataset=ds, att=task.att.astype(np.float32), seen=task.seen, unseen=task.unseen,
                    feature_dim=FEATURE_DIM, regions=REGIONS, w2v=task.w2v.astype(np.float32))
    ours = TransZero(cfg, info).double()
    mapping = param_map(cfg.enc_layers, cfg.dec_layers, cfg.attribute_self_attention)
    perm = geometry_permutation()
    common.copy_params(ours, official, mapping, transform={"geo.weight": lambda w: w[:, perm]})
    unmapped = sorted(set(dict(official.named_parameters())) - set(mapping.values())
                      - {"att", "bias", "mask_bias", "weight_ce"})
    report.note(f"official parameters without a counterpart in ours: {', '.join(unmapped) or 'none'}")

    emb = module.BoxRelationalEmbedding(torch.zeros(1, REGIONS, 4), grid_size=(14, 14))[0]  # [R, R, 64]
    # float32 sin/cos of arguments up to 100·|log 1e-3| ≈ 691: rounding up to ~691·6e-8 ≈ 4e-5
    report.compare("geometry embedding (ours float32 buffer)", ours.geometry, emb[..., perm], tol=1e-4)
    report.compare("att buffer (float32 normalisation)", ours.att, official.att, tol=1e-6)
    with torch.no_grad():
        ours.geometry.copy_(emb[..., perm])
        ours.att.copy_(official.att)
    report.compare("margin (+1 unseen, -1 seen)", ours.vec_bias, (official.mask_bias * official.bias)[0])

    data = common.batches(args.steps, args.batch, task, FEATURE_DIM, REGIONS, rng)
    x, y = data[0]
    official.eval()
    ours.eval()
    with torch.no_grad():
        report.compare("logits in eval mode (official as published)", ours(x)["logits"], official(x)["S_pp"])
    ours.train()
    official.train()
    ot, tt = our_terms(ours, x, y), official_terms(official, x, y, task.num_classes)
    for key in ("logits", "ce", "self_cal", "attr_reg", "loss"):
        report.compare(f"forward {key}", ot[key], tt[key])
    for key in ("ce", "self_cal", "attr_reg", "loss"):
        common.compare_grads(report, key, ot[key], tt[key], ours, official, mapping,
                             transform={"geo.weight": lambda w: w[:, perm]})

    # Protocol val: ours on a validation-shaped phase (losses over its classes) vs the official
    # model built on the phase's classes only, with the same weights.
    seen_p, unseen_p, phase = common.val_phase(task)
    local = {int(c): i for i, c in enumerate(phase)}
    conf_p = types.SimpleNamespace(**vars(conf))
    conf_p.num_class = len(phase)
    official_p = official_model(conf_p, att_off[phase], np.array([local[c] for c in seen_p]),
                                np.array([local[c] for c in unseen_p]))
    ours_p = TransZero(cfg, replace(info, seen=seen_p, unseen=unseen_p)).double()
    with torch.no_grad():
        for n, q in ours_p.named_parameters():
            q.copy_(dict(ours.named_parameters())[n])
        for n, q in official_p.named_parameters():
            if q.requires_grad:
                q.copy_(dict(official.named_parameters())[n])
        ours_p.geometry.copy_(ours.geometry)
        ours_p.att.copy_(ours.att)
    yp = torch.from_numpy(rng.choice(seen_p, size=args.batch))
    yp_local = torch.tensor([local[int(c)] for c in yp])
    op, tp = our_terms(ours_p, x, yp), official_terms(official_p, x, yp_local, len(phase))
    report.compare(f"val phase ({len(seen_p)} seen + {len(unseen_p)} val classes of {task.num_classes}): "
                   "logits on the phase's classes", op["logits"][:, torch.from_numpy(phase)], tp["logits"])
    for key in ("ce", "self_cal", "attr_reg", "loss"):
        report.compare(f"val phase {key} (official on the phase's classes)", op[key], tp[key])
    common.compare_grads(report, "loss (val phase)", op["loss"], tp["loss"], ours_p, official_p, mapping,
                         transform={"geo.weight": lambda w: w[:, perm]})
    ce_all = torch.nn.functional.cross_entropy(op["logits"] - ours_p.vec_bias, yp)
    report.measure("val phase: CE over the phase's classes vs over all K (the former code)", op["ce"], ce_all)

    opt_ours = build_optimizer([p for p in ours.parameters() if p.requires_grad], TrainConfig(**tr))
    trainable = dict(official.named_parameters())
    opt_off = build_official_optimizer(off, [trainable[mapping[n]] for n, p in ours.named_parameters()
                                             if p.requires_grad]
                                       + [p for n, p in trainable.items()
                                          if p.requires_grad and n not in mapping.values()])
    l_ours, l_off = common.trajectory(
        [(ours, opt_ours, lambda xb, yb: our_terms(ours, xb, yb)["loss"]),
         (official, opt_off, lambda xb, yb: official_terms(official, xb, yb, task.num_classes)["loss"])], data)
    report.compare(f"trajectory loss, {args.steps} steps (ours {type(opt_ours).__name__} from the preset, "
                   f"official {type(opt_off).__name__} as train_{ds}.py)", l_ours, l_off)

    def theirs(n):
        return trainable[mapping[n]][:, perm] if n == "geo.weight" else trainable[mapping[n]]

    worst = max(((n, *common.max_diff(p, theirs(n))) for n, p in ours.named_parameters()
                 if p.requires_grad), key=lambda t: t[1])
    report.compare(f"trajectory final parameters (worst: {worst[0]})", torch.tensor(worst[1]),
                   torch.tensor(0.0), tol=1e-9)
    ours.eval()
    official.eval()
    xe = data[-1][0]
    with torch.no_grad():
        report.compare("eval scores (S_pp, helper_func.py)", ours.scores(xe), official(xe)["S_pp"], tol=1e-9)
    report.note("not compared: dropout draws, batch sampling and the schedule; the same batches are fed to both")
    return report


def build_official_optimizer(off, params):
    if off["optimizer"][0] == "adam":
        return torch.optim.Adam(params, lr=off["lr"][0], weight_decay=off["weight_decay"][0])
    return torch.optim.SGD(params, lr=off["lr"][0], weight_decay=off["weight_decay"][0],
                           momentum=off["momentum"][0])


def main(argv: list[str] | None = None) -> int:
    p = common.parser(__doc__.split("\n")[0])
    args = p.parse_args(argv)
    datasets = common.parse_datasets(args.datasets, tuple(TRAIN))
    root = common.check_official_dir(args.official, "model.py")
    torch.set_default_dtype(torch.float64)
    module = common.import_official(root, "model")
    decoder_forward = module.TransformerDecoderLayer.forward

    def decoder_layer(self, tgt, memory, *rest, tgt_is_causal=None, memory_is_causal=False, **kw):
        # torch >= 2.0 passes the *_is_causal flags the official signature predates; they are unused
        return decoder_forward(self, tgt, memory, *rest, **kw)

    module.TransformerDecoderLayer.forward = decoder_layer
    reports = []
    with common.cuda_calls_stay_on_cpu():
        for ds in datasets:
            rep = check(ds, module, root, args)
            rep.print()
            reports.append(rep)
    return common.finish(reports)


if __name__ == "__main__":
    sys.exit(main())
