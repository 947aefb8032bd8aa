"""One GPU against its limit: the measurements ``benchmarks/gpu_suite.sh`` prints (see that script).

Sections (each prints ``key: value`` lines; ``--only`` picks some):

* ``step``: train and score throughput of MSDN and MSDN++ at 49 and 196 regions, CUB shapes, random
  features resident on the device, fp32 and bf16; achieved TFLOP/s beside the device's peak.
* ``schedule``: wall time of the full CUB schedule (val protocol: the official epochs on ``val_train``
  scoring ``val_seen``/``val_unseen`` every epoch, then the ``trainval`` retrain scoring the test
  splits) through ``runner.run_one``, on the real CUB metadata (11788 images, real splits, real
  attributes and word vectors) with generated features of the real shape (2048 x 196); peak memory.
* ``agree``: CPU vs GPU metrics of the same seeded run on simulated CUB (``small``), fp32 and bf16.
* ``extract``: ``data extract`` images/s at 448 px with ResNet-101 (random weights, random images):
  the backbone alone on device tensors, and ``extract_features`` end to end (JPEG decode, HDF5 write).

FLOPs are counted analytically (``step_flops``), never measured: a training step of MSDN/MSDN++ is
dominated by one GEMM ``[B*R, F] x [F, 4A]`` (the four attribute projections stacked), forward
``2*B*R*F*4A`` and, since the features need no gradient, one weight-gradient GEMM of the same size
backward; plus the ``[4A, D] x [D, F]`` projection of the attribute vectors (forward and two
backward GEMMs). At CUB (F=2048, A=312, D=300, R=196, B=50) that is 2.00 GFLOP per image for the
region GEMMs + 0.09 GFLOP per image for the projection = 2.09 GFLOP per image (the issue's "about
3 GFLOP" counts an input-gradient GEMM that this implementation does not compute). Scoring is the
forward GEMM only: 1.00 GFLOP per image. Elementwise work (softmax, normalisation, losses) is
left out, so the TFLOP/s printed is a lower bound of the work done.

``--cpu-smoke``: every section on CPU at toy sizes (seconds), to check the script where no GPU is.
Numbers printed in that mode say nothing about a GPU.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from zsl_bench import engine as E  # noqa: E402
from zsl_bench.config import resolve  # noqa: E402
from zsl_bench.contract import TaskInfo  # noqa: E402
from zsl_bench.registry import METHODS  # noqa: E402

CUB = {"classes": 200, "seen": 150, "attributes": 312, "features": 2048, "w2v": 300}
SMOKE = {"classes": 20, "seen": 15, "attributes": 12, "features": 32, "w2v": 8}
# Dense peak TFLOP/s (vendor data sheets; no sparsity): {"fp32": plain FP32, "bf16": tensor-core BF16}.
PEAKS = {
    "H200": {"fp32": 67.0, "bf16": 989.0},
    "H100 SXM": {"fp32": 67.0, "bf16": 989.0},
    "H100 80GB HBM3": {"fp32": 67.0, "bf16": 989.0},
    "H100 NVL": {"fp32": 60.0, "bf16": 835.0},
    "H100 PCIe": {"fp32": 51.0, "bf16": 756.0},
    "A100": {"fp32": 19.5, "bf16": 312.0},
    "L40S": {"fp32": 91.6, "bf16": 362.0},
}


def say(key: str, value: Any) -> None:
    print(f"{key}: {value}", flush=True)


def peak(device: torch.device, precision: str) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for k, v in PEAKS.items():
        if k.lower() in name.lower():
            return v[precision]
    return None


def step_flops(shape: dict[str, int], regions: int, batch: int) -> tuple[float, float]:
    """(training FLOPs per step, scoring FLOPs per image); see the module docstring."""
    f, a, d = shape["features"], shape["attributes"], shape["w2v"]
    region = 2 * batch * regions * f * 4 * a  # forward GEMM
    proj = 2 * 4 * a * d * f  # attribute vectors [4A, D] x [D, F]
    return 2 * region + 3 * proj, 2 * regions * f * 4 * a


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ---------------------------------------------------------------- step throughput


def build(method: str, shape: dict[str, int], regions: int, device: torch.device, precision: str) -> tuple[Any, Any]:
    rng = np.random.default_rng(0)
    k, s, a, f, d = (shape[n] for n in ("classes", "seen", "attributes", "features", "w2v"))
    task = TaskInfo(dataset="cub", att=rng.random((k, a), dtype=np.float32), seen=np.arange(s),
                    unseen=np.arange(s, k), feature_dim=f, regions=regions,
                    w2v=rng.standard_normal((a, d)).astype(np.float32))
    cls = METHODS.get(method)
    cfg = resolve(cls, "cub", None, {"train": {"device": str(device), "precision": precision}})
    torch.manual_seed(0)
    model = cls(cfg.method, task).to(device)
    return model, E.build_optimizer([p for p in model.parameters() if p.requires_grad], cfg.train)


def section_step(args: argparse.Namespace, device: torch.device) -> None:
    shape = SMOKE if args.cpu_smoke else CUB
    pool = 64 if args.cpu_smoke else 2048  # images held on the device to draw batches from
    steps, warm = (3, 1) if args.cpu_smoke else (args.steps, 10)
    precisions = ("fp32",) if device.type != "cuda" else ("fp32", "bf16")
    for regions in ((4, 9) if args.cpu_smoke else (49, 196)):
        for method in ("msdn", "msdnpp"):
            for prec in precisions:
                amp = prec == "bf16"
                if device.type == "cuda" and not amp:
                    torch.backends.cuda.matmul.allow_tf32 = False
                model, opt = build(method, shape, regions, device, prec)
                held = torch.rand(pool, shape["features"], regions, device=device,
                                  dtype=torch.float16 if amp else torch.float32)
                labels = torch.randint(0, shape["seen"], (pool,), device=device)
                batch = args.batch

                def one_step(model: Any = model, opt: Any = opt, held: torch.Tensor = held,
                             labels: torch.Tensor = labels, batch: int = batch, prec: str = prec) -> None:
                    pos = torch.randint(0, pool, (batch,), device=device)
                    x = held.index_select(0, pos).float()
                    with E.autocast(device, prec):
                        terms = model.loss(model(x), labels.index_select(0, pos))
                    opt.zero_grad(set_to_none=True)
                    terms["loss"].backward()
                    opt.step()

                model.train()
                for _ in range(warm):
                    one_step()
                sync(device)
                t0 = time.perf_counter()
                for _ in range(steps):
                    one_step()
                sync(device)
                train_s = (time.perf_counter() - t0) / steps
                # Scoring: the engine's chunks, features already on the device.
                model.eval()
                chunk = min(pool, 64 if args.cpu_smoke else 1024)
                with torch.no_grad(), E.autocast(device, prec):
                    model.scores(held[:chunk].float())
                    sync(device)
                    t0 = time.perf_counter()
                    reps = 2 if args.cpu_smoke else 10
                    for _ in range(reps):
                        model.scores(held[:chunk].float())
                    sync(device)
                score_s = (time.perf_counter() - t0) / reps
                train_flops, score_flops = step_flops(shape, regions, batch)
                tf_train, tf_score = train_flops / train_s / 1e12, score_flops * chunk / score_s / 1e12
                p = peak(device, prec)
                vs = "" if p is None else f" ({100 * tf_train / p:.1f}% of {p:g} peak)"
                vs_s = "" if p is None else f" ({100 * tf_score / p:.1f}% of {p:g} peak)"
                tag = f"{method} R={regions} {prec} B={batch}"
                say(f"train {tag}", f"{batch / train_s:,.0f} img/s, {1e3 * train_s:.2f} ms/step, "
                    f"{tf_train:.2f} TFLOP/s{vs}")
                say(f"score {tag.replace(f'B={batch}', f'chunk={chunk}')}",
                    f"{chunk / score_s:,.0f} img/s, {tf_score:.2f} TFLOP/s{vs_s}")
                del model, opt, held


# ---------------------------------------------------------------- the full CUB schedule


class GeneratedRegions:
    """Region features made on demand with CUB's real shape: class prototype + noise, ReLU'd.

    Deterministic per row (its own generator), so every read of a row returns the same features.
    Generated on ``gen_device`` (fast) and returned as float32 numpy, the store API.
    """

    def __init__(self, labels: np.ndarray, feature_dim: int, regions: int, gen_device: torch.device) -> None:
        self.labels = labels
        self.num_rows, self.feature_dim, self.num_regions = len(labels), feature_dim, regions
        self.has_regions = True
        self.path = Path("<generated regions>")
        self.provenance = {"source": "generated (gpu_bench)"}
        self.dev = gen_device
        g = torch.Generator(device=gen_device).manual_seed(0)
        k = int(labels.max()) + 1
        self.protos = torch.rand(k, feature_dim, 1, generator=g, device=gen_device)  # [K, F, 1]

    def read_regions(self, idx: np.ndarray) -> np.ndarray:
        idx = np.asarray(idx, dtype=np.int64)
        out = torch.empty(len(idx), self.feature_dim, self.num_regions, device=self.dev)
        g = torch.Generator(device=self.dev)
        for j, i in enumerate(idx):
            g.manual_seed(int(i) + 1)
            out[j] = torch.randn(self.feature_dim, self.num_regions, generator=g, device=self.dev)
        lab = torch.as_tensor(self.labels[idx], device=self.dev)
        out = torch.relu(out + 2 * self.protos[lab])
        return out.cpu().numpy()

    def read_pooled(self, idx: np.ndarray) -> np.ndarray:
        return self.read_regions(idx).mean(axis=2)

    def read(self, idx: np.ndarray, kind: str) -> np.ndarray:
        return self.read_regions(idx) if kind == "regions" else self.read_pooled(idx)


def cub_with_generated_features(args: argparse.Namespace, device: torch.device) -> Any:
    from zsl_bench.data.loader import load_dataset

    data = load_dataset("cub", args.shared_data)  # real metadata: labels, splits, attributes, w2v
    f, r = (SMOKE["features"], 4) if args.cpu_smoke else (CUB["features"], 196)
    feats = GeneratedRegions(data.labels, f, r, device)
    return dataclasses.replace(data, features=feats, source="simulated")


def section_schedule(args: argparse.Namespace, device: torch.device) -> None:
    from zsl_bench.runner import RunSpec, run_one

    t0 = time.perf_counter()
    data = cub_with_generated_features(args, device)
    say("schedule data", f"CUB metadata from {args.shared_data}, generated features "
        f"{data.features.num_rows} x {data.features.feature_dim} x {data.features.num_regions} "
        f"({time.perf_counter() - t0:.1f}s to set up)")
    epochs = 1 if args.cpu_smoke else None
    if device.type == "cuda":
        t0 = time.perf_counter()
        held = E.load_resident(data.features, "regions", device, torch.float16)
        sync(device)
        say("schedule feature load", f"{time.perf_counter() - t0:.1f}s to generate and copy the features to "
            f"the GPU as {held.dtype if held is not None else 'nothing (do not fit)'} (included in each wall "
            "time below, as a run from an HDF5 store includes reading it)")
        del held
        torch.cuda.empty_cache()
    for method in args.schedule_methods.split(","):
        for prec in (("fp32",) if device.type != "cuda" else ("bf16", "fp32")):
            train: dict[str, Any] = {"device": str(device), "precision": prec}
            if epochs:  # smoke: the same code path, few steps (CPU time here is not what is measured)
                train.update(epochs=epochs, batch_size=512)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            with tempfile.TemporaryDirectory() as tmp:
                t0 = time.perf_counter()
                res = run_one(RunSpec(method, "cub", seed=0, protocol="val"), out_dir=Path(tmp),
                              cli_overrides={"train": train}, progress=False, data=data)
                wall = time.perf_counter() - t0
            val = sum(1 for h in res.history if h["phase"] == "val")
            final = sum(1 for h in res.history if h["phase"] == "final")
            mem = f", peak GPU memory {torch.cuda.max_memory_allocated(device) / 2**30:.1f} GiB" \
                if device.type == "cuda" else ""
            say(f"schedule {method} cub {prec}", f"{wall:.1f}s wall ({val} val epochs + {final} trainval epochs, "
                f"scored every epoch; {where(res.rows[0]['versions'], device)})"
                f"{mem}; H {res.metrics['h']:.2f} (generated features: not a result)")


def where(versions: str, device: torch.device) -> str:
    held = [p for p in versions.split(";") if p.startswith("features=")]
    if device.type != "cuda":
        return "features in host memory"
    return held[0].replace("features=", "features ") if held else "features streamed (did not fit)"


# ---------------------------------------------------------------- CPU vs GPU agreement


def section_agree(args: argparse.Namespace, device: torch.device) -> None:
    from zsl_bench.runner import RunSpec, run_one

    preset = "tiny" if args.cpu_smoke else "small"
    spec = RunSpec("msdnpp", "cub", seed=0, protocol="val", sim_preset=preset)
    epochs = 2 if args.cpu_smoke else args.agree_epochs
    out: dict[str, dict[str, float]] = {}
    runs = [("cpu", "cpu", "fp32")]
    if device.type == "cuda":
        runs += [("cuda fp32", "cuda", "fp32"), ("cuda bf16", "cuda", "bf16")]
    else:  # bf16 autocast on CPU: the same opt-in precision, measured where there is no GPU
        runs += [("cpu deferred-check path", "cpu", "fp32"), ("cpu bf16", "cpu", "bf16")]
    import zsl_bench.runner as runner_mod

    class DeferredEngine(E.Engine):
        """The CUDA code path (loss terms and the non-finite check read once per epoch), on CPU."""

        def __init__(self, *a: Any, **kw: Any) -> None:
            super().__init__(*a, **kw)
            self.deferred_checks = True

    for label, dev, prec in runs:
        if label == "cpu deferred-check path":
            runner_mod.Engine = DeferredEngine  # type: ignore[misc]
        try:
            with tempfile.TemporaryDirectory() as tmp:
                t0 = time.perf_counter()
                res = run_one(spec, out_dir=Path(tmp), progress=False,
                              cli_overrides={"train": {"device": dev, "precision": prec, "epochs": epochs}})
                wall = time.perf_counter() - t0
        finally:
            runner_mod.Engine = E.Engine  # type: ignore[misc]
        out[label] = res.metrics
        say(f"agree {label}", f"H {res.metrics['h']:.3f}  ZSL {res.metrics['zsl_acc']:.3f}  U {res.metrics['u']:.3f}  "
            f"S {res.metrics['s']:.3f}  ({wall:.1f}s, msdnpp sim {preset} cub, {epochs} epochs)")
    ref = out["cpu"]
    for label, m in out.items():
        if label != "cpu":
            dev = max(abs(m[k] - ref[k]) for k in ("h", "zsl_acc", "u", "s"))
            say(f"agree max |{label} - cpu|", f"{dev:.3f} points (H, ZSL, U, S)")


# ---------------------------------------------------------------- data extract


def section_extract(args: argparse.Namespace, device: torch.device) -> None:
    from PIL import Image

    from zsl_bench.data.extract import build_backbone, extract_features

    size = 64 if args.cpu_smoke else 448
    batch = 4 if args.cpu_smoke else 64
    backbone = build_backbone("random").to(device)
    x = torch.rand(batch, 3, size, size, device=device)
    with torch.inference_mode():
        backbone(x)
        sync(device)
        reps = 2 if args.cpu_smoke else 10
        t0 = time.perf_counter()
        for _ in range(reps):
            backbone(x)
        sync(device)
    rate = reps * batch / (time.perf_counter() - t0)
    say(f"extract backbone ResNet-101 {size}px fp32 batch {batch}", f"{rate:,.1f} img/s (device tensors)")
    n = 8 if args.cpu_smoke else args.extract_images
    with tempfile.TemporaryDirectory() as tmp:
        rng = np.random.default_rng(0)
        paths = []
        for i in range(n):
            p = Path(tmp) / f"img{i}.jpg"
            Image.fromarray(rng.integers(0, 256, (375, 500, 3), dtype=np.uint8)).save(p, quality=90)
            paths.append(p)
        t0 = time.perf_counter()
        extract_features(paths, Path(tmp) / "features.h5", size=size, device=str(device), batch_size=batch,
                         weights="random", progress=False)
        wall = time.perf_counter() - t0
    say(f"extract end-to-end {size}px ({n} random 500x375 JPEGs)", f"{n / wall:,.1f} img/s "
        f"({wall:.1f}s incl. decode, resize, HDF5 write, backbone set-up)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cpu-smoke", action="store_true", help="toy sizes on CPU: checks the script, not the GPU")
    ap.add_argument("--only", default="step,schedule,agree,extract", help="sections, comma-separated")
    ap.add_argument("--batch", type=int, default=50, help="training batch (CUB's official 50)")
    ap.add_argument("--steps", type=int, default=50, help="timed training steps per configuration")
    ap.add_argument("--schedule-methods", default="msdnpp", help="methods of the schedule section")
    ap.add_argument("--agree-epochs", type=int, default=3, help="epochs of the agreement runs")
    ap.add_argument("--extract-images", type=int, default=512, help="images of the end-to-end extract run")
    ap.add_argument("--shared-data", default=os.environ.get("ZSL_BENCH_SHARED_DATA", "../shared/data/zsl"),
                    help="real metadata root (CUB's att_splits.mat etc.)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.cpu_smoke:
        device = torch.device("cpu")
        args.batch = min(args.batch, 8)
    elif not torch.cuda.is_available():
        print("gpu_bench: no CUDA device here; use --cpu-smoke to check the script on CPU", file=sys.stderr)
        return 2
    else:
        device = torch.device("cuda")
    say("device", torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu (smoke: no GPU numbers)")
    if device.type == "cuda":
        free, total = torch.cuda.mem_get_info(device)
        say("memory", f"{total / 2**30:.0f} GiB total, {free / 2**30:.0f} GiB free")
        say("peak TFLOP/s", f"fp32 {peak(device, 'fp32')}, bf16 {peak(device, 'bf16')} (dense, data sheet)")
    say("flops per image (CUB, R=196, B=50)", f"train {step_flops(CUB, 196, 50)[0] / 50 / 1e9:.2f} GFLOP, score {step_flops(CUB, 196, 50)[1] / 1e9:.2f} GFLOP (analytic, see docstring)")
    sections = {"step": section_step, "schedule": section_schedule, "agree": section_agree,
                "extract": section_extract}
    for name in args.only.split(","):
        t0 = time.perf_counter()
        sections[name.strip()](args, device)
        say(f"section {name} took", f"{time.perf_counter() - t0:.1f}s")
    if device.type == "cuda":
        say("peak GPU memory (whole suite)", f"{torch.cuda.max_memory_allocated(device) / 2**30:.1f} GiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
