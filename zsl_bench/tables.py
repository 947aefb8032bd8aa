"""Tables from result rows: the main table as papers print it, and the ablation table.

Pure functions: rows in (``zsl_bench.results`` long format), text out. Per dataset the columns are
the metrics registered for tables (``metrics.columns("table")``: ZSL accuracy and GZSL U, S, H; the
context reliance extras of simulated data only where rows have them), each
the mean ± sample standard deviation over seeds; the best mean of each column (by the metric's
direction) is bold. Published numbers (``published_results.csv``) can be appended as extra rows
marked with their status; they are not bolded, because papers selected them on the test set.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import metrics
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
                published: list[dict[str, str]] | None = None) -> Table:
    """Aggregate rows into a :class:`Table`.

    Args:
        rows: long-format result rows (deduplicated: one row per run and metric).
        kind: ``main`` (rows are methods) or ``ablation`` (rows are variants).
        published: rows of a published-results CSV (method, venue, dataset, the table's metrics, status).
    """
    if kind not in KINDS:
        raise DataError(f"bad table kind {kind!r}; valid: {', '.join(KINDS)}")
    rows = list(rows)
    # Extras registered for tables (context reliance on simulated data) only when some row has them.
    columns = metrics.columns("table", {str(r.get("metric", "")) for r in rows})
    names = [s.name for s in columns]
    rows = [r for r in rows if str(r.get("metric", "")) in names]
    if not rows:
        raise DataError(f"no result rows with metrics {', '.join(names)} to tabulate")
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
    return Table(kind=kind, datasets=datasets, labels=labels, cells=cells, published=pub,
                 caption=caption(rows, kind, bool(pub), n_range,
                                 tuple(sorted({c.n for row in cells for c in row if c.partial})), names),
                 label=f"tab:{kind}", metrics=names)


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
        parts.append(f"Data: simulated ({preset}){' and real' if real else ''}; simulated numbers are not "
                     "comparable to published ones.")
    if has_published:
        parts.append(PUBLISHED_CAVEAT)
    return " ".join(parts)


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


def render_latex(table: Table) -> str:
    """A booktabs ``table`` environment (needs ``\\usepackage{booktabs}``)."""
    per = len(table.metrics)
    ncol = len(table.datasets) * per
    lines = [
        "% Generated by zsl-bench from result rows; requires \\usepackage{booktabs}.",
        "\\begin{table*}[t]",
        "\\centering",
        "\\small",
        "\\setlength{\\tabcolsep}{3pt}",
        f"\\caption{{{_caption_latex(table.caption)}}}",
        f"\\label{{{table.label}}}",
        "\\begin{tabular}{l" + "c" * ncol + "}",
        "\\toprule",
    ]
    head = [""] + [f"\\multicolumn{{{per}}}{{c}}{{{_latex_escape(d.upper())}}}" for d in table.datasets]
    lines.append(" & ".join(head) + " \\\\")
    rules = [f"\\cmidrule(lr){{{2 + i * per}-{1 + (i + 1) * per}}}"
             for i in range(len(table.datasets))]
    lines.append(" ".join(rules))
    lines.append(" & ".join(["Method" if table.kind == "main" else "Variant"]
                            + [_latex_escape(metrics.spec(m).short) for _ in table.datasets for m in table.metrics])
                 + " \\\\")
    lines.append("\\midrule")
    for label, row in zip(table.labels, table.cells):
        lines.append(" & ".join([_latex_escape(label)] + [_fmt_cell(c, True) for c in row]) + " \\\\")
    if table.published:
        lines.append("\\midrule")
        for label, row in table.published:
            lines.append(" & ".join([_latex_escape(label)] + [_fmt_cell(c, True) for c in row]) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}", "\\end{table*}", ""]
    return "\n".join(lines)


def _caption_latex(text: str) -> str:
    # The caption is written with $\pm$/$\gamma$ already; escape only what would break LaTeX.
    return text.replace("%", r"\%").replace("_", r"\_").replace("&", r"\&").replace("#", r"\#")


def render_markdown(table: Table) -> str:
    """A GitHub-flavoured Markdown table with the caption above it."""
    cap = table.caption.replace("$\\pm$", "±").replace("$\\gamma$", "γ").replace("$^\\dagger$", "†")
    head = ["Method" if table.kind == "main" else "Variant"] + [
        f"{d.upper()} {metrics.spec(m).short}" for d in table.datasets for m in table.metrics]
    lines = [f"**Table.** {cap}", "", "| " + " | ".join(head) + " |",
             "|" + "|".join([":---"] + [":---:"] * (len(head) - 1)) + "|"]
    for label, row in list(zip(table.labels, table.cells)) + table.published:
        lines.append("| " + " | ".join([label.replace("|", "\\|")] + [_fmt_cell(c, False) for c in row]) + " |")
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
