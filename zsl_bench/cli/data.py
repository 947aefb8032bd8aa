"""``zsl-bench data info|verify DATASET``: summarise or fully check one dataset, real or simulated."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..data.zsldata import ZSLData

INFO_EXAMPLES = """examples:
  zsl-bench data info cub --data-root ~/zsl
  zsl-bench data info awa2 --sim          the simulated benchmark, preset small
"""
VERIFY_EXAMPLES = """examples:
  zsl-bench data verify sun --data-root ~/zsl
  zsl-bench data verify cub --sim tiny --batch-size 128
"""


def register(sub: argparse._SubParsersAction) -> None:
    info = sub.add_parser("info", help="summarise a dataset (classes, splits, features, source)",
                          description="Print a readable summary of one dataset.", epilog=INFO_EXAMPLES,
                          formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(info)
    info.set_defaults(func=cmd_info)
    verify = sub.add_parser("verify", help="run every check, print sha256 of each file, scan features",
                            description="Run every load-time check, print the sha256 of each file used and "
                                        "scan the features for NaN/Inf in batches; exit non-zero on failure.",
                            epilog=VERIFY_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(verify)
    verify.add_argument("--batch-size", type=_positive_int, default=256, metavar="N",
                        help="rows per batch when scanning features (default 256)")
    verify.set_defaults(func=cmd_verify)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("dataset", help="a dataset: cub, sun, ... (zsl-bench ls datasets)")
    p.add_argument("--data-root", metavar="DIR", help="real data root (default $ZSL_BENCH_DATA, else the cache)")
    p.add_argument("--sim", nargs="?", const="small", default=None, metavar="PRESET",
                   help="use the simulated benchmark (preset tiny|small|full; default small; generated if missing)")
    p.add_argument("--sim-seed", type=int, default=0, metavar="SEED", help="generator seed (default 0)")


def _positive_int(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
    return n


def _load(args: argparse.Namespace) -> ZSLData:
    from ..data.loader import load_dataset

    return load_dataset(args.dataset, args.data_root, sim_preset=args.sim, sim_seed=args.sim_seed)


def cmd_info(args: argparse.Namespace) -> int:
    data = _load(args)
    try:
        for line in describe(data):
            print(line)
    finally:
        if data.features is not None:
            data.features.close()
    return 0


def describe(data: ZSLData) -> list[str]:
    """The lines of ``data info`` (pure: easy to test)."""
    from ..data.datasets import get_spec

    spec = get_spec(data.name)
    prov = data.provenance
    source = data.source
    if data.is_simulated:
        bits = [f"{k} {prov[k]}" for k in ("preset", "seed", "generator", "generator_version") if k in prov]
        source += f" ({', '.join(bits)})" if bits else ""
    title = f"{spec.dirname} (simulated, modelled on {spec.description})" if data.is_simulated \
        else f"{spec.dirname}: {spec.description}"
    lines = [title, f"  source          {source}", f"  directory       {prov.get('dir')}"]
    if data.has_labels:
        classes = f"{data.num_classes} ({len(data.seen_classes)} seen / {len(data.unseen_classes)} unseen)"
    else:
        classes = (f"{data.num_classes} (seen/unseen unknown: no per-image labels; published "
                   f"{spec.seen}/{spec.unseen})")
    lines += [f"  classes         {classes}",
              f"  semantics       {data.att.shape[1]}-d {spec.semantic_kind}",
              "  word vectors    " + (f"yes {data.w2v.shape[0]}×{data.w2v.shape[1]}" if data.w2v is not None else "no"),
              "  labels          " + ("yes" if data.has_labels else "unknown (image_index.npz, res101.mat or "
                                                                    "MSDN HDF5 absent)"),
              f"  images          {data.num_images}",
              "  splits (images)"]
    for name in ("trainval", "test_seen", "test_unseen"):
        lines.append(f"    {name:<14}{len(data.splits[name]):>7}")
    lines.append("  honest validation (train_loc/val_loc minus test_seen)")
    for name in ("train", "val", "val_train", "val_seen", "val_unseen"):
        n = len(data.splits[name])
        note = "  n/a: needs labels" if name in ("val_train", "val_seen") and not data.has_labels else ""
        lines.append(f"    {name:<14}{n:>7}{note}")
    if data.has_labels:
        lines.append(f"    classes       {len(data.val_seen_classes)} play seen / "
                     f"{len(data.val_unseen_classes)} play unseen")
    if data.features is None:
        lines.append("  features        none (features.h5, MSDN feature-map HDF5 or res101.mat absent)")
    else:
        f = data.features
        regions = f"{f.num_regions} regions" if f.num_regions else "pooled only"
        lines.append(f"  features        {f.path.name}: {f.num_rows} × {f.feature_dim}, {regions}, {f.dtype}")
    for fs in data.feature_sets:  # what a method is fed: zsl_bench/data/features.py
        lines.append(f"  feature set     {fs.name:<12} {fs.label(fs.kinds[0])}")
    return lines


def cmd_verify(args: argparse.Namespace) -> int:
    from pathlib import Path

    from tqdm import tqdm

    from ..data.loader import read_manifest, scan_features, sha256_file
    from ..errors import DataError

    data = _load(args)  # every load-time check runs here
    try:
        print(f"{data.name.upper()} ({data.source}): load-time checks passed "
              f"({data.num_images} images, {data.num_classes} classes)")
        files = sorted({Path(p) for p in data.provenance.get("files", {}).values()})
        manifest = read_manifest(data.provenance["root"])  # published hashes, where the root has them
        for path in files:
            digest = sha256_file(path)
            want = manifest.get(path.resolve())
            if want is not None and want != digest:
                raise DataError(f"{path}: sha256 {digest} differs from MANIFEST.tsv ({want}); the file changed")
            print(f"sha256 {digest}  {path}" + ("  (matches MANIFEST.tsv)" if want else ""))
        if data.features is None:
            print("features: none to scan")
        else:
            store = data.features
            with tqdm(total=store.num_rows, desc="scanning features", unit="img", leave=False,
                      disable=None) as bar:  # None: no bar when stderr is not a terminal
                done = 0
                for rows in scan_features(store, args.batch_size):
                    bar.update(rows - done)
                    done = rows
            print(f"features: {store.num_rows} rows scanned, no NaN/Inf ({store.path})")
    finally:
        if data.features is not None:
            data.features.close()
    print("OK")
    return 0
