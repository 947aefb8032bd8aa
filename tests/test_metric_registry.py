"""Registered metric specs: the built-ins keep today's names and orders, every output derives from
them, and adding a metric is one registration."""

from __future__ import annotations

import json

import numpy as np
import pytest

from zsl_bench import metrics, plots, results
from zsl_bench.cli.main import main
from zsl_bench.errors import ZSLError
from zsl_bench.metrics import Evaluation, MetricSpec
from zsl_bench.protocol import check_inputs, evaluate_scores
from zsl_bench.registry import METRICS
from zsl_bench.tables import build_table, render_latex, render_markdown


def _inputs(seed: int, ties: bool = False) -> tuple[np.ndarray, ...]:
    """Random [200, 12] scores: 7 seen classes (rows 0..119), 5 unseen (rows 120..199), all present."""
    rng = np.random.default_rng(seed)
    labels = np.concatenate([np.arange(120) % 7, 7 + np.arange(80) % 5])
    scores = rng.standard_normal((200, 12))
    if ties:
        scores = np.round(scores, 1)  # many equal margins: breakpoints shared by several rows
    return scores, labels, np.arange(7), np.arange(7, 12), np.arange(120), np.arange(120, 200)


def test_builtin_names_and_orders_are_unchanged():
    # results.csv rows, `evaluate --json` keys and the tables' columns, in the order they had.
    assert metrics.names("row") == ("zsl_acc", "u", "s", "h", "gamma", "ausuc")
    assert results.METRIC_NAMES == metrics.names("row")
    assert metrics.names("evaluate") == ("zsl_acc", "u", "s", "h", "gamma", "best_gamma", "best_h", "ausuc")
    assert set(metrics.names("history")) == set(metrics.names("evaluate"))
    assert metrics.names("selection") == ("zsl_acc", "u", "s", "h", "ausuc")
    # Table columns: the four, plus the context-reliance extras only where some row has them.
    assert [s.name for s in metrics.columns("table")] == ["zsl_acc", "u", "s", "h"]
    assert [s.short for s in metrics.columns("table")] == ["Acc", "U", "S", "H"]
    assert [s.name for s in metrics.columns("table", {"reliance_h", "reliance_zsl"})] == [
        "zsl_acc", "u", "s", "h", "reliance_zsl", "reliance_h"]
    # The `run` table: six columns, the attention hit rates of MSDN's two maps only where some row has them.
    base = [("zsl_acc", "ZSL acc"), ("u", "U"), ("s", "S"), ("h", "H"), ("gamma", "γ"), ("ausuc", "AUSUC")]
    assert [(s.name, s.label) for s in metrics.columns("run")] == base
    present = {"h", "attention_hit_rate_vaca", "attention_hit_rate_avca", "attention_hit_rate_attribute_to_region"}
    assert [(s.name, s.label) for s in metrics.columns("run", present)] == base + [
        ("attention_hit_rate_avca", "attn hit AVCA"), ("attention_hit_rate_vaca", "attn hit VACA")]
    assert [s.fmt for s in metrics.columns("run")] == [".2f"] * 4 + [".3f", ".2f"]
    assert set(metrics.names("extra")) == {metrics.hit_rate_name(m) for m in ("avca", "vaca", "attribute_to_region")} | {
        "zsl_acc_env", "h_env", "reliance_zsl", "reliance_h"}
    assert metrics.spec("h").direction == "max" and metrics.spec("gamma").direction == "none"


@pytest.mark.parametrize("seed, ties", [(0, False), (1, True), (2, False)])
@pytest.mark.parametrize("gamma", [0.0, -0.7, 1.3])
def test_evaluate_matches_evaluate_scores_bit_for_bit(seed, ties, gamma):
    args = _inputs(seed, ties)
    want = evaluate_scores(*args, gamma=gamma)
    got = metrics.evaluate(Evaluation(*check_inputs(*args), gamma=gamma))
    assert list(got) == [k for k in want if k != "curve"]
    assert all(got[k] == want[k] and isinstance(got[k], float) for k in got), (got, want)


def test_evaluation_computes_the_curve_once_and_gamma_none_is_the_best(monkeypatch):
    calls = []
    sweep = metrics.sweep_gamma
    monkeypatch.setattr(metrics, "sweep_gamma", lambda *a: calls.append(1) or sweep(*a))
    ev = Evaluation(*check_inputs(*_inputs(0)), gamma=None)
    res = metrics.evaluate(ev)
    assert len(calls) == 1
    assert res["gamma"] == res["best_gamma"] and res["h"] == pytest.approx(res["best_h"], abs=1e-9)


@pytest.mark.parametrize("change, match", [
    (dict(name="Bad Name"), "lower-case identifier"),
    (dict(direction="up"), "direction 'up'"),
    (dict(shown={"tabel"}), "unknown places tabel"),
    (dict(shown={"evaluate"}, compute=None), "needs compute"),
    (dict(shown={"table"}, compute=lambda ev: 0.0), "only it has one"),
    (dict(shown={"row"}, compute=None), "come from an evaluation"),
    (dict(shown={"row", "extra", "evaluate"}), "not an extra"),
])
def test_spec_mistakes_raise(change, match):
    kw = dict(name="toy", label="Toy", description="a toy", shown={"evaluate", "row"}, compute=lambda ev: 0.0)
    with pytest.raises(ValueError, match=match):
        MetricSpec(**{**kw, **change})


def test_unknown_metric_or_place_names_the_valid_ones():
    with pytest.raises(ZSLError, match="Did you mean zsl_acc"):
        metrics.spec("zsl_ac")
    with pytest.raises(ZSLError, match="unknown metric place 'tabel'.*table"):
        metrics.names("tabel")
    with pytest.raises(ValueError, match="already registered"):
        metrics.register(MetricSpec("h", "H2", "a second h", shown={"table"}))


# ---------------------------------------------------------------- adding a metric: one registration


def _err(ev: Evaluation) -> float:
    return 100.0 - metrics.zsl_accuracy(ev.scores[ev.unseen_idx], ev.labels[ev.unseen_idx], ev.unseen_classes)


@pytest.fixture()
def toy():
    """A metric added by one registration (ZSL error, lower is better), unregistered afterwards."""
    spec = metrics.register(MetricSpec(
        "zsl_err", "ZSL err", "100 - ZSL accuracy", direction="min", compute=_err,
        shown={"evaluate", "history", "selection", "row", "table", "run"}, short="Err", group="ZSL",
        caption="error (Err)"))
    yield spec
    METRICS.remove("zsl_err")
    assert "zsl_err" not in METRICS and metrics.names("row")[-1] == "ausuc"


def test_a_registered_metric_reaches_every_output(toy, tmp_path, capsys):
    for where in ("evaluate", "history", "selection", "row", "table", "run"):
        assert metrics.names(where)[-1] == "zsl_err", where
    assert results.METRIC_NAMES[-1] == "zsl_err"
    assert metrics.columns("run")[-1] is toy
    assert plots.axis_label("zsl_err") == "ZSL err (%)"

    res = metrics.evaluate(Evaluation(*check_inputs(*_inputs(0))))
    assert res["zsl_err"] == pytest.approx(100.0 - res["zsl_acc"])

    # `zsl-bench evaluate`: a JSON key and a line of the text table.
    f = tmp_path / "scores.npz"
    s, lab, seen, unseen, rs, ru = _inputs(0)
    np.savez(f, scores=s, labels=lab, seen_classes=seen, unseen_classes=unseen, test_seen_loc=rs,
             test_unseen_loc=ru)
    assert main(["evaluate", str(f), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert list(out)[-1] == "zsl_err" and out["zsl_err"] == pytest.approx(100.0 - out["zsl_acc"])
    assert main(["evaluate", str(f)]) == 0
    assert f"  {'ZSL err':<9}{100.0 - out['zsl_acc']:7.2f}\n" in capsys.readouterr().out

    # Tables: a column per dataset, named in the caption, bold by its direction (lowest error).
    rows = [{"method": m, "variant": "default", "dataset": "cub", "protocol": "val", "seed": seed,
             "source": "real", "metric": k, "value": v + seed}
            for m, acc in (("a", 60.0), ("b", 70.0)) for seed in (0, 1)
            for k, v in (("zsl_acc", acc), ("h", acc), ("zsl_err", 100.0 - acc))]
    table = build_table(rows, "main")
    assert table.metrics == ["zsl_acc", "u", "s", "h", "zsl_err"]
    assert "ZSL accuracy (Acc), GZSL U, S, H and ZSL error (Err) in %" in table.caption
    assert [c.bold for c in table.cells[1]] == [True, False, False, True, True]  # b: higher acc, lower err
    assert not table.cells[0][4].bold
    assert render_markdown(table).splitlines()[2].endswith("| CUB H | CUB Err |")
    assert "\\multicolumn{5}{c}{CUB}" in render_latex(table)

    # `zsl-bench ls metrics` lists it.
    assert main(["ls", "metrics"]) == 0
    assert any(line.startswith("zsl_err ") and "100 - ZSL accuracy" in line
               for line in capsys.readouterr().out.splitlines())
