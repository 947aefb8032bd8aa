"""Statistics of the class semantics that generator v2 (``zsl_bench.data.sim``) fits its generated ones to.

Reads the real ``att_splits.mat`` (and ``image_index.npz`` for the unseen classes) of each dataset under
a data root and prints, per dataset:

- nearest-class cosine: for each class, the largest cosine to another class, on ``att`` as the loader
  uses it (the published columns); median and quartiles over classes;
- attribute density: the fraction of class-attribute entries above ``DENSITY_LEVEL`` x the matrix's
  99th percentile, on ``original_att`` (clipped at 0; AWA2 marks missing values -1) when the file has
  it, else on ``att`` (FLO);
- unseen mean cosine: the mean pairwise cosine among the unseen classes (FLO's file has no per-image
  labels, so its unseen classes are unknown: the mean over all class pairs instead).

Usage: ``python benchmarks/sim_semantic_stats.py [--data-root ../shared/data/zsl] [--json]``; with
``--json`` one object per dataset (the table ``sim.SEMANTIC_TARGETS`` ships) and, with ``--sim-preset``,
the same statistics of a simulated dataset's generated semantics instead.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from zsl_bench.data.sim_common import semantic_stats


def real_semantics(ddir: Path) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """(att [A, K], original_att [A, K] or None, unseen class ids or None) of one dataset directory."""
    import scipy.io

    mat = scipy.io.loadmat(ddir / "att_splits.mat")
    original = np.asarray(mat["original_att"], dtype=np.float64) if "original_att" in mat else None
    unseen = None
    if (ddir / "image_index.npz").is_file():
        labels = np.load(ddir / "image_index.npz")["labels"].astype(np.int64)
        unseen = np.unique(labels[mat["test_unseen_loc"].ravel().astype(np.int64) - 1])
    return np.asarray(mat["att"], dtype=np.float64), original, unseen


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-root", default="../shared/data/zsl")
    ap.add_argument("--datasets", default="cub,sun,awa2,flo")
    ap.add_argument("--sim-preset", default=None, help="report a generated dataset (v2, seed 0) instead")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    out = {}
    for name in args.datasets.split(","):
        from zsl_bench.data.datasets import get_spec

        spec = get_spec(name)
        if args.sim_preset:
            import tempfile

            from zsl_bench.data import sim

            with tempfile.TemporaryDirectory() as tmp:  # generated semantics: no real metadata there
                ddir = sim.generate(name, args.sim_preset, out_root=tmp, data_root=tmp)
                out[name] = semantic_stats(*real_semantics(ddir))
        else:
            out[name] = semantic_stats(*real_semantics(Path(args.data_root).expanduser() / spec.dirname))
    if args.json:
        print(json.dumps(out, indent=1))
        return
    print(f"{'dataset':8s} {'nn_cos q25':>10s} {'median':>7s} {'q75':>7s} {'density':>8s} {'unseen_cos':>10s}")
    for name, s in out.items():
        print(f"{name:8s} {s['nn_cos_q25']:10.3f} {s['nn_cos_median']:7.3f} {s['nn_cos_q75']:7.3f} "
              f"{s['density']:8.3f} {s['unseen_mean_cos']:10.3f}")


if __name__ == "__main__":
    main()
