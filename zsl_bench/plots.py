"""Figures from result rows and saved files (matplotlib Agg; PNG and PDF side by side).

Every figure is regenerated from files: result rows (``results.csv``), U–S curves saved per run
under ``<out>/curves/*.npz``, and the Optuna storage of a search. Titles say "simulated" when the
data were, and name the protocol.
"""

from __future__ import annotations

import logging
import math
import os
import statistics
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .data.datasets import in_table_order
from .errors import DataError
from .fileio import atomic_path
from .metrics import axis_label

log = logging.getLogger(__name__)


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, stem: str | os.PathLike[str]) -> list[Path]:
    """Save ``fig`` as ``<stem>.png`` and ``<stem>.pdf`` (each written to a temporary name first)."""
    plt = _pyplot()
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for ext in ("png", "pdf"):
        final = stem.with_name(f"{stem.name}.{ext}")
        with atomic_path(final) as tmp:
            fig.savefig(tmp, dpi=150, bbox_inches="tight")
        paths.append(final)
    plt.close(fig)
    return paths


def _label_suffix(rows: list[dict[str, Any]]) -> str:
    protocols = sorted({str(r.get("protocol", "")) for r in rows if r.get("protocol")})
    sim = any("sim" in str(r.get("source", "")).lower() for r in rows)
    return f" [{', '.join(protocols)}{'; simulated' if sim else ''}]"


def _datasets(rows: list[dict[str, Any]]) -> list[str]:
    present = {str(r.get("dataset", "")).lower() for r in rows}
    return in_table_order(present)


def _metric_values(rows: Iterable[dict[str, Any]], metric: str) -> dict[tuple[str, str], list[float]]:
    """(variant label, dataset) -> per-seed values of ``metric``."""
    multi = len({r.get("method") for r in rows}) > 1  # type: ignore[union-attr]
    out: dict[tuple[str, str], list[float]] = defaultdict(list)
    for r in rows:
        if r.get("metric") != metric:
            continue
        try:
            v = float(r["value"])
        except (TypeError, ValueError, KeyError):
            continue
        if math.isfinite(v):
            label = str(r.get("variant") or "default")
            if multi:
                label = f"{r.get('method')}: {label}"
            out[(label, str(r.get("dataset", "")).lower())].append(v)
    return out


def _mean_std(vals: list[float]) -> tuple[float, float]:
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else 0.0)


def plot_ablation(rows: list[dict[str, Any]], out: str | os.PathLike[str], metric: str = "h") -> list[Path]:
    """Grouped bars: one group per dataset, one bar per variant, mean ± std over seeds."""
    rows = list(rows)
    vals = _metric_values(rows, metric)
    if not vals:
        raise DataError(f"no rows with metric {metric!r} to plot")
    return _bars(rows, vals, metric, "Ablation", Path(out) / f"ablation_{metric}")


def plot_results(rows: list[dict[str, Any]], out: str | os.PathLike[str], metric: str = "h") -> list[Path]:
    """Grouped bars: one group per dataset, one bar per method (a ``run`` or a main table), mean ± std
    over seeds; a method's variants (if any) are bars of their own, labelled ``method: variant``."""
    rows = list(rows)
    vals = _metric_values(rows, metric)  # labels "variant", or "method: variant" for several methods
    if not vals:
        raise DataError(f"no rows with metric {metric!r} to plot")
    if not is_ablation(rows):  # one configuration per method: label the bars by method alone
        methods = {str(r.get("method")) for r in rows}
        only = next(iter(methods)) if len(methods) == 1 else None
        vals = {(only or label.split(": ", 1)[0], ds): v for (label, ds), v in vals.items()}
    return _bars(rows, vals, metric, "Results", Path(out) / f"results_{metric}")


def is_ablation(rows: Iterable[dict[str, Any]]) -> bool:
    """Whether the rows hold several variants of one method (an ablation), rather than one
    configuration per method (a ``run`` or a main table): which bar chart ``plot`` draws."""
    variants: dict[str, set[str]] = defaultdict(set)
    for r in rows:
        variants[str(r.get("method"))].add(str(r.get("variant") or "default"))
    return any(len(v) > 1 for v in variants.values())


def _bars(rows: list[dict[str, Any]], vals: dict[tuple[str, str], list[float]], metric: str, title: str,
          stem: Path) -> list[Path]:
    import numpy as np

    variants = list(dict.fromkeys(k[0] for k in vals))
    datasets = _datasets(rows)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(5.0, 1.2 * len(datasets) * max(1, len(variants)) / 2), 3.6))
    width = 0.8 / len(variants)
    x = np.arange(len(datasets))
    # One distinct colour per variant (the default cycle repeats after 10).
    colors = plt.get_cmap("tab20" if len(variants) > 10 else "tab10")(np.arange(len(variants)) % 20)
    for i, v in enumerate(variants):
        ms = [_mean_std(vals.get((v, d), [])) if vals.get((v, d)) else (np.nan, 0.0) for d in datasets]
        ax.bar(x + (i - (len(variants) - 1) / 2) * width, [m for m, _ in ms], width, yerr=[s for _, s in ms],
               capsize=2, label=v, color=colors[i])
    ax.set_xticks(x, [d.upper() for d in datasets])
    ax.set_ylabel(axis_label(metric))
    ax.set_title(title + _label_suffix(rows))
    ax.legend(fontsize=7, ncol=2, frameon=False)
    return save_figure(fig, stem)


def parse_sweep(variant: str) -> dict[str, str]:
    """``"full,method.lambda_eff=0.1"`` -> ``{"method.lambda_eff": "0.1"}`` (names from ``expand_grid``)."""
    return dict(p.split("=", 1) for p in variant.split(",") if "=" in p)


def plot_sensitivity(rows: list[dict[str, Any]], out: str | os.PathLike[str], metric: str = "h") -> list[Path]:
    """One panel per swept key: ``metric`` vs the key's value, a line per dataset, error bars over seeds."""
    rows = list(rows)
    by_key: dict[str, dict[str, dict[float, list[float]]]] = defaultdict(lambda: defaultdict(dict))
    for r in rows:
        if r.get("metric") != metric:
            continue
        for k, v in parse_sweep(str(r.get("variant", ""))).items():
            try:
                x, y = float(v), float(r["value"])
            except (TypeError, ValueError):
                continue
            by_key[k][str(r.get("dataset", "")).lower()].setdefault(x, []).append(y)
    if not by_key:
        raise DataError("no swept variants (names like 'method.w_distill=0.01') to plot sensitivity curves")
    plt = _pyplot()
    keys = sorted(by_key)
    fig, axes = plt.subplots(1, len(keys), figsize=(3.4 * len(keys), 3.0), squeeze=False)
    for ax, k in zip(axes[0], keys):
        xs_all: list[float] = []
        for d in in_table_order(by_key[k]):
            pts = sorted(by_key[k][d].items())
            xs = [x for x, _ in pts]
            xs_all += xs
            ms = [_mean_std(v) for _, v in pts]
            ax.errorbar(xs, [m for m, _ in ms], yerr=[s for _, s in ms], marker="o", capsize=2, label=d.upper())
        positive = [x for x in xs_all if x > 0]
        if positive and len(positive) == len(xs_all) and max(positive) / min(positive) >= 20:
            ax.set_xscale("log")
        ax.set_xlabel(k)
        ax.set_ylabel(axis_label(metric))
        ax.legend(fontsize=7, frameon=False)
    fig.suptitle("Sensitivity" + _label_suffix(rows), fontsize=10)
    fig.tight_layout()
    return save_figure(fig, Path(out) / f"sensitivity_{metric}")


def swept_keys(rows: Iterable[dict[str, Any]]) -> list[str]:
    """The ``SECTION.KEY``s swept in the rows' variant names whose values are all numbers."""
    values: dict[str, set[str]] = defaultdict(set)
    for r in rows:
        for k, v in parse_sweep(str(r.get("variant", ""))).items():
            if "." in k:
                values[k].add(v)
    out = []
    for k, vs in values.items():
        try:
            [float(v) for v in vs]
        except ValueError:
            continue
        out.append(k)
    return sorted(out)


def plot_sweep(rows: list[dict[str, Any]], out: str | os.PathLike[str], x: str | None = None,
               metrics: tuple[str, ...] = ("h", "zsl_acc", "reliance_h", "reliance_zsl")) -> list[Path]:
    """``metrics`` vs a swept numeric key ``x``: a panel per (metric, dataset), a line per method and
    variant (the point name without ``x``), the mean over units (training seed x data seed) with its
    95 % t confidence band (none where a point has one unit). Metrics no row has get no panel (context
    reliance exists only on simulated data with an environment-resampled store).

    ``x`` defaults to the one numeric key swept in the rows' variant names (``sim.rho=0.5``).
    """
    from . import stats

    rows = list(rows)
    keys = swept_keys(rows)
    if x is None:
        if len(keys) != 1:
            raise DataError(f"sweep figure: give the swept key (--x); the rows sweep {', '.join(keys) or 'no key'}"
                            " (variant names like 'full,sim.rho=0.5')")
        x = keys[0]
    elif x not in keys:
        raise DataError(f"sweep figure: {x!r} is not a numeric key swept in these rows; valid: "
                        f"{', '.join(keys) or 'none (variant names like full,sim.rho=0.5)'}")
    multi = len({r.get("method") for r in rows}) > 1
    # (metric, dataset) -> line label -> x value -> {unit: value}
    pts: dict[tuple[str, str], dict[str, dict[float, dict[Any, list[float]]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(lambda: defaultdict(list))))
    for r in rows:
        if r.get("metric") not in metrics:
            continue
        parts = [p for p in str(r.get("variant", "")).split(",") if p]
        mine = [p for p in parts if p.split("=", 1)[0] == x]
        if len(mine) != 1:
            continue
        try:
            xv, y = float(mine[0].split("=", 1)[1]), float(r["value"])
        except (TypeError, ValueError, KeyError):
            continue
        if not math.isfinite(y):
            continue
        rest = ",".join(p for p in parts if p not in mine)
        label = ": ".join([str(r.get("method"))] * multi + [rest] * bool(rest)) or str(r.get("method"))
        pts[(str(r["metric"]), str(r.get("dataset", "")).lower())][label][xv][stats.unit_key(r)].append(y)
    if not pts:
        raise DataError(f"no rows with metrics {', '.join(metrics)} at swept values of {x} to plot")
    datasets = in_table_order({d for _, d in pts})
    shown = [m for m in metrics if any(k[0] == m for k in pts)]
    plt = _pyplot()
    fig, axes = plt.subplots(len(shown), len(datasets), figsize=(3.6 * len(datasets), 3.0 * len(shown)),
                             squeeze=False)
    labels = list(dict.fromkeys(label for d in pts.values() for label in d))
    colors = {label: f"C{i % 10}" for i, label in enumerate(labels)}
    for i, m in enumerate(shown):
        for j, d in enumerate(datasets):
            ax = axes[i][j]
            for label, by_x in pts.get((m, d), {}).items():
                xs = sorted(by_x)
                # One value per unit (the mean of any duplicates), then the mean and t band over units.
                per = [[statistics.fmean(v) for v in by_x[xv].values()] for xv in xs]
                means = [statistics.fmean(v) for v in per]
                ax.plot(xs, means, marker="o", ms=3, lw=1.2, color=colors[label], label=label)
                band = [stats.t_interval(v) for v in per]
                if any(b is not None for b in band):
                    lo = [b[0] if b is not None else mu for b, mu in zip(band, means)]
                    hi = [b[1] if b is not None else mu for b, mu in zip(band, means)]
                    ax.fill_between(xs, lo, hi, color=colors[label], alpha=0.2, lw=0)
            ax.set_xlabel(x)
            ax.set_ylabel(axis_label(m))
            ax.set_title(d.upper(), fontsize=9)
            if i == 0 and j == 0:
                ax.legend(fontsize=6, frameon=False)
    fig.suptitle(f"Sweep of {x} (mean, 95% t band over training x data seeds)" + _label_suffix(rows), fontsize=9)
    fig.tight_layout()
    return save_figure(fig, Path(out) / f"sweep_{x.replace('.', '_')}")


def load_curves(curves_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read and check every ``*.npz`` U–S curve saved by a study (``<out>/curves``).

    A truncated or corrupted file, or one without equally long 1-D numeric ``u`` and ``s``, is a
    DataError naming the file (one line), not a partial figure.
    """
    import zipfile
    import zlib

    import numpy as np

    d = Path(curves_dir)
    if not d.is_dir():
        raise DataError(f"curves directory not found: {d} (studies save them under <out>/curves)")
    curves = []
    for p in sorted(d.glob("*.npz")):
        if p.name.startswith("."):  # an atomic write's temporary file left by a kill
            continue
        try:
            with p.open("rb") as fh:
                if fh.read(4) != b"PK\x03\x04":
                    raise ValueError("no zip header: not an .npz archive")
            with np.load(p, allow_pickle=False) as z:
                c = {k: (z[k].item() if z[k].ndim == 0 else z[k]) for k in z.files}
        except (OSError, ValueError, EOFError, KeyError, zlib.error, zipfile.BadZipFile, zipfile.LargeZipFile) as exc:
            why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise DataError(f"{p}: not a readable curve file (truncated or corrupted .npz: {why}); "
                            "delete it and rerun the unit, or move it out of the curves folder") from None
        for k in ("u", "s"):
            v = c.get(k)
            if not isinstance(v, np.ndarray) or v.ndim != 1 or v.dtype.kind not in "fiu":
                raise DataError(f"{p}: field {k!r} must be a 1-D numeric array (a zsl-bench U-S curve); got "
                                f"{'nothing' if v is None else getattr(v, 'dtype', type(v).__name__)}")
        if len(c["u"]) != len(c["s"]):
            raise DataError(f"{p}: fields 'u' and 's' differ in length ({len(c['u'])} vs {len(c['s'])})")
        curves.append(c)
    return curves


def plot_us_curves(curves: list[dict[str, Any]], out: str | os.PathLike[str]) -> list[Path]:
    """U–S curves per dataset, one line per (method, variant) at its first seed; legend gives AUSUC."""
    if not curves:
        raise DataError("no U–S curves to plot")
    by_ds: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for c in curves:
        label = f"{c.get('method')}: {c.get('variant')}"
        by_ds[str(c.get("dataset"))][label].append(c)
    plt = _pyplot()
    datasets = in_table_order(by_ds)
    fig, axes = plt.subplots(1, len(datasets), figsize=(3.6 * len(datasets), 3.4), squeeze=False)
    sim = any(str(c.get("source")) == "simulated" for c in curves)
    for ax, d in zip(axes[0], datasets):
        for label, cs in by_ds[d].items():
            cs = sorted(cs, key=lambda c: int(c.get("seed", 0)))
            ausuc = [float(c["ausuc"]) for c in cs if "ausuc" in c and math.isfinite(float(c["ausuc"]))]
            tag = f" (AUSUC {statistics.fmean(ausuc):.1f})" if ausuc else ""
            ax.plot(cs[0]["u"], cs[0]["s"], lw=1.2, label=label + tag)
        ax.set_xlabel("U (%)")
        ax.set_ylabel("S (%)")
        ax.set_title(d.upper() + (" (simulated)" if sim else ""))
        ax.legend(fontsize=6, frameon=False)
    fig.tight_layout()
    return save_figure(fig, Path(out) / "us_curves")


def plot_optuna(storage: str, study_name: str, out: str | os.PathLike[str]) -> list[Path]:
    """Optimisation history (value and best so far) and parameter importances of a search study."""
    import optuna
    from optuna.trial import TrialState

    from .study.optuna_adapter import resolve_url

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.load_study(study_name=study_name, storage=resolve_url(storage))
    except KeyError:
        raise DataError(f"no Optuna study {study_name!r} in {storage}") from None
    done = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    if not done:
        raise DataError(f"study {study_name!r} has no completed trial to plot")
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(8.5, 3.2))
    nums, vals = [t.number for t in done], [float(t.value) for t in done]  # type: ignore[arg-type]
    best = [max(vals[: i + 1]) for i in range(len(vals))]
    axes[0].scatter(nums, vals, s=12, label="trial")
    axes[0].step(nums, best, where="post", color="C3", label="best so far")
    axes[0].set_xlabel("trial")
    axes[0].set_ylabel("validation H (%)")
    axes[0].set_title("Optimisation history")
    axes[0].legend(fontsize=7, frameon=False)
    try:
        imp = optuna.importance.get_param_importances(study) if len(done) >= 2 else {}
    except (RuntimeError, ValueError) as exc:  # e.g. a single distinct value per parameter
        log.warning("parameter importances unavailable: %s", exc)
        imp = {}
    if imp:
        names = list(imp)[::-1]
        axes[1].barh(names, [imp[n] for n in names])
        axes[1].set_xlabel("importance (fANOVA)")
    else:
        axes[1].text(0.5, 0.5, "importances need\n>= 2 varied trials", ha="center", va="center")
        axes[1].set_axis_off()
    axes[1].set_title("Parameter importances")
    fig.suptitle(study_name, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, Path(out) / f"optuna_{study_name}")


def plot_attention(maps: Any, gt: Any, out: str | os.PathLike[str], *, grid: tuple[int, int] | None = None,
                   titles: list[str] | None = None, stem: str = "attention") -> list[Path]:
    """Attention maps over regions with the simulated ground-truth regions outlined.

    Args:
        maps: ``[N, R]`` attention weights (e.g. one attribute's α for N images).
        gt: ``[N, R]`` boolean ground truth (regions where the simulator put the attribute's evidence).
        grid: the (rows, cols) region layout; default a square.
    """
    import numpy as np

    maps, gt = np.asarray(maps, dtype=float), np.asarray(gt, dtype=bool)
    if maps.ndim != 2 or maps.shape != gt.shape:
        raise DataError(f"attention maps {maps.shape} and ground truth {gt.shape} must both be [N, R]")
    n, r = maps.shape
    h, w = grid or (int(round(math.sqrt(r))), int(round(math.sqrt(r))))
    if h * w != r:
        raise DataError(f"{r} regions do not fit a {h}x{w} grid; pass grid=(rows, cols)")
    plt = _pyplot()
    fig, axes = plt.subplots(1, n, figsize=(2.2 * n, 2.4), squeeze=False)
    for i, ax in enumerate(axes[0]):
        ax.imshow(maps[i].reshape(h, w), cmap="viridis")
        for idx in np.flatnonzero(gt[i]):
            y, x = divmod(int(idx), w)
            ax.add_patch(plt.Rectangle((x - 0.5, y - 0.5), 1, 1, fill=False, ec="red", lw=1.5))
        ax.set_xticks([])
        ax.set_yticks([])
        if titles:
            ax.set_title(titles[i], fontsize=7)
    fig.suptitle("Attention (red: simulated ground truth)", fontsize=9)
    return save_figure(fig, Path(out) / stem)


def plot_run_attention(run_dir: str | os.PathLike[str], row: dict[str, Any], out: str | os.PathLike[str], *,
                       n_images: int = 4, map_name: str = "avca") -> list[Path]:
    """Attention of a finished simulated run, rebuilt from its checkpoint, with the ground truth marked.

    For ``n_images`` test-unseen images, the map shown is that of the attribute whose part is visible
    and whose class semantics are strongest; red boxes mark the cells that count as a hit
    (``zsl_bench.attention``: the peak within one cell of the part's centre).

    Args:
        run_dir: the unit's run directory (``<out>/runs/<run_id>``, holding ``ckpt/``).
        row: one of the run's result rows (method, dataset, variant, seed, sim_preset, data_seed, config).
        out: figure directory.
    """
    import json

    import numpy as np
    import torch

    from .attention import load_ground_truth
    from .config import resolve
    from .data.loader import load_dataset
    from .engine import Engine
    from .registry import METHODS

    if not row.get("sim_preset"):
        raise DataError("attention figures need simulated data (real data has no ground truth)")
    method_cls = METHODS.get(str(row["method"]))
    if getattr(method_cls, "input", "") != "regions" or not hasattr(method_cls, "attention_maps"):
        raise DataError(f"method {row['method']} has no attention maps over regions")
    ckpt = next((p for p in (Path(run_dir) / "ckpt" / n for n in ("final.pt", "oracle.pt")) if p.is_file()), None)
    if ckpt is None:
        raise DataError(f"no checkpoint under {Path(run_dir) / 'ckpt'} to rebuild the model from")
    cfg_dict = json.loads(row["config"]) if row.get("config") else {}
    cfg_dict.get("train", {})["device"] = "cpu"
    cfg = resolve(method_cls, str(row["dataset"]), cfg_dict)
    sim_overrides = cfg.sim.overrides()
    if "generator" not in sim_overrides and row.get("generator_version"):
        sim_overrides["generator"] = str(row["generator_version"])  # the row's data, whatever the default is now
    data = load_dataset(str(row["dataset"]), None, sim_preset=str(row["sim_preset"]),
                        sim_seed=int(row.get("data_seed") or 0), sim_overrides=sim_overrides)
    want, got = str(row.get("sim_semantics") or ""), str(data.provenance.get("semantics") or "")
    if want and got and want != got:  # the default data root gained (or lost) the dataset's metadata
        raise DataError(f"run {row.get('run_id', '?')} was trained on simulated data with {want} class semantics, "
                        f"but the default data root now gives {got} ones; set $ZSL_BENCH_DATA to the data root "
                        "it was trained with")
    gt_path = data.ground_truth
    if gt_path is None:
        raise DataError(f"simulated {row['dataset']} has no ground_truth.npz")
    engine = Engine(method_cls, cfg, data)
    model = engine.build_model(data.seen_classes, data.unseen_classes)
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    weights = state["model"]
    if ckpt.name == "oracle.pt" and state.get("best_state") is not None:
        weights = state["best_state"]  # test-oracle reports its best epoch, not its last
    model.load_state_dict(weights)
    model.eval()
    gt = load_ground_truth(gt_path)
    rows_idx = np.sort(np.asarray(data.splits["test_unseen"], dtype=np.int64))[:n_images]
    x = torch.from_numpy(np.asarray(data.require_features("regions").read_regions(rows_idx), dtype=np.float32))
    with torch.no_grad():
        available = model.attention_maps(x)
    if not available:
        raise DataError(f"method {row['method']} returns no attention maps")
    # The named map (MSDN/MSDN++'s AVCA by default), else the method's first one (DAZLE's only map).
    maps = available.get(map_name, next(iter(available.values()))).float().numpy()  # [N, A, R]
    side = gt.side
    shown, truth, titles = [], [], []
    for i, r in enumerate(rows_idx):
        groups = gt.attr_to_group
        visible = np.array([g >= 0 and gt.visible[r, g] for g in groups])
        if not visible.any():
            continue
        strength = np.where(visible, data.att[data.labels[r]], -np.inf)
        a = int(np.argmax(strength))
        cy, cx = np.rint(gt.centres[r, groups[a]]).astype(int)
        yy, xx = np.divmod(np.arange(side * side), side)
        truth.append((np.abs(yy - cy) <= 1) & (np.abs(xx - cx) <= 1))
        shown.append(maps[i, a])
        titles.append(f"image {int(r)}, attribute {a}")
    if not shown:
        raise DataError("no scored image has a visible part to mark")
    stem = f"attention_{row['method']}_{row.get('variant', 'default')}_{row['dataset']}".replace("/", "_")
    return plot_attention(np.stack(shown), np.stack(truth), out, grid=(side, side), titles=titles,
                          stem=stem.replace("=", "-").replace(",", "_"))


def plot_study_attention(rows: list[dict[str, Any]], runs_dir: str | os.PathLike[str],
                         out: str | os.PathLike[str]) -> list[Path]:
    """:func:`plot_run_attention` for the lowest seed of each simulated (method, variant, dataset).

    Runs of methods without attention maps, of real data or without a checkpoint are skipped.
    """
    from .registry import METHODS

    first: dict[tuple[str, str, str], dict[str, Any]] = {}
    for r in rows:
        if r.get("metric") != "h" or not r.get("sim_preset") or str(r.get("method")) not in METHODS:
            continue
        if getattr(METHODS.get(str(r["method"])), "input", "") != "regions":
            continue
        key = (str(r["method"]), str(r.get("variant")), str(r["dataset"]))
        if key not in first or int(r.get("seed") or 0) < int(first[key].get("seed") or 0):
            first[key] = r
    made: list[Path] = []
    for r in first.values():
        try:
            made += plot_run_attention(Path(runs_dir) / str(r["run_id"]), r, out)
        except DataError as exc:
            log.info("no attention figure for %s/%s/%s: %s", r["method"], r.get("variant"), r["dataset"], exc)
    return made
