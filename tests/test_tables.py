"""Tables and figures from rows: golden LaTeX / Markdown, pdflatex compiles, CLI, plots.

Regenerate the golden files after an intended change with ``ZSL_BENCH_UPDATE_GOLDEN=1``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from zsl_bench import plots
from zsl_bench.errors import DataError, ZSLError
from zsl_bench.results import append_rows
from zsl_bench.tables import build_table, latex_document, load_published, render_latex, render_markdown

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("ZSL_BENCH_UPDATE_GOLDEN") == "1"

PUBLISHED_CSV = """method,venue,dataset,zsl_acc,u,s,h,status,source
MSDN,CVPR 2022,CUB,76.1,68.7,67.5,68.1,official README,github
MSDN++,arXiv 2603.17412,FLO,,69.2,80.7,74.5,second-hand,notes
TransZero,AAAI 2022,AWA2,70.1,61.3,82.3,70.2,official README,github
"""


def make_rows(kind: str) -> list[dict]:
    """Hand-written rows: 3 seeds per (label, dataset); values chosen so means/stds are exact."""
    rows = []
    labels = (["msdnpp", "ale"] if kind == "main" else ["full", "no_causal_attention", "w_distill=0_x"])
    for i, label in enumerate(labels):
        for d, ds in enumerate(["flo", "cub"]):  # out of order on purpose: tables sort datasets
            for seed in range(3):
                for j, metric in enumerate(["zsl_acc", "u", "s", "h", "gamma", "ausuc"]):
                    base = 60.0 - 10 * i + 3 * d + j
                    method, variant = (label, "default") if kind == "main" else ("msdnpp", label)
                    rows.append({"run_id": f"{label}-{ds}-{seed}", "method": method, "variant": variant,
                                 "dataset": ds, "source": "simulated", "sim_preset": "small",
                                 "protocol": "val", "seed": seed, "metric": metric,
                                 "value": base + (seed - 1) * (i + 1)})
    return rows


def _golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if UPDATE:
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
    assert path.is_file(), f"missing golden file {path}; run with ZSL_BENCH_UPDATE_GOLDEN=1"
    assert text == path.read_text(), f"{name} differs from the golden file"


@pytest.fixture()
def published(tmp_path):
    p = tmp_path / "published.csv"
    p.write_text(PUBLISHED_CSV)
    return load_published(p)


def test_main_table_golden(published):
    table = build_table(make_rows("main"), "main", published)
    assert table.datasets == ["cub", "flo"]
    # msdnpp has the higher means everywhere: bold; ale never.
    assert all(c.bold for c in table.cells[0]) and not any(c.bold for c in table.cells[1])
    assert table.cells[0][0].mean == 63.0 and table.cells[0][0].std == 1.0 and table.cells[0][0].n == 3
    assert [label for label, _ in table.published] == [
        "MSDN (CVPR 2022) [published, test-oracle; official README]",
        "MSDN++ (arXiv 2603.17412) [published, test-oracle; second-hand]"]
    assert "simulated" in table.caption and "test set" in table.caption
    _golden("main_table.tex", render_latex(table))
    _golden("main_table.md", render_markdown(table))


def test_ablation_table_golden():
    table = build_table(make_rows("ablation"), "ablation")
    assert table.labels == ["full", "no_causal_attention", "w_distill=0_x"]
    tex = render_latex(table)
    assert "w\\_distill=0\\_x" in tex and "\\toprule" in tex and "\\cmidrule(lr){2-7}" in tex
    _golden("ablation_table.tex", tex)
    _golden("ablation_table.md", render_markdown(table))


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex not on PATH (CI installs it)")
@pytest.mark.parametrize("name", ["main_table.tex", "ablation_table.tex"])
def test_golden_tex_compiles(tmp_path, name):
    (tmp_path / "doc.tex").write_text(latex_document((GOLDEN / name).read_text()))
    r = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "doc.tex"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=50)
    assert r.returncode == 0, r.stdout[-2000:]
    assert (tmp_path / "doc.pdf").stat().st_size > 1000


def test_ties_bold_together_and_single_seed_has_no_std():
    rows = [{"method": m, "variant": "default", "dataset": "cub", "protocol": "test-oracle", "seed": 0,
             "metric": "h", "value": 50.0, "source": "real"} for m in ("a", "b")]
    table = build_table(rows, "main")
    assert [r[3].bold for r in table.cells] == [True, True]
    assert table.cells[0][3].std is None and "50.0 ±" not in render_markdown(table)
    assert "test-oracle" in table.caption and "simulated" not in table.caption


def test_cells_over_fewer_seeds_are_marked_and_the_caption_says_so():
    rows = [r for r in make_rows("ablation") if not (r["variant"] == "full" and r["dataset"] == "cub"
                                                      and r["seed"] == 2)]
    table = build_table(rows, "ablation")
    full = table.labels.index("full")
    cub = table.datasets.index("cub")
    assert all(c.partial and c.n == 2 for c in table.cells[full][cub * 4:cub * 4 + 4])
    assert sum(c.partial for row in table.cells for c in row) == 4
    assert "3 seeds where finished" in table.caption and "only 2 seeds" in table.caption, table.caption
    md, tex = render_markdown(table), render_latex(table)
    assert md.count("†") == 5 and tex.count("$^\\dagger$") == 5  # 4 cells + the caption
    # Complete tables carry no marks.
    assert "dagger" not in render_latex(build_table(make_rows("ablation"), "ablation"))


def test_table_errors():
    with pytest.raises(DataError, match="no result rows"):
        build_table([{"metric": "loss", "value": 1}], "main")
    with pytest.raises(DataError, match="valid: main, ablation"):
        build_table(make_rows("main"), "wide")
    with pytest.raises(DataError, match="not found"):
        load_published("/nonexistent/published.csv")


def test_table_cli_from_results_csv(tmp_path, capsys, published):
    from zsl_bench.cli.main import main

    csv = tmp_path / "results.csv"
    append_rows(csv, make_rows("main"))
    append_rows(csv, make_rows("main")[:6])  # a duplicated unit (e.g. after a kill): deduplicated
    pub = tmp_path / "published.csv"
    assert main(["table", str(csv), "--kind", "main", "--published", str(pub), "--out", str(tmp_path / "t")]) == 0
    out = capsys.readouterr().out
    assert out == render_markdown(build_table(make_rows("main"), "main", published))
    assert (tmp_path / "t" / "main_table.tex").read_text() == (GOLDEN / "main_table.tex").read_text()
    assert main(["table", str(tmp_path / "missing.csv")]) == 2
    assert "results file not found" in capsys.readouterr().err


def test_plots_write_png_and_pdf(tmp_path):
    import optuna

    rows = make_rows("ablation")
    sweep = [dict(r, variant=f"method.w_distill={w}", run_id=f"{r['run_id']}-{w}", value=float(r["value"]) + w)
             for r in rows if r["variant"] == "full" for w in (0.001, 0.1)]
    made = plots.plot_ablation(rows, tmp_path) + plots.plot_sensitivity(sweep, tmp_path)
    curves = tmp_path / "curves"
    curves.mkdir()
    for seed in (0, 1):
        np.savez(curves / f"c{seed}.npz", gamma=np.linspace(-1, 1, 5), u=np.linspace(0, 60, 5),
                 s=np.linspace(70, 0, 5), ausuc=np.asarray(21.0), method="ale", variant="default",
                 dataset="cub", seed=seed, protocol="val", source="simulated")
    made += plots.plot_us_curves(plots.load_curves(curves), tmp_path)
    storage = f"sqlite:///{tmp_path / 'o.db'}"
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    study.optimize(lambda t: t.suggest_float("a", 0, 1) + 0.1 * t.suggest_float("b", 0, 1), n_trials=6)
    made += plots.plot_optuna(storage, "s", tmp_path)
    rng = np.random.default_rng(0)
    made += plots.plot_attention(rng.random((2, 16)), rng.random((2, 16)) > 0.8, tmp_path)
    names = sorted(p.name for p in made)
    assert names == sorted(f"{s}.{e}" for s in ("ablation_h", "sensitivity_h", "us_curves", "optuna_s",
                                                 "attention") for e in ("png", "pdf"))
    assert all(p.stat().st_size > 1000 for p in made)
    with pytest.raises(ZSLError, match="no swept variants"):
        plots.plot_sensitivity(rows, tmp_path)
    with pytest.raises(DataError, match="curves directory not found"):
        plots.load_curves(tmp_path / "none")


def test_attention_figure_from_a_real_tiny_msdnpp_run(tmp_path):
    from zsl_bench.study import StudyRunner, parse_spec

    # DAZLE names its map differently (the main table crashed on a KeyError here); TransZero has none.
    spec = parse_spec({"name": "att", "methods": ["msdnpp", "dazle", "transzero"], "datasets": ["cub"],
                       "seeds": [0], "sim": "tiny", "base": {"train": {"device": "cpu", "epochs": 1}},
                       "grid": {"variants": {"full": {}}}})
    out = StudyRunner(spec, tmp_path, progress=False).run()
    made = plots.plot_study_attention(out.rows, tmp_path / "runs", tmp_path / "figs")
    assert sorted(p.name for p in made) == [f"attention_{m}_full_cub.{e}" for m in ("dazle", "msdnpp")
                                            for e in ("pdf", "png")]
    real = [dict(r, sim_preset="") for r in out.rows]
    assert plots.plot_study_attention(real, tmp_path / "runs", tmp_path / "figs2") == []


# ---------------------------------------------------------------- paired differences (ablation / sweep)


def _unit_rows(variant: str, values: dict[tuple[int, int], float], dataset: str = "cub", method: str = "msdnpp",
               metrics_: tuple[str, ...] = ("zsl_acc", "u", "s", "h")) -> list[dict]:
    """Rows of one variant: ``values`` by (seed, data seed); every metric gets the same value."""
    return [{"run_id": f"{method}-{variant}-{dataset}-{s}-{d}", "method": method, "variant": variant,
             "dataset": dataset, "source": "simulated", "sim_preset": "tiny", "data_seed": d, "protocol": "val",
             "seed": s, "metric": m, "value": v} for (s, d), v in values.items() for m in metrics_]


def test_ablation_differences_pair_units_and_say_how_many():
    rows = (_unit_rows("full", {(0, 0): 50.0, (1, 0): 52.0, (2, 0): 54.0})
            + _unit_rows("a", {(0, 0): 51.0, (1, 0): 52.0, (2, 0): 56.0})  # +1, 0, +2: not significant
            + _unit_rows("b", {(0, 0): 60.0, (1, 0): 62.1})  # seed 2 missing: 2 pairs
            + _unit_rows("c", {(2, 0): 40.0}))  # one pair: a difference, no interval
    table = build_table(rows, "ablation")
    assert table.reference == "full" and table.deltas == ["zsl_acc", "h"]
    full, a, b, c = table.delta_cells
    assert all(x.reference for x in full)
    assert a[1].paired.n == 3 and a[1].paired.mean == pytest.approx(1.0) and not a[1].paired.significant
    assert b[1].paired.n == 2 and b[1].paired.mean == pytest.approx(10.05) and b[1].fewer
    assert c[1].paired.n == 1 and c[1].paired.lo is None
    md = render_markdown(table)
    assert "| full |" in md and md.count("reference |") == 2
    assert "| +1.0 ± 2.5 |" in md  # differences (1, 0, 2): sd 1, t_{.975,2} / sqrt 3 = 2.48
    assert "-14.0 (n=1)" in md and "(n=2)" in md and "0.0 ±" not in md.split("| c |")[1]
    assert "n = 3 pairs per dataset where finished" in table.caption
    tex = render_latex(table)
    assert "$\\Delta$H" in tex and "$-$14.0 (n=1)" in tex and "\\cmidrule(lr){2-7}" in tex


def test_significant_difference_is_bold_and_caption_gives_detectable_difference():
    rows = (_unit_rows("full", {(0, 0): 50.0, (1, 0): 52.0, (2, 0): 54.0})
            + _unit_rows("better", {(0, 0): 55.0, (1, 0): 57.2, (2, 0): 58.8}))  # +5, +5.2, +4.8
    table = build_table(rows, "ablation")
    p = table.delta_cells[1][1].paired
    assert p.significant and p.p < 0.01
    md = render_markdown(table)
    assert f"**+5.0 ± {p.half_width:.1f}**" in md
    detect = (4.302652729749464 + 0.6 / 0.32 ** 0.5) * 0.2 / 3 ** 0.5  # sd of (5, 5.2, 4.8) = 0.2
    assert f"is {detect:.1f} points on CUB" in table.caption and "needs 2 seeds on CUB" in table.caption
    assert "p < 0.05" in md and "α = 0.05" in md and "$" not in md.split("\n")[0].replace("$\\pm$", "")


def test_reference_is_chosen_validated_and_matches_swept_values():
    rows = []
    for rho, shift in ((0, 0.0), (0.5, -4.0)):
        rows += _unit_rows(f"full,sim.rho={rho}", {(0, 0): 60.0 + shift, (1, 0): 61.0 + shift})
        rows += _unit_rows(f"nci,sim.rho={rho}", {(0, 0): 59.0 + 2 * shift, (1, 0): 60.0 + 2 * shift})
    table = build_table(rows, "ablation")
    assert table.reference == "full"  # the first variant's named part
    by = dict(zip(table.labels, table.delta_cells))
    assert by["full,sim.rho=0.5"][1].reference
    assert by["nci,sim.rho=0"][1].paired.mean == pytest.approx(-1.0)
    assert by["nci,sim.rho=0.5"][1].paired.mean == pytest.approx(-5.0)  # against full at rho 0.5, not at 0
    fixed = build_table(rows, "ablation", reference="full,sim.rho=0")
    assert dict(zip(fixed.labels, fixed.delta_cells))["full,sim.rho=0.5"][1].paired.mean == pytest.approx(-4.0)
    with pytest.raises(DataError, match="unknown reference variant 'ful'; valid: full,sim.rho=0, .*, full, nci"):
        build_table(rows, "ablation", reference="ful")
    with pytest.raises(DataError, match="ablation tables"):
        build_table(make_rows("main"), "main", reference="full")
    sweep = [dict(r, variant=r["variant"].split(",")[1]) for r in rows if r["variant"].startswith("full")]
    assert build_table(sweep, "ablation").reference == "sim.rho=0"  # a sweep alone: its first point


def test_data_seeds_are_pairing_units_and_named_in_the_caption():
    vals = {(s, d): 50.0 + s + 3 * d for s in (0, 1) for d in (0, 1)}
    rows = _unit_rows("full", vals) + _unit_rows("x", {k: v + 1 + 0.1 * k[0] for k, v in vals.items()})
    table = build_table(rows, "ablation")
    assert table.delta_cells[1][1].paired.n == 4 and table.cells[0][0].n == 4
    assert "mean $\\pm$ std over 2 seeds x 2 data seeds" in table.caption
    assert "pairs (training seed x data seed)" in table.caption
    # Real rows have no data seed: beside simulated ones of one data seed, no second dimension is claimed.
    mixed = _unit_rows("a", {(0, 0): 1.0}) + [dict(r, data_seed="", source="real", method="b")
                                              for r in _unit_rows("a", {(0, 0): 2.0})]
    assert "data seed" not in build_table(mixed, "main").caption


def test_other_table_kinds_are_unchanged_by_paired_differences():
    """main_table_plain.* were written by the code before paired differences existed (commit 1d36a1e)."""
    table = build_table(make_rows("main"), "main")
    assert table.deltas == [] and table.delta_cells == [] and table.reference is None
    assert render_latex(table) == (GOLDEN / "main_table_plain.tex").read_text()
    assert render_markdown(table) == (GOLDEN / "main_table_plain.md").read_text()


def test_table_and_power_cli(tmp_path, capsys):
    from zsl_bench import stats
    from zsl_bench.cli.main import main

    csv = tmp_path / "results.csv"
    append_rows(csv, make_rows("ablation"))
    assert main(["table", str(csv), "--kind", "ablation", "--reference", "no_causal_attention"]) == 0
    out = capsys.readouterr().out
    assert "reference row (no_causal_attention)" in out and "| full |" in out and "+10.0" in out
    assert main(["table", str(csv), "--reference", "full"]) == 2
    assert "--reference: only with --kind ablation" in capsys.readouterr().err
    assert main(["table", str(csv), "--kind", "ablation", "--reference", "nope"]) != 0
    assert "unknown reference variant 'nope'; valid: full, no_causal_attention" in capsys.readouterr().err
    assert main(["power", str(csv)]) == 0
    out = capsys.readouterr().out
    # Paired H differences to full: sd 1 (no_causal_attention) and 2 (w_distill=0_x), pooled sqrt(2.5).
    sd = 2.5 ** 0.5
    line = next(x for x in out.splitlines() if x.startswith("CUB") and " H " in x)
    assert line.split() == ["CUB", "H", "2", "3", f"{sd:.2f}", f"{stats.detectable_difference(sd, 3):.1f}",
                            str(stats.pairs_needed(sd, 2.0))]
    assert main(["power", str(csv), "--delta", "0"]) == 2
    assert "--delta" in capsys.readouterr().err


def test_sweep_figure_renders_bands_from_toy_rows(tmp_path):
    rows = []
    for rho in (0, 0.5, 0.9):
        for method in ("msdn", "msdnpp"):
            rows += _unit_rows(f"sim.rho={rho}", {(s, d): 70.0 - 10 * rho + s + d for s in (0, 1) for d in (0, 1)},
                               method=method, metrics_=("zsl_acc", "h"))
    rows += _unit_rows("sim.rho=0", {(0, 0): 60.0}, dataset="flo", metrics_=("zsl_acc", "h"))  # one unit: no band
    made = plots.plot_sweep(rows, tmp_path)
    assert sorted(p.name for p in made) == ["sweep_sim_rho.pdf", "sweep_sim_rho.png"]
    assert all(p.stat().st_size > 1000 for p in made)
    with pytest.raises(DataError, match="not a numeric key swept in these rows; valid: sim.rho"):
        plots.plot_sweep(rows, tmp_path, x="sim.kappa")
    with pytest.raises(DataError, match="give the swept key"):
        plots.plot_sweep(make_rows("ablation"), tmp_path)


def test_plot_cli_sweep(tmp_path, capsys):
    from zsl_bench.cli.main import main

    csv = tmp_path / "results.csv"
    append_rows(csv, _unit_rows("full,sim.rho=0", {(0, 0): 1.0, (1, 0): 2.0})
                + _unit_rows("full,sim.rho=0.5", {(0, 0): 3.0, (1, 0): 2.0}))
    assert main(["plot", str(csv), "--kind", "sweep", "--x", "sim.rho", "--out", str(tmp_path / "f")]) == 0
    assert (tmp_path / "f" / "sweep_sim_rho.png").is_file()
    assert main(["plot", str(csv), "--kind", "ablation", "--x", "sim.rho", "--out", str(tmp_path / "f")]) == 2
    assert "--x: only with --kind sweep" in capsys.readouterr().err


def test_order_puts_the_named_rows_first_and_refuses_unknown_names() -> None:
    def rows(method: str) -> list[dict[str, object]]:
        return [{"method": method, "variant": "default", "dataset": "cub", "seed": 0, "protocol": "val",
                 "source": "simulated", "sim_preset": "tiny", "metric": k, "value": 50.0}
                for k in ("zsl_acc", "u", "s", "h")]

    # Input order eszsl, ale, sje (e.g. sje's units rerun after a preset change, appended last).
    mixed = rows("eszsl") + rows("ale") + rows("sje")
    assert build_table(mixed).labels == ["eszsl", "ale", "sje"]
    assert build_table(mixed, order=["sje"]).labels == ["sje", "eszsl", "ale"]
    assert build_table(mixed, order=["ale", "eszsl"]).labels == ["ale", "eszsl", "sje"]
    with pytest.raises(DataError, match="--order: msdn not among the rows' methods; valid: eszsl, ale, sje"):
        build_table(mixed, order=["msdn"])


def test_caption_names_the_generators_behind_the_rows():
    """Rows of several generator versions: the caption lists each with its datasets, and says where an
    older version wrote the newest one's data (v2 on CUB is v3's; on AWA2's small preset it is not)."""
    from zsl_bench.tables import caption

    rows = make_rows("main")
    for r in rows:
        r["generator_version"] = "zsl-bench-sim/3.0" if r["dataset"] == "flo" else "zsl-bench-sim/2.0"
    assert "Data: simulated (small; generators 3.0 on FLO and 2.0 on CUB (3.0's data there))" in caption(rows, "main")
    for r in rows:
        r["generator_version"] = "zsl-bench-sim/3.0"
    assert "Data: simulated (small; generator 3.0)" in caption(rows, "main")
    awa2 = [{**r, "dataset": "awa2", "generator_version": "zsl-bench-sim/2.0"} for r in rows if r["dataset"] == "cub"]
    assert "generators 3.0 on FLO, CUB and 2.0 on AWA2)" in caption(rows + awa2, "main")
