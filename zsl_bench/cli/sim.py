"""``zsl-bench data sim``: write the simulated benchmark (SIMULATION.md) in the real file formats."""

from __future__ import annotations

import argparse

EXAMPLES = """examples:
  zsl-bench data sim all                         small preset, seed 0, every dataset
  zsl-bench data sim cub --preset tiny --seed 3  a tiny CUB-named dataset for quick checks
  zsl-bench data sim sun --data-root ~/zsl --out /tmp/sim --force
  zsl-bench data sim cub --generator 1.2         the v1 generator (bit-identical to its release)
  zsl-bench data sim awa2 --generator 2.0        v2: AWA2 with 24 images per class (v3, the default: 100)
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sim", help="generate simulated region features (labelled 'simulated')",
        description="Generate a simulated ZSL dataset (att_splits.mat, image_index.npz, w2v, "
                    "features.h5, ground_truth.npz, sim.json) or report that it is cached. "
                    "Real class semantics are used where <data-root>/<DIR>/att_splits.mat exists "
                    "(small and full presets).",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dataset", metavar="DATASET", help="a dataset (zsl-bench ls datasets), a comma list, or 'all'")
    p.add_argument("--preset", default="small", help="tiny | small | full (default: small)")
    p.add_argument("--seed", type=int, default=0, help="generator seed (default: 0)")
    p.add_argument("--generator", default=None, help="generator version: 4.0 (default: 3.0 with a noise scale and a part "
                   "kernel width calibrated per dataset and semantics source), 3.0 (2.0 with a larger, recalibrated "
                   "AWA2), 2.0 (calibrated; 3.0 writes its data on CUB, SUN, FLO and AWA2 tiny) or 1.2 (the first one)")
    p.add_argument("--data-root", default=None, help="real metadata root for the semantics "
                   "(default: $ZSL_BENCH_DATA, else the cache)")
    p.add_argument("--out", default=None, help="parent directory of the dataset dirs "
                   "(default: <cache>/sim/<preset>-seed<seed>, a sibling per generator version)")
    p.add_argument("--force", action="store_true", help="regenerate even when cached")
    p.set_defaults(func=cmd_sim)


def cmd_sim(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..data.datasets import parse_dataset_list
    from ..data.sim import PRESETS, generate, is_cached, locate
    from ..errors import ConfigError

    if args.preset not in PRESETS:
        raise ConfigError(f"--preset: unknown preset '{args.preset}'; valid: {', '.join(PRESETS)}")
    if args.seed < 0:
        raise ConfigError(f"--seed: must be >= 0, got {args.seed}")
    gen = args.generator
    out = Path(args.out).expanduser() if args.out else None  # None: the cache directory of each dataset
    for name in parse_dataset_list(args.dataset):
        ddir, params, real = locate(name, args.preset, args.seed, args.data_root, out, gen)
        cached = not args.force and is_cached(ddir, args.preset, args.seed, params, real)
        if not cached:  # (a cached dataset needs no second locate, which hashes the real files again)
            ddir = generate(name, args.preset, args.seed, data_root=args.data_root, out_root=out,
                            force=args.force, progress=True, generator=gen)
        print(f"{name}\t{'cached' if cached else 'generated'}\t{ddir}")
    return 0
