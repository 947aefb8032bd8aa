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
Two differences are by construction and are measured, not judged:

- the official encoder layer applies LayerNorm twice around its attention residual
  (``MultiHeadGeometryAttention`` then ``EncoderLayer.lnorm``), ours once: the "as published"
  rows measure that; the equality rows run the official layer with the outer LayerNorm bypassed
  (a runtime patch of ``EncoderLayer.forward``, never an edit of the file);
- dropout: the streams differ, so the equality rows run with dropout 0 in both (the official
  encoder attention's dropout is a hard-coded 0.1, set to 0 at runtime as well).
"""

from __future__ import annotations

import re
import sys
import types
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


def one_layer_norm(self, queries, keys, values, relative_geometry_weights, attention_mask=None,
                   attention_weights=None, pos=None):
    """The official EncoderLayer.forward without its outer ``lnorm`` (ours: one residual + LN)."""
    q, k = (queries + pos, keys + pos) if pos is not None else (queries, keys)
    return self.pwff(self.mhatt(q, k, values, relative_geometry_weights, attention_mask, attention_weights))


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
             ("clip negative att", False, "clip_att"), ("epochs", tr["epochs"], "epochs"),
             ("batch_size", tr["batch_size"], "batch_size"), ("optimizer", tr["optimizer"], "optimizer"),
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
    report.note("official encoder attention dropout: 0.1 whatever tf_dropout is (model.py "
                "MultiHeadGeometryAttention builds ScaledDotProductGeometryAttention without passing dropout); "
                f"ours uses method.dropout ({cfg_full.dropout}) there")

    # Equality runs: dropout 0 everywhere (streams differ), official optimizer for both.
    cfg = TransZeroConfig(**{**preset["method"], "dropout": 0.0})
    conf = types.SimpleNamespace(**{k: v for k, (v, _) in off.items()})
    conf.tf_dropout, conf.dim_f, conf.num_class = 0.0, FEATURE_DIM, task.num_classes
    att_off = task.att.copy()
    if off["clip_att"][0]:
        att_off[att_off < 0] = 0
    torch.manual_seed(args.seed)
    official = module.TransZero(conf, torch.from_numpy(att_off), torch.from_numpy(task.w2v),
                                torch.from_numpy(task.seen), torch.from_numpy(task.unseen)).double()
    for layer in official.transformer.transformer_encoder.layers:
        layer.mhatt.attention.dropout.p = 0.0  # hard-coded 0.1 in the official module
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
    if off["clip_att"][0]:
        report.note(f"{int((task.att < 0).sum())} of {task.att.size} synthetic semantics are negative; the "
                    "official script clips them, ours does not (measured below); equality rows use the clipped ones")
    else:
        report.compare("att buffer (float32 normalisation)", ours.att, official.att, tol=1e-6)
    with torch.no_grad():
        ours.geometry.copy_(emb[..., perm])
        att_ours = ours.att.clone()
        ours.att.copy_(official.att)
    report.compare("margin (+1 unseen, -1 seen)", ours.vec_bias, (official.mask_bias * official.bias)[0])

    data = common.batches(args.steps, args.batch, task, FEATURE_DIM, REGIONS, rng)
    x, y = data[0]
    # As published (double LayerNorm in the encoder): measured.
    official.eval()
    ours.eval()
    with torch.no_grad():
        published = official(x)["S_pp"]
        report.measure("logits as published (official encoder LayerNorm twice)", ours(x)["logits"], published)
        if off["clip_att"][0]:
            ours.att.copy_(att_ours)
            report.measure("logits, our unclipped att vs the script's att[att<0]=0", ours(x)["logits"],
                           official(x)["S_pp"])
            ours.att.copy_(official.att)
    module.EncoderLayer.forward = one_layer_norm  # runtime patch, for the equality rows below
    ours.train()
    official.train()
    ot, tt = our_terms(ours, x, y), official_terms(official, x, y, task.num_classes)
    for key in ("logits", "ce", "self_cal", "attr_reg", "loss"):
        report.compare(f"forward {key}", ot[key], tt[key])
    for key in ("ce", "self_cal", "attr_reg", "loss"):
        common.compare_grads(report, key, ot[key], tt[key], ours, official, mapping,
                             transform={"geo.weight": lambda w: w[:, perm]})

    opt_cfg = TrainConfig(**{**tr, "optimizer": off["optimizer"][0], "lr": off["lr"][0],
                             "weight_decay": off["weight_decay"][0], "momentum": off["momentum"][0]})
    opt_ours = build_optimizer([p for p in ours.parameters() if p.requires_grad], opt_cfg)
    trainable = dict(official.named_parameters())
    opt_off = build_official_optimizer(off, [trainable[mapping[n]] for n, p in ours.named_parameters()
                                             if p.requires_grad]
                                       + [p for n, p in trainable.items()
                                          if p.requires_grad and n not in mapping.values()])
    l_ours, l_off = common.trajectory(
        [(ours, opt_ours, lambda xb, yb: our_terms(ours, xb, yb)["loss"]),
         (official, opt_off, lambda xb, yb: official_terms(official, xb, yb, task.num_classes)["loss"])], data)
    report.compare(f"trajectory loss, {args.steps} steps ({off['optimizer'][0]})", l_ours, l_off)
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
    original = module.EncoderLayer.forward
    decoder_forward = module.TransformerDecoderLayer.forward

    def decoder_layer(self, tgt, memory, *rest, tgt_is_causal=None, memory_is_causal=False, **kw):
        # torch >= 2.0 passes the *_is_causal flags the official signature predates; they are unused
        return decoder_forward(self, tgt, memory, *rest, **kw)

    module.TransformerDecoderLayer.forward = decoder_layer
    reports = []
    with common.cuda_calls_stay_on_cpu():
        for ds in datasets:
            module.EncoderLayer.forward = original
            rep = check(ds, module, root, args)
            rep.print()
            reports.append(rep)
    return common.finish(reports)


if __name__ == "__main__":
    sys.exit(main())
