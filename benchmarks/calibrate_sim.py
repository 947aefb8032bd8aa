"""Calibrate the simulated benchmark against published baselines (SIMULATION.md "Calibration").

Generates the ``small`` preset and runs the harness's registered pooled-feature baselines through
the real pipeline (``zsl_bench.runner.run_one``, val protocol, each method's dataset preset), so
the numbers are what ``zsl-bench run <method> --sim`` reports. Targets: the published real-data
ZSL accuracies of ESZSL/ALE, about 54 / 58 / 62 % on CUB / SUN / AWA2
(``../shared/reference/published_results.csv``).

Semantics: by default the generator's default data root, as ``zsl-bench run --sim`` uses it (on a
machine without real metadata: generated semantics); ``--data-root`` gives real semantics.

Baselines only: never run attention methods here. Examples::

    python benchmarks/calibrate_sim.py --out /tmp/zsl-calib
    python benchmarks/calibrate_sim.py --datasets cub,awa2 --methods ale,sae --set region_noise=0.8
"""

from __future__ import annotations

import argparse
import ast
import json
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from zsl_bench.data.datasets import get_spec, parse_dataset_list
from zsl_bench.data.loader import load_from_dir, read_sim_meta
from zsl_bench.data.sim import GENERATORS, generate, resolve_generator
from zsl_bench.metrics import names as metric_names
from zsl_bench.runner import RunSpec, run_one

log = logging.getLogger("calibrate_sim")
TARGETS = {"cub": 54.0, "sun": 58.0, "awa2": 62.0}  # ESZSL/ALE, published_results.csv
BASELINES = ("ale", "eszsl", "sae")


def calibrate(name: str, methods: list[str], *, seed: int, out: Path, data_root: str | None,
              overrides: dict[str, Any]) -> dict[str, Any]:
    """Generate ``name`` (small, ``seed``) and return each method's test metrics on it."""
    t0 = time.perf_counter()
    ddir = generate(name, "small", seed, data_root=data_root, out_root=out, force=True, **overrides)
    gen_s = time.perf_counter() - t0
    data = load_from_dir(name, ddir, source="simulated", root=ddir.parent,
                         provenance=read_sim_meta(ddir / "sim.json"))
    meta = json.loads((ddir / "sim.json").read_text())
    row: dict[str, Any] = {"dataset": get_spec(name).dirname, "target": TARGETS.get(name),
                           "chance": round(100.0 / meta["unseen"], 1), "images": meta["images"],
                           "real_semantics": meta["real_semantics"], "generate_s": round(gen_s, 1)}
    for method in methods:
        spec = RunSpec(method, name, seed=0, sim_preset="small", sim_seed=seed, protocol="val")
        with tempfile.TemporaryDirectory(prefix="calib-") as run_dir:
            res = run_one(spec, out_dir=Path(run_dir), data=data, progress=False)
        row[method] = {k: round(res.metrics[k], 1) for k in metric_names("table")}
        row[method]["s_wall"] = round(res.wall_time_s, 1)
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", default="all")
    p.add_argument("--methods", default=",".join(BASELINES), help="registered pooled-feature baselines")
    p.add_argument("--data-root", default=None, help="real semantics (default: as `zsl-bench run --sim`)")
    p.add_argument("--out", default="/tmp/zsl-calib", help="where the small preset is written")
    p.add_argument("--seed", type=int, default=0, help="generator seed")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a SimParams field (exploration only; defaults live in sim.py)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    log.setLevel(logging.INFO)
    overrides = {}
    for kv in args.set:
        key, _, value = kv.partition("=")
        overrides[key] = ast.literal_eval(value)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    rows = {}
    for name in parse_dataset_list(args.datasets):
        rows[name] = calibrate(name, methods, seed=args.seed, out=Path(args.out),
                               data_root=args.data_root, overrides=overrides)
        log.info("%s", json.dumps(rows[name]))
    version = GENERATORS[resolve_generator(overrides.get("generator"))]  # --set generator='"1.2"' selects v1
    print(json.dumps({"generator": version, "overrides": overrides, "results": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
