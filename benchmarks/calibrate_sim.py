"""Calibrate the simulated benchmark against published baselines (SIMULATION.md "Calibration").

For every dataset, semantics source and data seed, this generates the ``small`` preset and runs the
calibration methods through the real pipeline (``zsl_bench.runner.run_one``, val protocol, each
method's dataset preset, one run per training seed), so the numbers are what
``zsl-bench run <method> --sim`` reports. It prints, per dataset and semantics source, each
method's ZSL accuracy and H (mean ± sd over data seeds x training seeds) beside its published
real-data value (``../shared/reference/published_results.csv``), and the gap.

Calibration methods: the classic pooled-feature baselines (ALE, DeViSE, SJE, ESZSL, SAE, LATEM) and
DAZLE, the one attention baseline, which fixes how much region attention gains over pooled
features. MSDN, MSDN++ and TransZero are refused: their numbers never inform the generator's knobs.

Semantics sources: ``generated`` (no real metadata visible to the generator: it makes semantics
with the real datasets' statistics) and ``real`` (``att_splits.mat`` and word vectors from
``--data-root``, default ``$ZSL_BENCH_SHARED_DATA`` or ``../shared/data/zsl``). FLO has no published
classic-baseline or DAZLE number: its rows are reported without a target.

Cells are appended to ``<out>/calibration.jsonl`` as they finish; a rerun with the same arguments
skips finished cells (``--fresh`` starts over). Examples::

    python benchmarks/calibrate_sim.py --datasets cub --methods eszsl,ale --data-seeds 0 --seeds 0
    python benchmarks/calibrate_sim.py --semantics generated,real --data-seeds 0,1 --seeds 0,1
    python benchmarks/calibrate_sim.py --datasets awa2 --set awa2.region_noise=0.4 --set occlusion=0.2

Generator v4's rule (two knobs per cell: the noise scale and the part kernel width; sim.py's record,
"GENERATOR V4") probes with ``--noise-scale D=S --set D.kernel_width=W``; ``--probes`` runs nothing
and prints every probe of the given records, each cell's choice and the next probe::

    python benchmarks/calibrate_sim.py --generator 3.0 --datasets awa2 --semantics real \
        --methods eszsl,sae,ale,devise,sje,dazle --data-seeds 0,1 --noise-scale awa2=0.7 \
        --set awa2.kernel_width=0.08 --out OUT
    python benchmarks/calibrate_sim.py --probes OUT/calibration.jsonl --datasets awa2 --semantics real \
        --data-seeds 0,1 --seeds 0
"""

from __future__ import annotations

import argparse
import ast
import csv
import hashlib
import json
import logging
import math
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

from zsl_bench.data import sim
from zsl_bench.data.datasets import get_spec, parse_dataset_list
from zsl_bench.data.loader import load_from_dir, read_sim_meta
from zsl_bench.errors import ConfigError, ZSLError
from zsl_bench.runner import RunSpec, run_one

log = logging.getLogger("calibrate_sim")
HERE = Path(__file__).resolve().parent
PUBLISHED = HERE.parent.parent / "shared" / "reference" / "published_results.csv"
CALIBRATION_METHODS = ("ale", "devise", "sje", "eszsl", "sae", "latem", "dazle")
NEVER = ("msdn", "msdnpp", "transzero")  # the methods under study (SIMULATION.md)
PUBLISHED_NAME = {"ale": "ALE", "devise": "DeViSE", "sje": "SJE", "eszsl": "ESZSL", "sae": "SAE",
                  "latem": "LATEM", "dazle": "DAZLE"}
SEMANTICS = ("generated", "real")


def published_targets(path: Path) -> dict[tuple[str, str], dict[str, float]]:
    """(method, dataset) -> {"zsl_acc", "h"} from the published-results table (calibration methods only)."""
    by_name = {v.lower(): k for k, v in PUBLISHED_NAME.items()}
    out: dict[tuple[str, str], dict[str, float]] = {}
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            method = by_name.get(row["method"].strip().lower())
            if method is None or not row.get("zsl_acc"):
                continue
            out[(method, row["dataset"].strip().lower())] = {
                "zsl_acc": float(row["zsl_acc"]), "h": float(row["h"]) if row.get("h") else math.nan}
    return out


def parse_overrides(items: list[str]) -> dict[str, dict[str, Any]]:
    """``KEY=VALUE`` (every dataset) or ``DATASET.KEY=VALUE`` -> {dataset or "*": {key: value}}."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE or DATASET.KEY=VALUE")
        scope, _, name = key.rpartition(".")
        try:
            parsed = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            parsed = value
        out.setdefault(scope.lower() or "*", {})[name] = parsed
    return out


def _generate(name: str, seed: int, data_root: str, out: Path, generator: str | None,
              overrides: dict[str, Any]) -> Path:
    return sim.generate(name, "small", seed, data_root=data_root, out_root=out, force=True,
                        generator=generator, **overrides)


def calibrate_cell(name: str, semantics: str, data_seed: int, runs: list[tuple[str, int]], *,
                   out: Path, real_root: str, generator: str | None,
                   overrides: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Generate one dataset (small, ``data_seed``, one semantics source); yield one record per method
    and seed as it finishes (the caller journals each, so a killed calibration loses one run)."""
    with tempfile.TemporaryDirectory(prefix="calib-empty-") as empty:
        root = real_root if semantics == "real" else empty  # nothing real visible: generated semantics
        t0 = time.perf_counter()
        ddir = _generate(name, data_seed, root, out / f"{semantics}-seed{data_seed}", generator, overrides)
        gen_s = time.perf_counter() - t0
    meta = read_sim_meta(ddir / "sim.json")
    if bool(meta.get("real_semantics")) != (semantics == "real"):
        raise ZSLError(f"{ddir}: asked for {semantics} semantics, the generator used "
                       f"{'real' if meta.get('real_semantics') else 'generated'} ones")
    data = load_from_dir(name, ddir, source="simulated", root=ddir.parent, provenance=meta)
    for method, seed in runs:  # (method, training seed)
        spec = RunSpec(method, name, seed=seed, sim_preset="small", sim_seed=data_seed, protocol="val")
        with tempfile.TemporaryDirectory(prefix="calib-run-") as run_dir:
            res = run_one(spec, out_dir=Path(run_dir), data=data, progress=False)
        yield {
            "dataset": name, "semantics": semantics, "data_seed": data_seed, "method": method,
            "seed": seed, "generator": meta.get("generator"), "overrides": overrides,
            "zsl_acc": round(res.metrics["zsl_acc"], 2), "h": round(res.metrics["h"], 2),
            "u": round(res.metrics["u"], 2), "s": round(res.metrics["s"], 2),
            "chance": round(100.0 / meta["unseen"], 2), "wall_s": round(res.wall_time_s, 1),
            "generate_s": round(gen_s, 1)}
        log.info("%s %s data seed %d %s seed %d: ZSL %.1f H %.1f (%.0fs)", name, semantics, data_seed,
                 method, seed, res.metrics["zsl_acc"], res.metrics["h"], res.wall_time_s)


def _mean_sd(xs: list[float]) -> str:
    if not xs:
        return "–"
    if len(xs) == 1:
        return f"{xs[0]:.1f}"
    return f"{statistics.fmean(xs):.1f} ± {statistics.stdev(xs):.1f}"


def _gap(v: float) -> str:
    return "–" if math.isnan(v) else f"{v:+.1f}"


RULE_CLASSIC = sim.RULE_CLASSIC  # the rule's classic mean (LATEM came later)


def _spread(rs: list[dict[str, Any]]) -> tuple[str, str]:
    """(sd of the per-data-seed means, sd over training seeds pooled within data seeds), ZSL points."""
    by_draw: dict[int, list[float]] = {}
    for r in rs:
        by_draw.setdefault(r["data_seed"], []).append(r["zsl_acc"])
    means = [statistics.fmean(v) for v in by_draw.values()]
    within = [(x - statistics.fmean(v)) ** 2 for v in by_draw.values() for x in v]
    dof = sum(len(v) - 1 for v in by_draw.values())
    return (f"{statistics.stdev(means):.1f}" if len(means) > 1 else "–",
            f"{math.sqrt(sum(within) / dof):.1f}" if dof else "–")


def rule_gaps(records: list[dict[str, Any]], targets: dict[tuple[str, str], dict[str, float]]
              ) -> dict[tuple[str, str], dict[str, Any]]:
    """The calibration rule's inputs per (dataset, semantics) (sim.py's record): the classic gap, the
    mean over ESZSL, SAE, ALE, DeViSE and SJE of (mean ZSL - published), leaving out methods below 3x
    chance; the DAZLE gap; and DAZLE's gain over the classic mean beside the published one."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for ds, sem in sorted({(r["dataset"], r["semantics"]) for r in records}):
        mean = {m: statistics.fmean(z) for m in sim.RULE_METHODS
                if (z := [r["zsl_acc"] for r in records if (r["dataset"], r["semantics"], r["method"]) == (ds, sem, m)])}
        chance = max((r["chance"] for r in records if (r["dataset"], r["semantics"]) == (ds, sem)), default=0.0)
        kept = [m for m in RULE_CLASSIC if m in mean and (m, ds) in targets and mean[m] >= 3 * chance]
        left = [m for m in RULE_CLASSIC if m in mean and (m, ds) in targets and m not in kept]
        got: dict[str, Any] = {"classic": kept, "left_out": left}
        if kept:
            got["classic_gap"] = statistics.fmean(mean[m] - targets[(m, ds)]["zsl_acc"] for m in kept)
        if "dazle" in mean and ("dazle", ds) in targets:
            got["dazle_gap"] = mean["dazle"] - targets[("dazle", ds)]["zsl_acc"]
            if kept:
                got["gain"] = mean["dazle"] - statistics.fmean(mean[m] for m in kept)
                got["gain_published"] = targets[("dazle", ds)]["zsl_acc"] - statistics.fmean(
                    targets[(m, ds)]["zsl_acc"] for m in kept)
        out[(ds, sem)] = got
    return out


def _record_params(record: dict[str, Any]) -> Any:
    """The small preset's parameters a record's data were made with: its overrides over its
    generator's calibrated cell."""
    return sim.preset_params("small", record["dataset"], record["generator"], record["semantics"],
                             **(record.get("overrides") or {}))


def _knobs_of(params: Any) -> tuple[float, float]:
    return round(params.strength_noise / sim.DEFAULTS.strength_noise, 3), float(params.kernel_width)


def knobs(record: dict[str, Any]) -> tuple[float, float]:
    """(noise scale, part kernel width) of the data a record ran on: its overrides over its generator's
    calibrated cell (the two knobs of generator v4's rule; the scale as ``sim.noise_level`` writes it)."""
    return _knobs_of(_record_params(record))


def on_model(record: dict[str, Any], generator: str = "4.0") -> bool:
    """Whether a record ran on ``generator``'s data for its cell up to the two knobs of v4's rule: its
    parameters differ from the cell's only in the kernel width and in the noise knobs, and those lie
    on the noise-scale axis (``sim.noise_level`` of the record's scale). v2's AWA2 (24 images per
    class), a single noise knob moved by ``--set`` and v1's records (other fields) are not."""
    if sim.resolve_generator(record["generator"]) == "1.2":
        return False
    params = _record_params(record)
    want = asdict(sim.preset_params("small", record["dataset"], generator, record["semantics"]))
    got = asdict(params)
    if {k for k in want if want[k] != got[k]} - {*sim.NOISE_KNOBS, "kernel_width"}:
        return False
    return {k: got[k] for k in sim.NOISE_KNOBS} == sim.noise_level(_knobs_of(params)[0])


# Generator v4's rule searches the noise scale and the part kernel width in this box: a kernel under
# 0.06 of the side is under half a cell on the small preset's 7 x 7 grid (a part in one cell).
S_RANGE, W_RANGE = (0.5, 1.5), (0.06, 0.4)
RULE_TOLERANCE = 1.0  # ZSL points: a probe with both gaps within it ends a cell's search


def plane_solution(points: list[tuple[float, float, float, float]]) -> tuple[float, float] | None:
    """Generator v4's rule, one step: ``points`` are probes (s, w, classic gap, DAZLE gap); fit each gap
    by least squares to a plane ``a + b*s + c*w`` and return the (s, w) where both planes are zero,
    clipped to ``S_RANGE`` x ``W_RANGE`` and rounded to 0.01 (None unless 3 probes off one line,
    or when the planes are parallel)."""
    import numpy as np

    x = np.array([[1.0, s, w] for s, w, _, _ in points]).reshape(-1, 3)
    if np.linalg.matrix_rank(x) < 3:
        return None
    coef = [np.linalg.lstsq(x, np.array([p[k] for p in points]), rcond=None)[0] for k in (2, 3)]
    a = np.array([[c[1], c[2]] for c in coef])
    if abs(np.linalg.det(a)) < 1e-9:
        return None
    s, w = np.linalg.solve(a, -np.array([c[0] for c in coef]))
    return (round(min(max(float(s), S_RANGE[0]), S_RANGE[1]), 2),
            round(min(max(float(w), W_RANGE[0]), W_RANGE[1]), 2))


def rule_choice(records: list[dict[str, Any]], targets: dict[tuple[str, str], dict[str, float]],
                data_seeds: list[int], seeds: list[int]) -> dict[tuple[str, str], dict[str, Any]]:
    """Generator v4's rule per (dataset, semantics) over every probe on v4's data (``on_model``): a probe
    is a (noise scale, kernel width) with all of ``data_seeds`` x ``seeds`` for the rule's methods, each
    run counted once (the first record of a (method, data seed, training seed) at those knobs).
    Per cell: ``probes`` [(s, w, classic gap, DAZLE gap, DAZLE's gain, published gain)], ``choice``
    (the probe with the smallest larger |gap|: (that |gap|, s, w)), ``next`` (the plane solution over
    the probes: the next probe) and ``done``: the search stops when a probe has both gaps within
    ``RULE_TOLERANCE`` points or the next probe is a probed point."""
    rule = sim.RULE_METHODS
    want = {(d, s) for d in data_seeds for s in seeds}
    groups: dict[tuple[str, str, float, float], list[dict[str, Any]]] = {}
    seen: set[tuple[Any, ...]] = set()
    for r in records:
        if (r["data_seed"], r["seed"]) in want and r["method"] in rule and on_model(r):
            key = (r["dataset"], r["semantics"], *knobs(r))
            run = (*key, r["data_seed"], r["seed"], r["method"])
            if run in seen:  # the same run on the same data twice (an exploratory run, a rerun): count it once
                continue
            seen.add(run)
            groups.setdefault(key, []).append(r)
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for key in sorted(groups):
        rs = groups[key]
        if any({(r["data_seed"], r["seed"]) for r in rs if r["method"] == m} != want for m in rule):
            continue  # an incomplete probe is not a probe
        g = rule_gaps(rs, targets).get(key[:2], {})
        if "classic_gap" in g and "dazle_gap" in g:
            out.setdefault(key[:2], {"probes": []})["probes"].append(
                (*key[2:], g["classic_gap"], g["dazle_gap"], g["gain"], g["gain_published"]))
    for cell in out.values():
        cell["choice"] = min((max(abs(c), abs(d)), s, w) for s, w, c, d, _, _ in cell["probes"])
        cell["next"] = plane_solution([pr[:4] for pr in cell["probes"]])
        cell["done"] = cell["choice"][0] <= RULE_TOLERANCE or any(
            cell["next"] == (round(s, 2), round(w, 2)) for s, w, *_ in cell["probes"])
    return out


def probes_summary(records: list[dict[str, Any]], targets: dict[tuple[str, str], dict[str, float]],
                   data_seeds: list[int], seeds: list[int]) -> str:
    """``rule_choice`` as lines: every probe with its two gaps and DAZLE's gain, then each cell's choice
    and plane solution."""
    lines = []
    for (ds, sem), cell in rule_choice(records, targets, data_seeds, seeds).items():
        for s, w, c, d, gain, pub in cell["probes"]:
            lines.append(f"- probe, {ds} ({sem} semantics): s {s:.3f} w {w:.3f}: classic gap {_gap(c)}, "
                         f"DAZLE gap {_gap(d)}, DAZLE - classic mean {_gap(gain)} (published {_gap(pub)})")
        worst, s, w = cell["choice"]
        sol = cell["next"]
        lines.append(f"- choice, {ds} ({sem} semantics): {len(cell['probes'])} probes; smallest larger |gap| "
                     f"{worst:.1f} at s {s:.3f} w {w:.3f}; plane solution "
                     + (f"s {sol[0]:.2f} w {sol[1]:.2f}" if sol else "none (no 3 probes off one line)")
                     + ("; done" if cell["done"] else "; next probe: the plane solution"))
    return "\n".join(lines)


def summary(records: list[dict[str, Any]], targets: dict[tuple[str, str], dict[str, float]]) -> str:
    """Markdown: per dataset x semantics x method, achieved vs published (ZSL spread over data seeds and
    over training seeds), the mean |gap|, and the calibration rule's gaps."""
    lines = ["| dataset | semantics | method | n | ZSL (sim) | sd data | sd train | ZSL (published) | gap | "
             "H (sim) | H (published) | gap |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    gaps: dict[tuple[str, str], list[float]] = {}
    cells = sorted({(r["dataset"], r["semantics"], r["method"]) for r in records},
                   key=lambda c: (c[0], c[1], CALIBRATION_METHODS.index(c[2]) if c[2] in CALIBRATION_METHODS else 99))
    for ds, sem, m in cells:
        rs = [r for r in records if (r["dataset"], r["semantics"], r["method"]) == (ds, sem, m)]
        z, h = [r["zsl_acc"] for r in rs], [r["h"] for r in rs]
        t = targets.get((m, ds))
        gz = statistics.fmean(z) - t["zsl_acc"] if t else math.nan
        gh = statistics.fmean(h) - t["h"] if t and not math.isnan(t["h"]) else math.nan
        if t:
            gaps.setdefault((ds, sem), []).append(abs(gz))
        sd_data, sd_train = _spread(rs)
        lines.append(f"| {ds} | {sem} | {m} | {len(rs)} | {_mean_sd(z)} | {sd_data} | {sd_train} | "
                     f"{t['zsl_acc'] if t else '–'} | {_gap(gz)} | {_mean_sd(h)} | {t['h'] if t else '–'} | {_gap(gh)} |")
    lines.append("")
    for (ds, sem), g in sorted(gaps.items()):
        lines.append(f"- {ds} ({sem} semantics): mean |ZSL gap| {statistics.fmean(g):.1f} over {len(g)} methods, "
                     f"max {max(g):.1f}")
    for (ds, sem), r in rule_gaps(records, targets).items():
        if "classic_gap" not in r and "dazle_gap" not in r:
            continue
        bits = [f"classic gap {_gap(r.get('classic_gap', math.nan))} ({', '.join(r['classic'])}"
                + (f"; below 3x chance, left out: {', '.join(r['left_out'])})" if r["left_out"] else ")"),
                f"DAZLE gap {_gap(r.get('dazle_gap', math.nan))}"]
        if "gain" in r:
            bits.append(f"DAZLE - classic mean {_gap(r['gain'])} (published {_gap(r['gain_published'])})")
        lines.append(f"- rule, {ds} ({sem} semantics): " + "; ".join(bits))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", default="all")
    p.add_argument("--methods", default=",".join(CALIBRATION_METHODS),
                   help=f"calibration methods (default and valid: {','.join(CALIBRATION_METHODS)})")
    p.add_argument("--semantics", default="generated", help="generated, real, or generated,real")
    p.add_argument("--data-root", default=None,
                   help="real metadata for --semantics real (default $ZSL_BENCH_SHARED_DATA, else ../shared/data/zsl)")
    p.add_argument("--data-seeds", default="0", help="generator seeds, e.g. 0,1")
    p.add_argument("--seeds", default="0", help="training seeds, e.g. 0,1")
    p.add_argument("--generator", default=None,
                   help=f"generator version ({', '.join(sim.GENERATORS)}; default {sim.DEFAULT_GENERATOR})")
    p.add_argument("--set", action="append", default=[], metavar="[DATASET.]KEY=VALUE",
                   help="override a generator parameter (exploration; the chosen values live in sim.py)")
    p.add_argument("--noise-scale", action="append", default=[], metavar="[DATASET=]S",
                   help="exploration: every sim.NOISE_KNOBS field at S x its default (--set wins)")
    p.add_argument("--out", default=None, help="work directory (default a fresh one under /tmp)")
    p.add_argument("--published", default=str(PUBLISHED), help="published_results.csv")
    p.add_argument("--fresh", action="store_true", help="ignore finished cells in <out>/calibration.jsonl")
    p.add_argument("--probes", nargs="+", default=None, metavar="JSONL",
                   help="run nothing: print generator v4's rule over the records in these files (every probed "
                        "noise scale and kernel width of --datasets/--semantics with all of --data-seeds x --seeds)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    log.setLevel(logging.INFO)
    try:
        methods = [m.strip().lower() for m in args.methods.split(",") if m.strip()]
        bad = [m for m in methods if m not in CALIBRATION_METHODS]
        if bad:
            why = " (never used to choose the generator's knobs)" if set(bad) & set(NEVER) else ""
            raise ConfigError(f"--methods: {', '.join(bad)} not a calibration method{why}; valid: "
                              f"{', '.join(CALIBRATION_METHODS)}")
        sources = [s.strip() for s in args.semantics.split(",") if s.strip()]
        if not sources or any(s not in SEMANTICS for s in sources):
            raise ConfigError(f"--semantics {args.semantics!r}: valid: generated, real, generated,real")
        data_seeds = [int(s) for s in args.data_seeds.split(",")]
        seeds = [int(s) for s in args.seeds.split(",")]
        real_root = args.data_root or os.environ.get("ZSL_BENCH_SHARED_DATA") or str(HERE.parent.parent / "shared" / "data" / "zsl")
        datasets = parse_dataset_list(args.datasets)
        if "real" in sources:
            missing = [n for n in datasets if not (Path(real_root) / get_spec(n).dirname / "att_splits.mat").is_file()]
            if missing:
                raise ConfigError(f"--semantics real: no att_splits.mat under {real_root} for "
                                  f"{', '.join(missing)}; give --data-root")
        overrides: dict[str, dict[str, Any]] = {}
        for item in args.noise_scale:  # "[DATASET=]S"
            scope, _, value = item.rpartition("=")
            try:
                scale = float(value)
            except ValueError:
                raise ConfigError(f"--noise-scale {item!r}: expected S or DATASET=S, S a number >= 0") from None
            overrides[scope.lower() or "*"] = sim.noise_level(scale)
        for scope, kv in parse_overrides(args.set).items():
            overrides.setdefault(scope, {}).update(kv)
        generator = sim.resolve_generator(args.generator)
        for name in datasets:
            sim.preset_params("small", name, generator, **{**overrides.get("*", {}), **overrides.get(name, {})})
        targets = published_targets(Path(args.published))
        if args.probes:
            records = [json.loads(ln) for f in args.probes for ln in Path(f).read_text().splitlines() if ln.strip()]
            records = [r for r in records if r["dataset"] in datasets and r["semantics"] in sources]
            print(probes_summary(records, targets, data_seeds, seeds))
            return 0
    except (ConfigError, ValueError, OSError) as exc:
        print(f"calibrate_sim: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="zsl-calib-"))
    out.mkdir(parents=True, exist_ok=True)
    journal = out / "calibration.jsonl"
    records: list[dict[str, Any]] = []
    if journal.is_file() and not args.fresh:
        records = [json.loads(ln) for ln in journal.read_text().splitlines() if ln.strip()]
    keys: dict[tuple[str, str], str] = {}
    for name in datasets:
        ov = {**overrides.get("*", {}), **overrides.get(name, {})}
        for sem in sources:
            # keyed by the effective parameters: a record made under other calibrated knobs is not reused
            params = sim.preset_params("small", name, generator, sem, **ov)  # v1 has no per-source knobs
            key = keys[(name, sem)] = hashlib.sha256(json.dumps([generator, asdict(params)], sort_keys=True,
                                                                default=str).encode()).hexdigest()[:12]
            for ds in data_seeds:
                done = {(r["method"], r["seed"]) for r in records if (r["dataset"], r["semantics"], r["data_seed"],
                                                                      r.get("key")) == (name, sem, ds, key)}
                todo = [(m, s) for m in methods for s in seeds if (m, s) not in done]
                if not todo:
                    continue
                for rec in calibrate_cell(name, sem, ds, todo, out=out, real_root=real_root,
                                          generator=generator, overrides=ov):
                    rec["key"] = key
                    records.append(rec)
                    with journal.open("a") as fh:
                        fh.write(json.dumps(rec, sort_keys=True) + "\n")
    wanted = [r for r in records if r.get("key") == keys.get((r["dataset"], r["semantics"]))
              and r["data_seed"] in data_seeds and r["seed"] in seeds and r["method"] in methods]
    print(f"simulated benchmark calibration, generator {sim.GENERATORS[generator]} (small preset; "
          f"records: {journal})")
    print(summary(wanted, targets))
    return 0


if __name__ == "__main__":
    sys.exit(main())
