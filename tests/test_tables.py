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
