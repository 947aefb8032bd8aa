"""Tables from result rows: the main table as papers print it, and the ablation table.

Pure functions: rows in (``zsl_bench.results`` long format), text out. Per dataset the columns are
the metrics registered for tables (``metrics.columns("table")``: ZSL accuracy and GZSL U, S, H; the
context reliance extras of simulated data only where rows have them), each
the mean ± sample standard deviation over seeds; the best mean of each column (by the metric's
direction) is bold. Published numbers (``published_results.csv``) can be appended as extra rows
marked with their status; they are not bolded, because papers selected them on the test set.

An ablation (or sweep) table adds, per dataset, the paired difference of each variant to a
reference row in ZSL accuracy and H (``zsl_bench.stats``): units matched by training seed and data
seed, the mean difference ± the half-width of its 95 % t interval, bold where significant; the
caption gives the number of pairs and the difference detectable at that number.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
import re
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import metrics, stats
from .data.datasets import in_table_order
from .errors import DataError
from .fileio import write_text_atomic

KINDS = ("main", "ablation")
PUBLISHED_CAVEAT = ("Published numbers are as reported by their authors, who selected epochs (and often "
                    "the calibration) on the test set (test-oracle); they are not comparable to "
                    "validation-selected results.")


@dataclass(frozen=True)
class Cell:
    """One table cell: mean ± std over ``n`` seeds (``std`` is None for one seed or a published value)."""

    mean: float | None
    std: float | None = None
    n: int = 0
    bold: bool = False
    partial: bool = False  # fewer seeds than the table's other cells (marked with a dagger)


@dataclass(frozen=True)
class DeltaCell:
    """A variant's paired difference to the reference row in one (dataset, metric).

    ``paired`` is None for the reference row itself (printed "reference") and for rows whose
    reference variant has no rows (printed as missing). ``fewer``: fewer pairs than the table's
    other difference cells (the cell shows its n).
    """

    paired: stats.Paired | None = None
    reference: bool = False
    fewer: bool = False


@dataclass
class Table:
    """A rendered-agnostic table: row labels x (dataset, metric) columns, plus its caption."""

    kind: str
    datasets: list[str]
    labels: list[str]
    cells: list[list[Cell]]  # [row][dataset * metric]
    caption: str
    published: list[tuple[str, list[Cell]]] = field(default_factory=list)  # (label, cells)
    label: str = ""
    metrics: list[str] = field(default_factory=lambda: [s.name for s in metrics.columns("table")])  # per dataset
    # Ablation / sweep tables: paired differences to the reference row, per dataset, after the metrics.
    deltas: list[str] = field(default_factory=list)  # metric names with a difference column
    delta_cells: list[list[DeltaCell]] = field(default_factory=list)  # [row][dataset * delta]
    reference: str | None = None  # the reference variant


def _float(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _row_key(r: dict[str, Any], kind: str, multi: dict[str, bool]) -> str:
    method, variant = str(r.get("method", "")), str(r.get("variant", "") or "default")
    if kind == "main":
        label = method if variant == "default" else f"{method} ({variant})"
    else:
        label = f"{method}: {variant}" if multi["method"] else variant
    if multi["protocol"]:
        label += f" [{r.get('protocol', '')}]"
    return label


def build_table(rows: Iterable[dict[str, Any]], kind: str = "main",
                published: list[dict[str, str]] | None = None, reference: str | None = None,
                delta: float = stats.DELTA, order: Sequence[str] = ()) -> Table:
    """Aggregate rows into a :class:`Table`.

    Args:
        rows: long-format result rows (deduplicated: one row per run and metric).
        kind: ``main`` (rows are methods) or ``ablation`` (rows are variants).
        published: rows of a published-results CSV (method, venue, dataset, the table's metrics, status).
        reference: ablation tables: the variant every other row is compared with (see
            :func:`reference_of`); default the first variant of the rows.
        delta: ablation tables: the difference (points) whose required number of pairs the caption gives.
        order: methods (main tables) or variants (ablation tables) whose rows come first, in this order;
            the others follow in input order (default: input order).
    """
    if kind not in KINDS:
        raise DataError(f"bad table kind {kind!r}; valid: {', '.join(KINDS)}")
    if reference is not None and kind != "ablation":
        raise DataError(f"a reference row belongs to ablation tables, not to a {kind} table")
    rows = list(rows)
    # Extras registered for tables (context reliance on simulated data) only when some row has them.
    columns = metrics.columns("table", {str(r.get("metric", "")) for r in rows})
    names = [s.name for s in columns]
    rows = [r for r in rows if str(r.get("metric", "")) in names]
    if not rows:
        raise DataError(f"no result rows with metrics {', '.join(names)} to tabulate")
    # An extra that is 0.0 in every row (context reliance on data drawn without a confounder) says
    # nothing in a paper table: it is left out, and the caption says so.
    zero = metrics.zero_extras(columns, rows)
    if zero:
        columns = [s for s in columns if s not in zero]
        names = [s.name for s in columns]
        rows = [r for r in rows if str(r.get("metric", "")) in names]
    if order:
        rows = _ordered(rows, kind, list(order))
    multi = {"method": len({r.get("method") for r in rows}) > 1,
             "protocol": len({r.get("protocol") for r in rows}) > 1}
    present = {str(r.get("dataset", "")).lower() for r in rows}
    datasets = in_table_order(present)

    values: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    labels: list[str] = []
    for r in rows:
        label = _row_key(r, kind, multi)
        if label not in labels:
            labels.append(label)
        v = _float(r.get("value"))
        if v is not None:
            values[(label, str(r.get("dataset", "")).lower(), str(r["metric"]))].append(v)

    means: list[list[float | None]] = []
    cells: list[list[Cell]] = []
    for label in labels:
        row_cells, row_means = [], []
        for d in datasets:
            for m in names:
                vals = values.get((label, d, m), [])
                mean = statistics.fmean(vals) if vals else None
                std = statistics.stdev(vals) if len(vals) > 1 else None
                row_cells.append(Cell(mean, std, len(vals)))
                row_means.append(mean)
        cells.append(row_cells)
        means.append(row_means)
    # Best per column (by the metric's direction), compared at the printed precision so ties are
    # bold together.
    for j in range(len(datasets) * len(names)):
        col = [round(v, 1) for m in means if (v := m[j]) is not None]
        best = metrics.best_value(col, columns[j % len(columns)].direction)
        if len(col) < 2 or best is None:
            continue
        for row in cells:
            c = row[j]
            if c.mean is not None and round(c.mean, 1) == best:
                row[j] = Cell(c.mean, c.std, c.n, True)
    # Cells over fewer seeds than the others (an unfinished study) are marked, never silently mixed.
    counts = [c.n for row in cells for c in row if c.n]
    n_range = (min(counts), max(counts)) if counts else (0, 0)
    if n_range[0] != n_range[1]:
        cells = [[dataclasses.replace(c, partial=0 < c.n < n_range[1]) for c in row] for row in cells]

    pub = _published_rows(published or [], datasets, names)
    text = caption(rows, kind, bool(pub), n_range, tuple(sorted({c.n for row in cells for c in row if c.partial})),
                   names)
    if zero:
        text += f" Not shown: {_metrics_phrase(zero)}, 0.0 in every row."
    table = Table(kind=kind, datasets=datasets, labels=labels, cells=cells, published=pub, caption=text,
                  label=f"tab:{kind}", metrics=names)
    if kind == "ablation":
        _add_paired(table, rows, multi, reference, delta)
    return table


def _ordered(rows: list[dict[str, Any]], kind: str, order: list[str]) -> list[dict[str, Any]]:
    """``rows`` with those of the methods (main) or variants (ablation) in ``order`` first, in that order."""
    field = "method" if kind == "main" else "variant"

    def name(r: dict[str, Any]) -> str:
        return str(r.get(field, "") or "default")

    present = list(dict.fromkeys(name(r) for r in rows))
    unknown = [o for o in order if o not in present]
    if unknown:
        raise DataError(f"--order: {', '.join(unknown)} not among the rows' {field}s; valid: {', '.join(present)}")
    rank = {o: i for i, o in enumerate(order)}
    return sorted(rows, key=lambda r: rank.get(name(r), len(order)))  # stable: the rest keep input order


DELTA_METRICS = ("zsl_acc", "h")  # the metrics an ablation table compares with its reference row


def split_variant(variant: str) -> tuple[str, list[str]]:
    """``"full,sim.rho=0.5"`` -> ``("full", ["sim.rho=0.5"])``: a grid point's named variant and its
    swept ``SECTION.KEY=value`` parts (``zsl_bench.study.spec.expand_grid`` names points so)."""
    base: list[str] = []
    swept: list[str] = []
    for part in str(variant).split(","):
        key = part.split("=", 1)[0]
        (swept if "=" in part and "." in key else base).append(part)
    return ",".join(base), swept


def reference_of(variant: str, reference: str, variants: Iterable[str]) -> str:
    """The reference variant of ``variant``'s row.

    ``reference`` names a variant of the rows (``full``, ``sim.rho=0``) or a named variant of a grid
    with a sweep (``full`` for points ``full,sim.rho=0.5``): then each point is compared with the
    reference variant at the same swept values.
    """
    if reference in set(variants):
        return reference
    return ",".join([reference, *split_variant(variant)[1]])


def valid_references(variants: Iterable[str]) -> list[str]:
    """The names a reference may take for rows of these variants (variants, then named bases)."""
    variants = list(dict.fromkeys(variants))
    bases = [b for b in dict.fromkeys(split_variant(v)[0] for v in variants) if b and b not in variants]
    return variants + bases


def default_reference(variants: Iterable[str]) -> str:
    """The first variant's named part (``full`` of ``full,sim.rho=0``), else the first variant."""
    first = next(iter(variants))
    return split_variant(first)[0] or first


def _add_paired(table: Table, rows: list[dict[str, Any]], multi: dict[str, bool], reference: str | None,
                delta: float) -> None:
    """Fill ``table``'s difference columns (variant − reference, paired by unit) and extend its caption."""
    variant_of: dict[str, dict[str, Any]] = {}  # label -> its first row (method, variant, protocol)
    for r in rows:
        variant_of.setdefault(_row_key(r, table.kind, multi), r)
    variants = [str(r.get("variant", "") or "default") for r in variant_of.values()]
    valid = valid_references(variants)
    if reference is None:
        reference = default_reference(variants)
    elif reference not in valid:
        raise DataError(f"unknown reference variant {reference!r}; valid: {', '.join(valid)}")
    deltas = [m for m in DELTA_METRICS if m in table.metrics]
    units: dict[tuple[str, str, str], dict[stats.UnitKey, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        v = _float(r.get("value"))
        if v is not None and r["metric"] in deltas:
            key = stats.unit_key(r)
            units[(_row_key(r, table.kind, multi), key[0], str(r["metric"]))][key].append(v)
    per_unit = {k: {u: statistics.fmean(vs) for u, vs in d.items()} for k, d in units.items()}
    cells: list[list[DeltaCell]] = []
    for label in table.labels:
        r = variant_of[label]
        ref_label = _row_key({**r, "variant": reference_of(str(r.get("variant", "") or "default"), reference,
                                                           variants)}, table.kind, multi)
        row = []
        for d in table.datasets:
            for m in deltas:
                if ref_label == label:
                    row.append(DeltaCell(reference=True))
                elif ref_label not in variant_of:
                    row.append(DeltaCell())
                else:
                    row.append(DeltaCell(stats.paired(per_unit.get((label, d, m), {}),
                                                      per_unit.get((ref_label, d, m), {}))))
        cells.append(row)
    counts = [c.paired.n for row in cells for c in row if c.paired is not None]
    most = max(counts, default=0)
    cells = [[dataclasses.replace(c, fewer=c.paired is not None and c.paired.n < most) for c in row]
             for row in cells]
    table.deltas, table.delta_cells, table.reference = deltas, cells, reference
    table.caption += " " + _paired_caption(table, rows, delta)


def paired_power(table: Table, metric: str = "h") -> dict[str, tuple[float | None, int]]:
    """Per dataset: the sd of the paired differences in ``metric`` pooled over the table's variants,
    and the largest number of pairs behind a difference cell (the table's n)."""
    out = {}
    j = table.deltas.index(metric) if metric in table.deltas else None
    for i, d in enumerate(table.datasets):
        found = [] if j is None else [row[i * len(table.deltas) + j].paired for row in table.delta_cells]
        groups = [(p.n, p.sd) for p in found if p is not None]
        out[d] = (stats.pooled_sd(groups), max((n for n, _ in groups), default=0))
    return out


def power_report(rows: Iterable[dict[str, Any]], reference: str | None = None, delta: float = stats.DELTA,
                 alpha: float = stats.ALPHA, power: float = stats.POWER) -> str:
    """Per dataset and metric (ZSL acc, H): the sd of the paired differences to the reference row
    (pooled over variants), the pairs n, the difference detectable at n and the pairs needed for ``delta``."""
    rows = list(rows)
    table = build_table(rows, "ablation", reference=reference)
    compared = sum(1 for row in table.delta_cells if any(c.paired is not None for c in row))
    data_seeds = {stats.unit_key(r)[2] for r in rows if str(r.get("metric")) in table.deltas} - {""}
    unit = "seeds" if len(data_seeds) <= 1 else "pairs"
    head = ("dataset", "metric", "variants", "n", "sd(diff)", "detectable", f"{unit} for {delta:g}")
    lines = [f"Paired differences to the reference row ({table.reference}): variant - reference in points, matched "
             f"by training seed and data seed, sd pooled over {compared} variant row(s); two-sided paired t-test, "
             f"alpha {alpha:g}, power {power:g}; detectable: the smallest difference found at n; "
             f"{unit} for {delta:g}: the {unit} needed to find a {delta:g}-point difference.", "",
             "{:<8} {:<7} {:>8} {:>4} {:>9} {:>11} {:>10}".format(*head)]
    for m in table.deltas:
        for d, (sd, n) in paired_power(table, m).items():
            j = table.datasets.index(d) * len(table.deltas) + table.deltas.index(m)
            counts = sorted({p.n for row in table.delta_cells if (p := row[j].paired) is not None})
            n_text = f"{counts[0]}-{counts[-1]}" if counts and counts[0] != counts[-1] else str(n)
            if sd is None:
                vals = ("--", "--", "--")
            else:
                dd = stats.detectable_difference(sd, n, alpha, power)
                k = stats.pairs_needed(sd, delta, alpha, power)
                vals = (f"{sd:.2f}", "--" if dd is None else f"{dd:.1f}",
                        str(k) if k is not None else f">{stats.MAX_PAIRS}")
            lines.append("{:<8} {:<7} {:>8} {:>4} {:>9} {:>11} {:>10}".format(
                d.upper(), metrics.spec(m).short, compared, n_text, *vals))
    return "\n".join(lines) + "\n"


def _paired_caption(table: Table, rows: list[dict[str, Any]], delta: float) -> str:
    counts = sorted({c.paired.n for row in table.delta_cells for c in row if c.paired is not None})
    if not table.deltas or not counts:
        return (f"No row could be paired with the reference row ({table.reference}) by training seed and "
                "data seed, so no differences are given.")
    named = ", ".join(f"$\\Delta${metrics.spec(m).short}" for m in table.deltas)
    n_text = f"n = {counts[-1]} pairs per dataset" if len(counts) == 1 else \
        f"n = {counts[-1]} pairs per dataset where finished, (n=k) where fewer"
    alpha, power = stats.ALPHA, stats.POWER
    parts = [f"{named}: paired difference to the reference row ({table.reference}) in points, variant minus "
             f"reference, over the runs matched by training seed and data seed ({n_text}), $\\pm$ the "
             f"half-width of its 95% t interval; in bold where significant (paired t-test, $p < {alpha:g}$)."]
    if counts[-1] < 2:
        parts.append("With fewer than 2 pairs there is no interval (n=1 cells show the difference alone).")
        return " ".join(parts)
    metric = "h" if "h" in table.deltas else table.deltas[0]
    power_by_ds = paired_power(table, metric)
    data_seeds = {stats.unit_key(r)[2] for r in rows} - {""}
    what = "seeds" if len(data_seeds) <= 1 else "pairs (training seed x data seed)"
    detect: list[str] = []
    need: list[str] = []
    for d, (sd, n) in power_by_ds.items():
        if sd is None or n < 2:
            continue
        dd = stats.detectable_difference(sd, n)
        k = stats.pairs_needed(sd, delta)
        detect.append(f"{dd:.1f}{' points' if not detect else ''} on {d.upper()}")
        need.append(f"{k if k is not None else f'over {stats.MAX_PAIRS}'}{f' {what}' if not need else ''} "
                    f"on {d.upper()}")
    if detect:
        parts.append(f"From the measured sd of the paired {metrics.spec(metric).short} differences (pooled over "
                     f"variants), the smallest difference detectable at this n ($\\alpha = {alpha:g}$, power "
                     f"{power:g}) is {', '.join(detect)}; a {delta:g}-point difference needs {', '.join(need)}.")
    return " ".join(parts)


def _published_rows(published: list[dict[str, str]], datasets: list[str], names: list[str]
                    ) -> list[tuple[str, list[Cell]]]:
    grouped: dict[str, dict[str, dict[str, str]]] = {}
    status: dict[str, set[str]] = defaultdict(set)
    for p in published:
        name = f"{p.get('method', '')} ({p.get('venue', '')})".replace(" ()", "")
        ds = str(p.get("dataset", "")).lower()
        if ds in datasets:
            grouped.setdefault(name, {})[ds] = p
            if p.get("status"):
                status[name].add(p["status"])
    out = []
    for name, by_ds in grouped.items():
        cells = [Cell(_float(by_ds.get(d, {}).get(m))) for d in datasets for m in names]
        if all(c.mean is None for c in cells):
            continue
        tag = "; ".join(sorted(status[name]))
        out.append((f"{name} [published, test-oracle{'; ' + tag if tag else ''}]", cells))
    return out


def caption(rows: list[dict[str, Any]], kind: str, has_published: bool = False,
            n_range: tuple[int, int] | None = None, partial_counts: tuple[int, ...] = (),
            names: Iterable[str] | None = None) -> str:
    """Caption naming the metrics, the protocol, the number of seeds, the data source and the caveats.

    ``n_range`` is the (min, max) number of seeds behind a cell; when they differ the caption says
    so and the cells with fewer seeds carry a dagger. ``names`` are the table's metrics (default
    ``metrics.columns("table")``).
    """
    protocols = sorted({str(r.get("protocol", "")) for r in rows if r.get("protocol")})
    seeds = sorted({str(r.get("seed", "")) for r in rows})
    sims = sorted({str(r.get("sim_preset") or "") for r in rows
                   if "sim" in str(r.get("source", "")).lower()})
    real = any("sim" not in str(r.get("source", "real")).lower() for r in rows)
    what = "Main results" if kind == "main" else "Ablation"
    if n_range and n_range[0] != n_range[1]:
        lo, hi = n_range
        fewer = list(partial_counts) or [lo]  # sorted, distinct (build_table passes them so)
        listed = " or ".join(str(n) for n in fewer)
        over = (f"{hi} seeds where finished ($^\\dagger$: only {listed} seed"
                f"{'' if fewer == [1] else 's'})")
    else:
        over = f"{len(seeds)} seed{'s' if len(seeds) != 1 else ''}"
    data_seeds = {stats.unit_key(r)[2] for r in rows} - {""}  # real data has none
    if len(data_seeds) > 1:  # simulated data drawn with several data seeds: a second unit dimension
        over += f" x {len(data_seeds)} data seeds"
    if names is None:
        names = [s.name for s in metrics.columns("table")]
    named = _metrics_phrase([metrics.spec(n) for n in names])
    parts = [f"{what}: {named} in %, mean $\\pm$ std over {over}; best mean per column in bold."]
    for p in protocols:
        if p == "val":
            parts.append("Protocol val: epochs and calibration $\\gamma$ selected on validation classes, "
                         "retrained on trainval, tested once.")
        elif p == "test-oracle":
            parts.append("Protocol test-oracle: best epoch selected on the test set (as most papers report).")
        else:
            parts.append(f"Protocol {p}.")
    if sims:
        preset = ", ".join(s for s in sims if s) or "unknown preset"
        sim_rows = [r for r in rows if "sim" in str(r.get("source", "")).lower()]
        gens = _generators_phrase(sim_rows) + _semantics_phrase(sim_rows)
        parts.append(f"Data: simulated ({preset}{gens}){' and real' if real else ''}; simulated numbers are not "
                     "comparable to published ones.")
    if has_published:
        parts.append(PUBLISHED_CAVEAT)
    return " ".join(parts)


def _generators_phrase(rows: list[dict[str, Any]]) -> str:
    """'; generator 3.0', or with several: '; generators 3.0 on AWA2 and 2.0 on CUB, SUN (3.0's data
    there)', where an older version wrote the data the newest writes there (``sim.data_version``)."""
    from .data import sim

    by_gen: dict[str, dict[tuple[str, str], None]] = {}  # version -> (dataset, preset), in row order
    for r in rows:
        if g := str(r.get("generator_version") or ""):
            by_gen.setdefault(g.rsplit("/", 1)[-1], {})[(str(r.get("dataset", "")), str(r.get("sim_preset", "")))] = None
    if len(by_gen) <= 1:
        return "".join(f"; generator {g}" for g in by_gen)
    newest = max(by_gen, key=lambda g: tuple(int(x) for x in re.findall(r"\d+", g)))

    def same(g: str, key: tuple[str, str]) -> bool:
        return sim.recorded_data_version(g, *key) == sim.recorded_data_version(newest, *key)

    several_presets = len({p for keys in by_gen.values() for _, p in keys}) > 1
    listed = []
    for g, keys in sorted(by_gen.items(), key=lambda kv: kv[0] != newest):
        names = ", ".join(dict.fromkeys(f"{d.upper() or '?'}{f' {p}' if several_presets else ''}" for d, p in keys))
        note = f" ({newest}'s data there)" if g != newest and all(same(g, k) for k in keys) else ""
        listed.append(f"{g} on {names}{note}")
    return "; generators " + ", ".join(listed[:-1]) + " and " + listed[-1]


def _semantics_phrase(rows: list[dict[str, Any]]) -> str:
    """'; generated class semantics', '; real class semantics' or, mixed, '; class semantics real on
    CUB and generated on SUN, AWA2' (column ``sim_semantics``; rows that do not record it add nothing)."""
    by_source: dict[str, dict[str, None]] = {}
    for r in rows:
        if v := str(r.get("sim_semantics") or ""):
            by_source.setdefault("generated" if v == "generated" else "real", {})[str(r.get("dataset", "")).upper()] = None
    if len(by_source) <= 1:
        return "".join(f"; {k} class semantics" for k in by_source)
    return "; class semantics " + " and ".join(f"{k} on {', '.join(v)}" for k, v in sorted(by_source.items(),
                                                                                         reverse=True))


def _metrics_phrase(specs: list[metrics.MetricSpec]) -> str:
    """ "ZSL accuracy (Acc) and GZSL U, S, H": consecutive metrics of one group named together."""
    groups: list[tuple[str, list[str]]] = []
    for s in specs:
        if groups and groups[-1][0] == s.group:
            groups[-1][1].append(s.caption)
        else:
            groups.append((s.group, [s.caption]))
    parts = [f"{g} {', '.join(c)}" if g else ", ".join(c) for g, c in groups]
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


# ---------------------------------------------------------------- rendering


def _latex_escape(s: str) -> str:
    repl = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
            "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
    return "".join(repl.get(c, c) for c in s)


def _fmt_cell(c: Cell, latex: bool) -> str:
    if c.mean is None:
        return "--" if latex else "–"
    text = f"{c.mean:.1f}"
    if c.std is not None:
        text += f" $\\pm$ {c.std:.1f}" if latex else f" ± {c.std:.1f}"
    if c.bold:
        text = f"\\textbf{{{text}}}" if latex else f"**{text}**"
    if c.partial:
        text += "$^\\dagger$" if latex else "†"
    return text


def _fmt_delta(c: DeltaCell, latex: bool) -> str:
    if c.reference:
        return "reference"
    p = c.paired
    if p is None or p.mean is None:
        return "--" if latex else "–"
    sign = ("$-$" if latex else "-") if round(p.mean, 1) < 0 else ("$+$" if latex else "+")  # no "-0.0"
    text = f"{sign}{abs(p.mean):.1f}"
    if p.half_width is not None:
        text += f" $\\pm$ {p.half_width:.1f}" if latex else f" ± {p.half_width:.1f}"
    if p.significant:
        text = f"\\textbf{{{text}}}" if latex else f"**{text}**"
    if p.half_width is None or c.fewer:
        text += f" (n={p.n})"
    return text


def _row_cells(table: Table, i: int, latex: bool) -> list[str]:
    """Row ``i``'s cells: per dataset its metrics, then its differences to the reference (if any)."""
    row, per, dper = table.cells[i], len(table.metrics), len(table.deltas)
    out = []
    for j in range(len(table.datasets)):
        out += [_fmt_cell(c, latex) for c in row[j * per:(j + 1) * per]]
        if dper:
            out += [_fmt_delta(c, latex) for c in table.delta_cells[i][j * dper:(j + 1) * dper]]
    return out


def _published_cells(table: Table, row: list[Cell], latex: bool) -> list[str]:
    per, dper = len(table.metrics), len(table.deltas)
    out = []
    for j in range(len(table.datasets)):
        out += [_fmt_cell(c, latex) for c in row[j * per:(j + 1) * per]] + ["--" if latex else "–"] * dper
    return out


def render_latex(table: Table) -> str:
    """A booktabs ``table`` environment (needs ``\\usepackage{booktabs}``)."""
    per = len(table.metrics) + len(table.deltas)
    ncol = len(table.datasets) * per
    lines = [
        "% Generated by zsl-bench from result rows; requires \\usepackage{booktabs}.",
        "\\begin{table*}[t]",
        "\\centering",
        "\\small",
        "\\setlength{\\tabcolsep}{3pt}",
        f"\\caption{{{_caption_latex(table.caption)}}}",
        f"\\label{{{table.label}}}",
    ]
    if table.deltas:  # difference columns make the table half again as wide: a smaller font for its body
        lines += ["\\scriptsize", "\\setlength{\\tabcolsep}{2pt}"]
    lines += [
        "\\begin{tabular}{l" + "c" * ncol + "}",
        "\\toprule",
    ]
    head = [""] + [f"\\multicolumn{{{per}}}{{c}}{{{_latex_escape(d.upper())}}}" for d in table.datasets]
    lines.append(" & ".join(head) + " \\\\")
    rules = [f"\\cmidrule(lr){{{2 + i * per}-{1 + (i + 1) * per}}}"
             for i in range(len(table.datasets))]
    lines.append(" ".join(rules))
    heads = [_latex_escape(metrics.spec(m).short) for m in table.metrics]
    heads += [f"$\\Delta${_latex_escape(metrics.spec(m).short)}" for m in table.deltas]
    lines.append(" & ".join(["Method" if table.kind == "main" else "Variant"]
                            + [h for _ in table.datasets for h in heads]) + " \\\\")
    lines.append("\\midrule")
    for i, label in enumerate(table.labels):
        lines.append(" & ".join([_latex_escape(label)] + _row_cells(table, i, True)) + " \\\\")
    if table.published:
        lines.append("\\midrule")
        for label, row in table.published:
            lines.append(" & ".join([_latex_escape(label)] + _published_cells(table, row, True)) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}", "\\end{table*}", ""]
    return "\n".join(lines)


def _caption_latex(text: str) -> str:
    # The caption is written with $\pm$/$\gamma$ already; escape only what would break LaTeX.
    return text.replace("%", r"\%").replace("_", r"\_").replace("&", r"\&").replace("#", r"\#")


MARKDOWN_MATH = ((r"\$\\Delta\$", "Δ"), (r"\$\\alpha = ([0-9.]+)\$", r"α = \1"), (r"\$p < ([0-9.]+)\$", r"p < \1"))
"""LaTeX math of paired-difference captions (regular expressions) and its Markdown text."""


def render_markdown(table: Table) -> str:
    """A GitHub-flavoured Markdown table with the caption above it."""
    cap = table.caption.replace("$\\pm$", "±").replace("$\\gamma$", "γ").replace("$^\\dagger$", "†")
    for tex, text in MARKDOWN_MATH:
        cap = re.sub(tex, text, cap)
    head = ["Method" if table.kind == "main" else "Variant"] + [
        f"{d.upper()} {h}" for d in table.datasets
        for h in [metrics.spec(m).short for m in table.metrics] + [f"Δ{metrics.spec(m).short}" for m in table.deltas]]
    lines = [f"**Table.** {cap}", "", "| " + " | ".join(head) + " |",
             "|" + "|".join([":---"] + [":---:"] * (len(head) - 1)) + "|"]
    cells = [_row_cells(table, i, False) for i in range(len(table.labels))]
    cells += [_published_cells(table, row, False) for _, row in table.published]
    for label, row in zip(table.labels + [label for label, _ in table.published], cells):
        lines.append("| " + " | ".join([label.replace("|", "\\|")] + row) + " |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- files


def load_published(path: str | os.PathLike[str]) -> list[dict[str, str]]:
    """Read a published-results CSV (columns method, venue, dataset, the table's metrics, status).

    A metric column may be absent or empty (the paper did not report it): its cells print as "--".
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(f"published results file not found: {p}")
    try:
        with p.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh, strict=True)
            rows = list(reader)
    except UnicodeDecodeError as exc:
        raise DataError(f"{p}: not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start}); "
                        "a published-results CSV is text") from None
    except csv.Error as exc:
        raise DataError(f"{p}: line {reader.line_num}: malformed CSV ({exc})") from None
    for i, r in enumerate(rows, start=2):
        if None in r or None in r.values():
            raise DataError(f"{p}: row {i - 1} (near line {i}) has a different number of fields than the header")
    names = [s.name for s in metrics.columns("table")]
    have = set(rows[0]) if rows else set()
    missing = sorted({"method", "dataset"} - have)
    if rows and (missing or not have & set(names)):
        raise DataError(f"{p} lacks columns {', '.join(missing or names)}; needs method, venue, dataset, "
                        f"{', '.join(names)} (at least one), status")
    return rows


def write_text(path: Path, text: str) -> Path:
    """Write ``text`` atomically (temporary name, then rename)."""
    return write_text_atomic(path, text)


def write_tables(table: Table, out: str | os.PathLike[str], fmt: str = "both", stem: str | None = None
                 ) -> list[Path]:
    """Write ``<out>/<stem>.tex`` and/or ``.md``; returns the written paths."""
    stem = stem or f"{table.kind}_table"
    paths = []
    if fmt in ("latex", "both"):
        paths.append(write_text(Path(out) / f"{stem}.tex", render_latex(table)))
    if fmt in ("markdown", "both"):
        paths.append(write_text(Path(out) / f"{stem}.md", render_markdown(table)))
    return paths


def latex_document(table_tex: str) -> str:
    """A minimal standalone document around a rendered table (used to check it compiles)."""
    return ("\\documentclass{article}\n\\usepackage[margin=1cm,landscape]{geometry}\n"
            "\\usepackage{booktabs}\n\\begin{document}\n" + table_tex + "\\end{document}\n")
