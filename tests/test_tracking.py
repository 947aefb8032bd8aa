"""MLflow tracking: one parent run per study, exactly one nested run per unit, failures recorded.

One MLflow database for the whole file: creating its tables is the slow part.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from test_study import toy_run  # tests/ is on sys.path (rootdir conftest)

from zsl_bench.study import StudyRunner, grid_units, parse_spec
from zsl_bench.tables import build_table
from zsl_bench.tracking import (
    PARENT_TAG,
    STUDY_TAG,
    UNIT_TAG,
    Tracker,
    flatten,
    rows_from_mlflow,
)


@pytest.fixture(scope="module")
def tracked(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    out = tmp_path_factory.mktemp("tracked")
    spec = parse_spec({"name": "tracked", "methods": ["study_toy"], "datasets": ["cub", "sun"], "seeds": [0, 1],
                       "sim": "tiny", "grid": {"variants": {"a": {"method.w": 1.0}, "bad": {"method.nan": True}}}})
    StudyRunner(spec, out, run_fn=toy_run, tracker=Tracker(out), progress=False).run()
    # A second run (a resume of a finished study) must not log anything again.
    StudyRunner(spec, out, run_fn=toy_run, tracker=Tracker(out), progress=False).run()
    return out, spec


def test_one_nested_run_per_unit(tracked):
    out, spec = tracked
    tracker = Tracker(out)
    counts = tracker.count_units("tracked")
    keys = {u.key for ds in spec.datasets for u in grid_units(spec, ds)}
    assert set(counts) == keys and all(n == 1 for n in counts.values())
    parents = [r for r in tracker.find_runs(f"tags.`{STUDY_TAG}` = 'tracked'") if UNIT_TAG not in r.data.tags]
    assert len(parents) == 1 and PARENT_TAG not in parents[0].data.tags
    units = [r for r in tracker.find_runs(f"tags.`{STUDY_TAG}` = 'tracked'") if UNIT_TAG in r.data.tags]
    assert {r.data.tags[PARENT_TAG] for r in units} == {parents[0].info.run_id}


def test_unit_runs_hold_params_epoch_metrics_and_artifacts(tracked):
    out, _ = tracked
    tracker = Tracker(out)
    ok = [r for r in tracker.find_runs("tags.`zsl.variant` = 'a'")]
    assert len(ok) == 4 and all(r.info.status == "FINISHED" for r in ok)
    run = ok[0]
    assert run.data.params["method.w"] == "1.0" and run.data.params["unit.sim"] == "tiny"
    assert run.data.metrics["test.h"] == pytest.approx(45.0 + int(run.data.tags["zsl.seed"]))
    history = tracker.client.get_metric_history(run.info.run_id, "val.h")
    assert [m.step for m in history] == [1, 2, 3]
    arts = {a.path for a in tracker.client.list_artifacts(run.info.run_id)}
    assert {"rows.csv", "config.json", "curves"} <= arts
    parent_arts = {a.path for a in tracker.client.list_artifacts(run.data.tags[PARENT_TAG])}
    assert "results.csv" in parent_arts


def test_failed_units_are_recorded_with_reason(tracked):
    out, _ = tracked
    bad = Tracker(out).find_runs("tags.`zsl.variant` = 'bad'")
    assert len(bad) == 4
    assert all(r.info.status == "FAILED" and "NaN" in r.data.tags["zsl.failure"] for r in bad)


def test_table_from_tracking_uri_equals_table_from_rows(tracked):
    out, _ = tracked
    from zsl_bench.study import read_study_rows

    via_mlflow = build_table(rows_from_mlflow(Tracker(out).uri), "ablation")
    via_csv = build_table(read_study_rows([out / "results.csv"]), "ablation")
    assert via_mlflow.labels == via_csv.labels == ["a"]
    assert [c.mean for c in via_mlflow.cells[0]] == [c.mean for c in via_csv.cells[0]]


def test_flatten_nests_dotted_keys():
    assert flatten({"a": {"b": 1, "c": {"d": 2}}}) == {"a.b": 1, "a.c.d": 2}


def test_units_of_several_data_seeds_name_their_draw(tracked):
    out, _ = tracked
    spec = parse_spec({"name": "drawn", "methods": ["study_toy"], "datasets": ["cub"], "seeds": [0], "sim": "tiny",
                       "data_seeds": [0, 2], "grid": {"variants": {"a": {"method.w": 1.0}}}})
    tracker = Tracker(out)
    unit = grid_units(spec, "cub")[1]
    assert tracker.log_unit(unit, status="FAILED", reason="test") is not None
    (run,) = [r for r in tracker.find_runs(f"tags.`{STUDY_TAG}` = 'drawn'") if UNIT_TAG in r.data.tags]
    assert run.data.tags["zsl.data_seed"] == "2" and run.info.run_name == "study_toy/a/cub/s0/d2"
    assert all("zsl.data_seed" not in r.data.tags for r in tracker.find_runs(f"tags.`{STUDY_TAG}` = 'tracked'"))


def test_a_table_from_mlflow_keeps_data_seeds_apart_and_names_the_generator(tmp_path):
    """Several data seeds are a second unit dimension: rows rebuilt from MLflow carry them, so the
    paired differences and the caption equal those of the results file (before: one data seed's
    runs merged into another's pairs); the caption names the generator behind the rows."""
    from types import SimpleNamespace

    from zsl_bench.study import read_study_rows

    def by_draw(unit, **kw):  # H differs between the two draws, so merging them changes the pairs
        res = toy_run(unit, **kw)
        for r in res.rows:
            r["value"] = float(r["value"]) + 7.0 * unit.spec.sim_seed * (r["variant"] == "b")
        return SimpleNamespace(**{**vars(res), "metrics": {k: v + 7.0 * unit.spec.sim_seed * (unit.spec.variant == "b")
                                                             for k, v in res.metrics.items()}})

    spec = parse_spec({"name": "draws", "methods": ["study_toy"], "datasets": ["cub"], "seeds": [0, 1], "sim": "tiny",
                       "data_seeds": [0, 2], "grid": {"variants": {"a": {"method.w": 1.0}, "b": {"method.w": 2.0}}}})
    StudyRunner(spec, tmp_path, run_fn=by_draw, tracker=Tracker(tmp_path), progress=False).run()
    rows = rows_from_mlflow(Tracker(tmp_path).uri)
    assert {r["data_seed"] for r in rows} == {"0", "2"} and {r["generator_version"] for r in rows} != {""}
    via_mlflow = build_table(rows, "ablation", reference="a")
    via_csv = build_table(read_study_rows([tmp_path / "results.csv"]), "ablation", reference="a")
    assert via_mlflow.caption == via_csv.caption and "generator" in via_csv.caption
    pairs = [{label: [c.paired for c in row] for label, row in zip(t.labels, t.delta_cells)}
             for t in (via_mlflow, via_csv)]
    assert pairs[0] == pairs[1]
    assert pairs[1]["b"][0].n == 4 and pairs[1]["b"][0].sd > 0  # 2 training seeds x 2 data seeds
