"""How well a results file ranks methods as the papers do: Kendall's tau per dataset.

    python benchmarks/rank_agreement.py results/main_table/results.csv results/transzero_cpu/results.csv \
        --published ../shared/reference/published_results.csv --datasets awa2

For each dataset: the mean ZSL accuracy of every method over its rows (all seeds), against the
published ZSL accuracy of the methods that have one (the first row per method in the published
file, whose names map to registry names by ignoring case, spaces, hyphens and underscores), and Kendall's tau-b with
its two-sided p-value (scipy), over all such methods and over the six the simulator is calibrated on.
Simulated results are a testbed: this measures whether the testbed orders methods as real data does.
"""

from __future__ import annotations

import argparse
import re
import sys

from zsl_bench.data.sim import RULE_METHODS as CALIBRATION  # the six the simulator is calibrated on


def _key(name: str) -> str:
    return re.sub(r"[\s_-]", "", name.lower())  # tf-VAEGAN -> tfvaegan; TransZero++ stays apart


def main(argv: list[str] | None = None) -> int:
    import pandas as pd
    from scipy.stats import kendalltau

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("results", nargs="+", help="results.csv files (zsl-bench rows)")
    p.add_argument("--published", required=True, help="published_results.csv (method, dataset, zsl_acc, ...)")
    p.add_argument("--datasets", default="cub,sun,awa2,flo", help="comma list (default: all four)")
    args = p.parse_args(argv)
    try:
        rows = pd.concat([pd.read_csv(f) for f in args.results])
        pub = pd.read_csv(args.published)
    except (OSError, ValueError) as exc:
        print(f"rank_agreement: {exc}", file=sys.stderr)
        return 2
    missing = {"method", "dataset", "metric", "value"} - set(rows.columns)
    if missing or not {"method", "dataset", "zsl_acc"} <= set(pub.columns):
        print(f"rank_agreement: need zsl-bench rows (missing {sorted(missing)}) and a published file with "
              "method, dataset, zsl_acc", file=sys.stderr)
        return 2
    for ds in args.datasets.split(","):
        sim = rows[(rows.dataset == ds) & (rows.metric == "zsl_acc")].groupby("method").value.mean()
        sim.index = [_key(m) for m in sim.index]
        ref = pub[(pub.dataset.str.lower() == ds) & pub.zsl_acc.notna()].drop_duplicates("method")
        published = {_key(m): v for m, v in zip(ref.method, ref.zsl_acc)}
        both = [m for m in sim.index if m in published]
        print(f"{ds}: simulated / published ZSL: "
              + ", ".join(f"{m} {sim[m]:.1f}/{published[m]:.1f}" for m in both))
        for label, names in (("all", both), ("calibration methods", [m for m in CALIBRATION if m in both])):
            if len(names) < 3:
                print(f"  {label}: fewer than 3 methods with both numbers")
                continue
            tau = kendalltau([published[m] for m in names], [sim[m] for m in names])
            print(f"  {label} ({len(names)}): Kendall tau {tau.statistic:.2f}, p {tau.pvalue:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
