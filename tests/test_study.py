"""Studies: spec validation, grid expansion, exactly-once execution, NaN trials, search, resume."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from zsl_bench.contract import ZSLMethod
from zsl_bench.data.sim import DEFAULT_GENERATOR, GENERATORS
from zsl_bench.errors import ConfigError, TrainingError
from zsl_bench.registry import METHODS
from zsl_bench.results import METRIC_NAMES, read_rows
from zsl_bench.runner import make_rows, resolve_config
from zsl_bench.study import (
    StudyRunner,
    Timing,
    Unit,
    check_configs,
    dedupe_rows,
    expand_grid,
    grid_units,
    load_spec,
    locate_spec,
    parse_spec,
)
from zsl_bench.study import optuna_adapter as oa
from zsl_bench.tables import build_table, render_markdown

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class ToyConfig:
    w: float = 1.0  # H rises with w
    nan: bool = False  # fail like a NaN loss
    mode: str = "x"  # no effect: a categorical search dimension


@METHODS.register("study_toy")
class StudyToy(ZSLMethod):
    """Test-only: a registered config for :func:`toy_run`, so studies resolve and drift-check it as any method."""

    name = "study_toy"
    config_cls = ToyConfig


# The default generator's data (a version the drift check knows; an unknown one counts as other data).
TOY_DATA = SimpleNamespace(is_simulated=True, provenance={"generator_version": GENERATORS[DEFAULT_GENERATOR]})


def toy_run(unit: Unit, *, out_dir: Path, reporter=None, progress: bool = True) -> SimpleNamespace:
    """A small deterministic run function: H rises with ``method.w``; ``method.nan`` fails like NaN.

    It stands in for training only: configs are resolved and rows built as for a real run.
    """
    spec = unit.spec
    cfg = resolve_config(spec)
    w = cfg.method.w
    if cfg.method.nan:
        raise TrainingError("loss is NaN at epoch 2, step 1 (toy)")
    for epoch in range(1, 4):
        if reporter is not None:
            reporter.on_epoch("val", epoch, {"loss": 1.0 / epoch, "h": 10.0 * w * epoch / 3})
    h = 40.0 + 5.0 * w + spec.seed
    metrics = {"zsl_acc": h + 5, "u": h - 2, "s": h + 2, "h": h, "gamma": 0.1, "ausuc": 20.0 + w}
    names = (*METRIC_NAMES, "val_h") if spec.select_only else METRIC_NAMES
    rows = make_rows(spec, cfg, TOY_DATA, {**metrics, "val_h": 10.0 * w}, epoch=3, wall_time_s=0.0, names=names)
    return SimpleNamespace(metrics=metrics, selection={"val_h": 10.0 * w, "best_epoch": 3}, history=[],
                           curve={"gamma": np.linspace(-1, 1, 4), "u": np.linspace(0, 60, 4),
                                  "s": np.linspace(70, 0, 4)}, rows=rows, config=cfg, wall_time_s=0.0)


def _spec(**kw):
    raw = {"name": "toy", "methods": ["study_toy"], "datasets": ["cub"], "seeds": [0, 1], "sim": "tiny",
           "grid": {"variants": {"a": {"method.w": 1.0}, "b": {"method.w": 2.0}}}}
    raw.update(kw)
    return parse_spec(raw, "toy.yaml")


# ---------------------------------------------------------------- specs


def test_expand_grid_variants_times_sweep():
    pts = expand_grid({"full": {}, "no_d": {"method.w_distill": 0}},
                      {"method.lambda_eff": [0.1, 1.0], "train.lr": [1e-4]})
    assert list(pts) == ["full,method.lambda_eff=0.1,train.lr=0.0001", "full,method.lambda_eff=1,train.lr=0.0001",
                         "no_d,method.lambda_eff=0.1,train.lr=0.0001", "no_d,method.lambda_eff=1,train.lr=0.0001"]
    assert pts["no_d,method.lambda_eff=1,train.lr=0.0001"] == {
        "method": {"w_distill": 0, "lambda_eff": 1.0}, "train": {"lr": 1e-4}}
    assert list(expand_grid(None, {"method.w": [1, 2]})) == ["method.w=1", "method.w=2"]
    assert expand_grid(None, None) == {"default": {}}


def test_grid_units_cover_methods_points_seeds_with_distinct_keys():
    spec = _spec(base={"train": {"epochs": 2}})
    units = grid_units(spec, "cub")
    assert len(units) == 4 and len({u.key for u in units}) == 4
    assert units[0].spec.overrides == {"train": {"epochs": 2}, "method": {"w": 1.0}}
    assert units[0].spec.run_id == units[0].run_id == f"grid-{units[0].key}"
    assert Unit.from_json(units[1].to_json()) == units[1]


def test_unit_keys_and_stored_units_are_those_of_existing_storages():
    """Optuna storages and results/ hold units by key and as JSON: both must never change."""
    spec = parse_spec({"name": "pin", "methods": ["ale"], "datasets": ["cub"], "seeds": [3], "sim": "tiny",
                       "sim_seed": 2, "base": {"train.lr": 0.1}, "grid": {"variants": {"v": {"method.margin": 2.0}}}})
    (unit,) = grid_units(spec, "cub")
    assert unit.key == "b6e69614b521d37b"  # computed by the code before studies became a package
    stored = ('{"data_root": null, "dataset": "cub", "method": "ale", "overrides": {"method": {"margin": 2.0}, '
              '"train": {"lr": 0.1}}, "phase": "grid", "protocol": "val", "seed": 3, "sim_preset": "tiny", '
              '"sim_seed": 2, "study": "pin", "variant": "v"}')
    assert unit.to_json() == stored and Unit.from_json(stored) == unit
    assert [u.key for u in grid_units(load_spec("smoke.yaml"), "cub")] == [
        "b78afb3ba3d43960", "13b2f789222c0fca", "fcb81bed50dca40c", "6c640c693025d76a"]


@pytest.mark.parametrize("change, match", [
    ({"name": "a b"}, "'name'"),
    ({"methods": []}, "'methods'"),
    ({"methods": ["esszl"]}, "Did you mean eszsl"),
    ({"datasets": ["cub", "imagenet"]}, "imagenet"),
    ({"seeds": [0, 0]}, "'seeds'"),
    ({"seeds": ["zero"]}, "study.seeds: 'zero'; expected an integer"),
    ({"sim_seed": "x"}, "study.sim_seed"),
    ({"protocol": "test"}, "'protocol'.*val, test-oracle"),
    ({"colour": 1}, "unknown study key 'colour'"),
    ({"grid": {"variants": {"x": {"model.w": 1}}}}, "grid.variants.x"),
    ({"grid": {"sweep": {"method.w": []}}}, "grid.sweep.method.w"),
    ({"grid": {"shape": 1}}, "grid.shape"),
    ({"grid": None, "search": {"space": {"method.w": {"type": "float", "low": 1, "high": 0}},
                               "n_trials": 2}}, "search.space.method.w"),
    ({"grid": None, "search": {"space": {"method.w": {"type": "gauss"}}, "n_trials": 2}}, "search.space.method.w.type"),
    ({"grid": None, "search": {"space": {"method.w": {"type": "float", "low": 0, "high": 1}}}}, "budget"),
    ({"grid": None, "search": {"space": {"method.w": {"type": "float", "low": 0, "high": 1}}, "n_trials": 2,
                               "pruner": "hyperband"}}, "search.pruner"),
    ({"grid": None, "search": {"space": {"method.w": {"type": "float", "low": 0, "high": 1}}, "n_trials": 0}},
     "search.n_trials: 0; valid: an integer >= 1"),
    ({"grid": None, "search": {"space": {"method.w": {"type": "float", "low": "a", "high": 1}}, "n_trials": 2}},
     "search.space.method.w.low"),
    ({"grid": None, "search": {"space": {"method.w": {"type": "float", "lo": 0}}, "n_trials": 2}},
     "unknown config key search.space.method.w.lo"),
    ({"grid": None, "search": {"space": {"method.w": {"type": "int", "low": 0, "high": 1}}, "n_trials": 2,
                               "budget": 3}}, "unknown config key search.budget"),
    ({"search": {"space": {"method.w": {"type": "int", "low": 0, "high": 1}}, "n_trials": 2}}, "both"),
])
def test_spec_errors_name_the_key(change, match):
    raw = {"name": "toy", "methods": ["eszsl"], "datasets": ["cub"], "seeds": [0],
           "grid": {"variants": {"a": {}}}}
    raw.update(change)
    raw = {k: v for k, v in raw.items() if v is not None}
    with pytest.raises(ConfigError, match=match):
        parse_spec(raw, "toy.yaml")


@pytest.mark.parametrize("name", ["smoke", "main_table", "main_table_cpu", "transzero_cpu", "msdnpp_ablation",
                                  "msdnpp_ablation_paired_cpu", "confounding_sweep_cpu", "msdnpp_sensitivity",
                                  "msdnpp_search"])
def test_shipped_specs_resolve_against_method_configs(name):
    spec = load_spec(f"{name}.yaml")
    check_configs(spec)  # every variant's keys exist in the method's config dataclass
    assert spec.name == name


def test_cpu_main_table_covers_every_method_but_msdnpp_and_transzero_and_reduces_only_two():
    from zsl_bench.registry import METHODS

    spec = load_spec("main_table_cpu.yaml")
    builtin = {m for m in METHODS.names() if METHODS.get(m).__module__.startswith("methods.")}  # not test probes
    assert set(spec.methods) == builtin - {"msdnpp", "transzero"}  # TransZero: transzero_cpu.yaml
    assert set(spec.per_method) == {"fclswgan", "tfvaegan"}
    assert tuple(load_spec("transzero_cpu.yaml").methods) == ("transzero",)


def test_default_spec_is_found_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert locate_spec(None).name == "msdnpp_ablation.yaml"
    with pytest.raises(ConfigError, match="shipped specs: .*smoke.yaml"):
        locate_spec("nope.yaml")


def test_per_method_overrides_apply_to_their_method_only_and_cli_wins():
    spec = _spec(methods=["study_toy", "ale"], base={"train.epochs": 3}, grid={"variants": {"a": {}}},
                 per_method={"ale": {"train.epochs": 5, "method.margin": 2.0}})
    units = {(u.spec.method, u.spec.variant, u.spec.seed): u for u in grid_units(spec, "cub")}
    assert units[("ale", "a", 0)].spec.overrides == {"train": {"epochs": 5}, "method": {"margin": 2.0}}
    assert units[("study_toy", "a", 0)].spec.overrides == {"train": {"epochs": 3}}
    from zsl_bench.cli.study import _spec_with_cli

    args = SimpleNamespace(sim=None, data_root=None, overrides=["train.epochs=1"])
    cli_units = {(u.spec.method, u.spec.variant, u.spec.seed): u for u in grid_units(_spec_with_cli(spec, args), "cub")}
    assert cli_units[("ale", "a", 0)].spec.overrides["train"] == {"epochs": 1}
    with pytest.raises(ConfigError, match="per_method.devise"):
        _spec(per_method={"devise": {"train.epochs": 1}})
    with pytest.raises(ConfigError, match="per_method.study_toy"):
        _spec(per_method={"study_toy": [1, 2]})


def test_cli_seeds_replace_the_spec_seeds_and_bad_values_name_the_flag():
    from zsl_bench.cli.study import _spec_with_cli

    args = SimpleNamespace(sim=None, data_root=None, overrides=[], seeds="2,0")
    spec = _spec_with_cli(_spec(), args)
    assert spec.seeds == (2, 0) and {u.spec.seed for u in grid_units(spec, "cub")} == {0, 2}
    # Units keep their keys across seed sets, so adding seeds later reuses finished ones.
    assert {u.key for u in grid_units(spec, "cub") if u.spec.seed == 0} <= {u.key for u in grid_units(_spec(), "cub")}
    # One seeds parser for every command: duplicates are dropped (order kept), negatives refused.
    assert _spec_with_cli(_spec(), SimpleNamespace(sim=None, data_root=None, overrides=[], seeds="1,0,1")).seeds \
        == (1, 0)
    for bad in ("", "a", "-1", "1.5"):
        with pytest.raises(ConfigError, match="--seeds: bad value"):
            _spec_with_cli(_spec(), SimpleNamespace(sim=None, data_root=None, overrides=[], seeds=bad))


def test_fewer_seeds_run_only_their_units_and_adding_seeds_reuses_finished_ones(tmp_path):
    from zsl_bench.cli.study import _spec_with_cli

    calls: list[tuple[str, int]] = []

    def counting_run(unit, **kw):
        calls.append((unit.spec.variant, unit.spec.seed))
        return toy_run(unit, **kw)

    def with_seeds(seeds):
        return _spec_with_cli(_spec(), SimpleNamespace(sim=None, data_root=None, overrides=[], seeds=seeds))

    # A run of every seed, interrupted: its units are all enqueued but only one ran.
    full = StudyRunner(with_seeds("0,1"), tmp_path, run_fn=counting_run, progress=False)
    study = full._study(full.study_name("cub"))
    full.queue.ensure_enqueued(study, grid_units(full.spec, "cub"))
    assert len(study.get_trials(deepcopy=False)) == 4
    StudyRunner(with_seeds("0"), tmp_path, run_fn=counting_run, progress=False).run()
    assert sorted(calls) == [("a", 0), ("b", 0)]  # seed-1 units stay waiting for a run asking for them
    out = StudyRunner(with_seeds("0,1"), tmp_path, run_fn=counting_run, progress=False).run()
    assert sorted(calls) == [("a", 0), ("a", 1), ("b", 0), ("b", 1)] and out.ran == 2
    assert len({r["run_id"] for r in out.rows}) == 4


def test_cli_datasets_run_a_subset_of_the_spec_and_the_rest_later_reuses_it(tmp_path):
    from zsl_bench.cli.study import _spec_with_cli

    calls: list[str] = []

    def counting_run(unit, **kw):
        calls.append(unit.spec.dataset)
        return toy_run(unit, **kw)

    def cli(**kw):
        return SimpleNamespace(**{"sim": None, "data_root": None, "overrides": [], **kw})

    two = _spec(datasets=["cub", "sun"])
    assert _spec_with_cli(two, cli(datasets="SUN,cub")).datasets == ("cub", "sun")  # the spec's order
    StudyRunner(_spec_with_cli(two, cli(datasets="sun")), tmp_path, run_fn=counting_run, progress=False).run()
    assert calls == ["sun"] * 4
    out = StudyRunner(two, tmp_path, run_fn=counting_run, progress=False).run()
    assert calls == ["sun"] * 4 + ["cub"] * 4 and out.ran == 4 and len({r["run_id"] for r in out.rows}) == 8
    with pytest.raises(ConfigError, match=r"--datasets: awa2 not in the spec's datasets \(cub, sun\)"):
        _spec_with_cli(two, cli(datasets="cub,awa2"))
    with pytest.raises(ConfigError, match="--datasets"):
        _spec_with_cli(two, cli(datasets=" , "))
    with pytest.raises(ConfigError, match="--datasets: .*cbu"):
        _spec_with_cli(two, cli(datasets="cbu"))


def test_a_config_is_resolved_once_per_runner_not_per_check(tmp_path, monkeypatch):
    """Drift check, claim and run share one resolution per distinct config (not one per use and seed)."""
    import zsl_bench.runner as R

    calls = []
    real = R.resolve_config
    monkeypatch.setattr(R, "resolve_config", lambda spec, *a: calls.append(spec.variant) or real(spec, *a))
    spec = _spec()  # 2 variants x 2 seeds
    StudyRunner(spec, tmp_path, run_fn=toy_run, progress=False).run()
    assert sorted(calls) == ["a", "b"]
    calls.clear()
    assert StudyRunner(spec, tmp_path, run_fn=toy_run, progress=False).run().ran == 0  # drift-checks 4 units
    assert sorted(calls) == ["a", "b"]


def test_sim_sweep_expands_into_units_and_each_run_generates_its_own_data(tmp_path, monkeypatch):
    from zsl_bench.data import sim
    from zsl_bench.study.spec import sim_settings

    spec = parse_spec({"name": "rho", "methods": ["eszsl"], "datasets": ["cub"], "seeds": [0], "sim": "tiny",
                       "base": {"sim.jitter": 0.05, "sim.context_strength": 0.25},
                       "grid": {"sweep": {"sim.rho": [0, 0.5]}}}, "rho.yaml")
    units = grid_units(spec, "cub")
    assert [u.spec.variant for u in units] == ["sim.rho=0", "sim.rho=0.5"]
    assert [u.spec.overrides["sim"] for u in units] == [{"jitter": 0.05, "context_strength": 0.25, "rho": 0},
                                                        {"jitter": 0.05, "context_strength": 0.25, "rho": 0.5}]
    assert len({u.key for u in units}) == 2 and len({u.requested_digest() for u in units}) == 2
    check_configs(spec)
    assert sim_settings(spec) == [{"context_strength": 0.25, "jitter": 0.05, "rho": 0.0},
                                  {"context_strength": 0.25, "jitter": 0.05, "rho": 0.5}]
    assert sim_settings(_spec()) == [{}]  # no sim section: the preset as it is

    calls = []
    real = sim.generate
    monkeypatch.setattr(sim, "generate", lambda *a, **kw: calls.append(kw) or real(*a, **kw))
    out = StudyRunner(spec, tmp_path / "out", progress=False).run()
    assert {(c["rho"], c["jitter"]) for c in calls} == {(0.0, 0.05), (0.5, 0.05)}
    got = {r["variant"]: json.loads(r["config"])["sim"] for r in out.rows}
    assert got == {"sim.rho=0": {"context_strength": 0.25, "jitter": 0.05, "rho": 0.0},
                   "sim.rho=0.5": {"context_strength": 0.25, "jitter": 0.05, "rho": 0.5}}
    assert {r["generator_version"] for r in out.rows} == {sim.GENERATORS[sim.DEFAULT_GENERATOR]}


def test_confounding_sweep_spec_sweeps_rho_for_msdn_and_the_intervention_variants():
    import yaml

    from zsl_bench.study.spec import SPEC_KEYS, sim_settings

    raw = yaml.safe_load((REPO / "benchmarks" / "confounding_sweep.yaml").read_text())
    for key in ("data_seeds", "reference"):  # study keys added by another change of issue 16
        if key not in SPEC_KEYS:
            raw.pop(key)
    spec = parse_spec(raw, "confounding_sweep.yaml")
    check_configs(spec)
    rhos = [0.0, 0.25, 0.5, 0.75, 0.9]
    assert spec.sim == "small" and sim_settings(spec) == [{"context_strength": 0.25, "generator": "4.0", "rho": r}
                                                         for r in rhos]
    named = ["msdn", "full", *(f"intervention_{k}" for k in ("uniform", "reversed", "shuffle_batch",
                                                              "shuffle_region", "shuffle_attribute"))]
    assert list(spec.variants) == [f"{v},sim.rho={r:g}" for v in named for r in rhos]
    units = grid_units(spec, "cub")
    assert len(units) == len(named) * len(rhos) * len(spec.seeds) * len(getattr(spec, "data_seeds", None) or [0])
    assert resolve_config(units[0].spec).method.intervention == "none"  # the MSDN row
    assert {resolve_config(u.spec).train.epochs for u in units} == {10}


def test_sim_section_in_a_real_data_spec_is_refused():
    spec = parse_spec({"name": "x", "methods": ["eszsl"], "datasets": ["cub"], "seeds": [0],
                       "grid": {"variants": {"v": {"sim.rho": 0.5}}}}, "real.yaml")
    with pytest.raises(ConfigError, match=r"^config key sim\.rho: .*reads real data.*variant 'v' in real\.yaml"):
        check_configs(spec)


def test_check_configs_rejects_unknown_method_field():
    spec = parse_spec({"name": "x", "methods": ["msdnpp"], "datasets": ["cub"], "seeds": [0],
                       "grid": {"variants": {"bad": {"method.w_distil": 0}}}})
    with pytest.raises(ConfigError, match="method.w_distil.*variant 'bad'"):
        check_configs(spec)


# ---------------------------------------------------------------- execution


def test_runner_reads_timing_when_built_and_writes_nothing_until_run(tmp_path, monkeypatch):
    monkeypatch.setenv("ZSL_BENCH_HEARTBEAT_S", "3")
    monkeypatch.setenv("ZSL_BENCH_GRACE_S", "11")
    runner = StudyRunner(_spec(), tmp_path / "out", run_fn=toy_run, progress=False)
    assert (runner.queue.timing.heartbeat_s, runner.queue.timing.grace_s) == (3, 11)
    assert not (tmp_path / "out").exists()
    monkeypatch.setenv("ZSL_BENCH_GRACE_S", "12")  # a later runner sees the new value; this one keeps its own
    assert StudyRunner(_spec(), tmp_path / "out").queue.timing.grace_s == 12 and runner.queue.timing.grace_s == 11


def test_an_injected_run_function_keeps_config_and_drift_checks(tmp_path, monkeypatch):
    """Replacing what trains a unit must not replace what guards the results."""
    with pytest.raises(ConfigError, match="unknown config key method.ww.*variant 'a'"):
        StudyRunner(_spec(grid={"variants": {"a": {"method.ww": 1.0}}}), tmp_path, run_fn=toy_run,
                    progress=False).run()
    spec = _spec(seeds=[0])
    StudyRunner(spec, tmp_path, run_fn=toy_run, progress=False).run()
    monkeypatch.setattr(StudyToy, "presets", {"cub": {"eval": {"gamma": 0.5}}})
    with pytest.raises(ConfigError, match=r"2 finished unit\(s\).*another config"):
        StudyRunner(spec, tmp_path, run_fn=toy_run, progress=False).run()
    out = StudyRunner(spec, tmp_path, run_fn=toy_run, progress=False, rerun_changed=True).run()
    assert out.ran == 2 and {r["run_id"] for r in out.rows} == {u.run_id for u in grid_units(spec, "cub")}



def test_nan_unit_is_recorded_failed_and_study_goes_on_exactly_once(tmp_path):
    import optuna

    spec = _spec(grid={"variants": {"a": {"method.w": 1.0}, "bad": {"method.nan": True}}})
    out = StudyRunner(spec, tmp_path, run_fn=toy_run, progress=False).run()
    assert out.ran == 4
    assert [d for d, _ in out.failed] == ["study_toy/bad/cub/seed 0", "study_toy/bad/cub/seed 1"]
    assert all("NaN" in r for _, r in out.failed)
    assert {r["variant"] for r in out.rows} == {"a"} and len(out.rows) == 2 * 6
    study = optuna.load_study(study_name="toy.cub", storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    failed = [t for t in study.trials if t.state == optuna.trial.TrialState.FAIL]
    assert len(failed) == 2 and all("NaN" in t.user_attrs["failure"] for t in failed)

    # A rerun finds everything done (failed units included): nothing runs, no duplicate rows.
    again = StudyRunner(spec, tmp_path, run_fn=toy_run, progress=False).run()
    assert again.ran == 0
    rows = read_rows(tmp_path / "results.csv")
    assert len(rows) == len(dedupe_rows(rows)) == 12
    assert (tmp_path / "curves").is_dir() and len(list((tmp_path / "curves").glob("*.npz"))) == 2


def test_search_selects_on_val_and_retrains_best_with_every_seed(tmp_path):
    spec = parse_spec({
        "name": "toysearch", "methods": ["study_toy"], "datasets": ["cub"], "seeds": [0, 1, 2], "sim": "tiny",
        "search": {"space": {"method.w": {"type": "float", "low": 0.5, "high": 3.0},
                             "method.mode": {"type": "categorical", "choices": ["x", "y"]}},
                   "n_trials": 5, "sampler": "random", "pruner": "median", "seed": 1}})
    runner = StudyRunner(spec, tmp_path, run_fn=toy_run, progress=False)
    out = runner.run()
    best = out.best["cub"]
    import optuna

    study = optuna.load_study(study_name="toysearch.cub.search", storage=runner.url)
    states = [t.state.name for t in study.trials]
    trial_h = {r["run_id"]: float(r["value"]) for r in out.trial_rows if r["metric"] == "val_h"}
    assert len(states) == 5 and len(trial_h) == states.count("COMPLETE") >= 2
    assert states.count("COMPLETE") + states.count("PRUNED") == 5
    assert math.isclose(best["value"], max(trial_h.values()))
    assert {r["variant"] for r in out.rows} == {"best"}
    assert sorted({int(r["seed"]) for r in out.rows}) == [0, 1, 2]
    assert math.isclose(float(next(r["value"] for r in out.rows if r["metric"] == "h" and int(r["seed"]) == 0)),
                        40.0 + 5.0 * best["params"]["method.w"])
    assert len(read_rows(tmp_path / "trials.csv")) == len(trial_h) * 7
    assert len(read_rows(tmp_path / "results.csv")) == 18
    # Resuming a finished search runs nothing more.
    assert StudyRunner(spec, tmp_path, run_fn=toy_run, progress=False).run().ran == 0


def test_real_search_trials_record_validation_only_and_finals_are_tested(tmp_path):
    # The real runner: trials stop after validation selection; only the best config is tested.
    spec = parse_spec({
        "name": "realsearch", "methods": ["ale"], "datasets": ["cub"], "seeds": [0], "sim": "tiny",
        "base": {"train.epochs": 2},
        "search": {"space": {"train.lr": {"type": "log_float", "low": 1e-4, "high": 1e-2}},
                   "n_trials": 2, "sampler": "random", "seed": 0}})
    out = StudyRunner(spec, tmp_path, progress=False).run()
    trial_metrics = {r["metric"] for r in out.trial_rows}
    assert {"val_h", "val_zsl_acc", "val_u", "val_s"} <= trial_metrics
    assert not trial_metrics & {"h", "zsl_acc", "u", "s", "ausuc"}  # no test numbers for trials
    assert not list((tmp_path / "curves").glob("trials/*.npz"))
    final = {r["metric"] for r in out.rows}
    assert {"zsl_acc", "u", "s", "h"} <= final and {r["variant"] for r in out.rows} == {"best"}


def test_changed_preset_stops_reuse_and_rerun_changed_redoes_only_those_units(tmp_path, monkeypatch):
    """Unit keys cover the spec, not the presets in code: a preset edit must not be silently reused."""
    import optuna

    from zsl_bench.registry import METHODS

    spec = parse_spec({"name": "drift", "methods": ["ale"], "datasets": ["cub"], "seeds": [0, 1], "sim": "tiny",
                       "base": {"train.epochs": 2}})
    from zsl_bench.tracking import Tracker

    tracker = Tracker(tmp_path)  # MLflow in <tmp_path>/mlflow.db
    StudyRunner(spec, tmp_path, progress=False, tracker=tracker).run()
    before = {r["run_id"]: r["config_hash"] for r in read_rows(tmp_path / "results.csv")}
    assert len(before) == 2

    ale = METHODS.get("ale")
    edited = {**ale.presets, "cub": {**ale.presets.get("cub", {}), "eval": {"gamma": 0.5}}}
    monkeypatch.setattr(ale, "presets", edited)  # what editing methods/ale.py does
    with pytest.raises(ConfigError, match=r"2 finished unit\(s\).*another config.*--rerun-changed"):
        StudyRunner(spec, tmp_path, progress=False).run()
    assert {r["run_id"]: r["config_hash"] for r in read_rows(tmp_path / "results.csv")} == before  # untouched

    out = StudyRunner(spec, tmp_path, progress=False, rerun_changed=True, tracker=tracker).run()
    assert out.ran == 2
    assert set(tracker.count_units("drift").values()) == {1}  # reruns logged; old runs kept but superseded
    assert len(tracker.find_runs("tags.`zsl.superseded` LIKE 'config %'")) == 2
    rows = read_rows(tmp_path / "results.csv")
    assert len(rows) == len(dedupe_rows(rows)) == len(out.rows)  # old rows gone, no duplicates
    assert {r["config_hash"] for r in rows}.isdisjoint(before.values())
    assert {r["gamma"] for r in rows} == {"0.5"}
    study = optuna.load_study(study_name="drift.cub", storage=StudyRunner(spec, tmp_path, progress=False).url)
    superseded = [t for t in study.trials if "superseded" in t.user_attrs]
    assert len(superseded) == 2 and all(t.state == optuna.trial.TrialState.FAIL for t in superseded)
    assert StudyRunner(spec, tmp_path, progress=False).run().ran == 0  # now consistent: nothing to redo


def test_rows_of_another_config_under_a_run_id_are_never_reused(tmp_path):
    """A --rerun-changed cleanup cut short can leave old rows while the unit is WAITING again."""
    spec = parse_spec({"name": "stale", "methods": ["ale"], "datasets": ["cub"], "seeds": [0], "sim": "tiny",
                       "base": {"train.epochs": 2}})
    StudyRunner(spec, tmp_path / "a", progress=False).run()
    good = read_rows(tmp_path / "a" / "results.csv")
    stale = [{**r, "config_hash": "0ld0ld0ld0ld", "value": "99.0"} for r in good]
    from zsl_bench.results import append_rows

    append_rows(tmp_path / "b" / "results.csv", stale)  # a fresh study finds these under its run id
    out = StudyRunner(spec, tmp_path / "b", progress=False).run()
    assert out.ran == 1
    rows = read_rows(tmp_path / "b" / "results.csv")
    assert {r["config_hash"] for r in rows} == {good[0]["config_hash"]} and "99.0" not in {r["value"] for r in rows}


def test_changed_default_generator_reruns_only_units_whose_data_changed(tmp_path, monkeypatch):
    """Config digests leave the default generator out; rows record the generator of their data. A
    default that writes the same data (v3 on the tiny preset is v2) reuses them, one that does not
    stops the study, and --rerun-changed redoes exactly those units."""
    from zsl_bench.data import sim

    spec = parse_spec({"name": "gen", "methods": ["ale"], "datasets": ["cub"], "seeds": [0], "sim": "tiny",
                       "base": {"train.epochs": 2}})
    monkeypatch.setenv("ZSL_BENCH_CACHE", str(tmp_path / "cache"))  # the patched defaults share no cache
    monkeypatch.setattr(sim, "DEFAULT_GENERATOR", "2.0")
    StudyRunner(spec, tmp_path, progress=False).run()
    before = read_rows(tmp_path / "results.csv")
    assert {r["generator_version"] for r in before} == {"zsl-bench-sim/2.0"}

    monkeypatch.setattr(sim, "DEFAULT_GENERATOR", "3.0")  # v2's data on the tiny preset
    assert StudyRunner(spec, tmp_path, progress=False).run().ran == 0
    monkeypatch.setattr(sim, "DEFAULT_GENERATOR", "1.2")  # other data
    plan = StudyRunner(spec, tmp_path, progress=False).plan()
    assert not plan.done and "1 trained from another config or data (--rerun-changed reruns them)" in plan.summary()
    with pytest.raises(ConfigError, match=r"1 finished unit\(s\).*\(generator 2.0 -> 1.2\).*--rerun-changed"):
        StudyRunner(spec, tmp_path, progress=False).run()
    assert read_rows(tmp_path / "results.csv") == before  # untouched
    out = StudyRunner(spec, tmp_path, progress=False, rerun_changed=True).run()
    assert out.ran == 1
    rows = read_rows(tmp_path / "results.csv")
    assert {r["run_id"] for r in rows} == {r["run_id"] for r in before}  # replaced, not added (v1 has no reliance rows)
    assert {r["generator_version"] for r in rows} == {"zsl-bench-sim/1.2"}
    assert {r["config_hash"] for r in rows} == {r["config_hash"] for r in before}  # the digest did not move
    assert StudyRunner(spec, tmp_path, progress=False).run().ran == 0


def test_rows_record_the_semantics_source_and_a_change_of_it_stops_the_study(tmp_path, monkeypatch, shared_root):
    """Simulated data take real class semantics where the data root holds the dataset's metadata
    (e.g. after `zsl-bench data download`). Rows record the source (sim_semantics); finished units of
    generated semantics do not stand for units that would now read real ones, and --rerun-changed
    redoes them."""
    import shutil

    data_root = tmp_path / "data"
    (data_root / "CUB").mkdir(parents=True)
    monkeypatch.setenv("ZSL_BENCH_DATA", str(data_root))  # the default data root: no metadata yet
    spec = parse_spec({"name": "sem", "methods": ["eszsl"], "datasets": ["cub"], "seeds": [0], "sim": "small"})
    out = tmp_path / "out"
    assert StudyRunner(spec, out, progress=False).run().ran == 1
    before = read_rows(out / "results.csv")
    assert {r["sim_semantics"] for r in before} == {"generated"}
    assert StudyRunner(spec, out, progress=False).run().ran == 0  # same source: reused

    shutil.copy(shared_root / "CUB" / "att_splits.mat", data_root / "CUB" / "att_splits.mat")
    plan = StudyRunner(spec, out, progress=False).plan()
    assert not plan.done and "1 trained from another config or data" in plan.summary()
    with pytest.raises(ConfigError, match=r"1 finished unit\(s\).*\(semantics generated -> real-[0-9a-f]{10}\)"):
        StudyRunner(spec, out, progress=False).run()
    assert read_rows(out / "results.csv") == before  # untouched
    assert StudyRunner(spec, out, progress=False, rerun_changed=True).run().ran == 1
    rows = read_rows(out / "results.csv")
    assert {r["run_id"] for r in rows} == {r["run_id"] for r in before}  # replaced, not added
    (semantics,) = {r["sim_semantics"] for r in rows}
    assert semantics.startswith("real-") and {r["config_hash"] for r in rows} == {r["config_hash"] for r in before}
    assert StudyRunner(spec, out, progress=False).run().ran == 0
    table = build_table(rows)
    assert "real class semantics" in table.caption and "generated" not in table.caption


def test_rows_name_the_commit_the_study_started_from(tmp_path, monkeypatch):
    """A checkout committed to while a long study runs: its rows keep naming the code it started with."""
    from zsl_bench import results

    head = {"commit": "start0000000"}
    monkeypatch.setattr(results, "_checkout_commit", lambda pkg: head["commit"])

    def run_after_a_commit(unit, **kw):
        head["commit"] = "later0000000"  # someone commits while the study trains
        return toy_run(unit, **kw)

    results.git_commit.cache_clear()
    try:
        out = StudyRunner(_spec(seeds=[0, 1]), tmp_path, run_fn=run_after_a_commit, progress=False).run()
    finally:
        results.git_commit.cache_clear()
    assert out.rows and {r["git_commit"] for r in out.rows} == {"start0000000"}


def test_table_rows_are_the_current_units_only_after_an_edited_base(tmp_path):
    for w in (1.0, 2.0):  # the same study and output, base edited between runs
        spec = _spec(seeds=[0], grid=None, base={"method.w": w})
        out = StudyRunner(spec, tmp_path, run_fn=toy_run, progress=False).run()
    assert {(r["metric"], float(r["value"])) for r in out.rows if r["metric"] == "h"} == {("h", 50.0)}


def test_search_trained_from_another_config_is_refused(tmp_path, monkeypatch):
    from zsl_bench.registry import METHODS

    spec = parse_spec({"name": "driftsearch", "methods": ["ale"], "datasets": ["cub"], "seeds": [0], "sim": "tiny",
                       "base": {"train.epochs": 2},
                       "search": {"space": {"train.lr": {"type": "log_float", "low": 1e-4, "high": 1e-2}},
                                  "n_trials": 2, "sampler": "random", "seed": 0}})
    StudyRunner(spec, tmp_path, progress=False).run()
    ale = METHODS.get("ale")
    monkeypatch.setattr(ale, "presets", {**ale.presets, "cub": {"eval": {"gamma": 0.5}}})
    with pytest.raises(ConfigError, match="search trial 0 of driftsearch.cub.search.*new --out"):
        StudyRunner(spec, tmp_path, progress=False, rerun_changed=True).run()


def test_pruner_stops_poor_trials(tmp_path):
    spec = parse_spec({
        "name": "toyprune", "methods": ["study_toy"], "datasets": ["cub"], "seeds": [0], "sim": "tiny",
        "search": {"space": {"method.w": {"type": "categorical", "choices": [3.0, 0.1]}},
                   "n_trials": 6, "sampler": "grid", "pruner": "median"}})
    runner = StudyRunner(spec, tmp_path, run_fn=toy_run, progress=False)
    runner.run()
    import optuna

    study = optuna.load_study(study_name="toyprune.cub.search", storage=runner.url)
    states = {t.params["method.w"]: t.state for t in study.trials}
    # The grid sampler exhausts its two points; the weak one is pruned once the strong one is known.
    assert len(study.trials) == 2
    assert states[3.0] == optuna.trial.TrialState.COMPLETE


def test_worker_killed_right_after_claim_does_not_hold_its_unit_forever(tmp_path, monkeypatch):
    """The CI hang: a RUNNING trial without any heartbeat is never stale to Optuna.

    A worker killed between claiming a unit and its first beat is replayed here exactly: claim,
    then nothing. A later run must reclaim the unit after the grace period and finish the study.
    """
    import optuna

    timing = Timing(heartbeat_s=2, grace_s=1, poll_s=0.1)
    spec = _spec(seeds=[0])
    dead = StudyRunner(spec, tmp_path, run_fn=toy_run, progress=False, timing=timing)
    st = dead._study(dead.study_name("cub"))
    units = grid_units(spec, "cub")
    dead.queue.ensure_enqueued(st, units)
    held = dead.queue.claim(st, {u.key for u in units})  # ...and the worker dies here
    assert held is not None
    assert oa.trials_with_heartbeat(dead.storage, [oa.trial_id(held)]) == {oa.trial_id(held)}

    t0 = time.time()
    StudyRunner(spec, tmp_path, run_fn=toy_run, progress=False, timing=timing).run()
    assert time.time() - t0 < 30
    trials = optuna.load_study(study_name=dead.study_name("cub"), storage=dead.url).get_trials()
    assert trials[held.number].state == optuna.trial.TrialState.FAIL  # failed as stale, then redone
    assert len(dedupe_rows(read_rows(tmp_path / "results.csv"))) == len(units) * 6


def test_running_trial_that_never_beat_is_failed_once_old(tmp_path, monkeypatch):
    """``study.ask()`` makes a trial RUNNING before any beat; fail_stale covers a kill in that gap."""
    import optuna

    runner = StudyRunner(_spec(seeds=[0]), tmp_path, run_fn=toy_run, progress=False)
    st = runner._study("toy.cub.search")
    orphan = oa.ask(st)  # RUNNING, no heartbeat row
    runner.queue.fail_stale(st)
    assert st.trials[orphan.number].state == optuna.trial.TrialState.RUNNING  # young: its asker may beat yet
    monkeypatch.setattr(runner.queue, "timing", Timing(grace_s=0))  # now counts as old
    beating = oa.ask(st)
    runner.storage.record_heartbeat(oa.trial_id(beating))
    runner.queue.fail_stale(st)
    states = {t.number: t.state for t in st.trials}
    assert states[orphan.number] == optuna.trial.TrialState.FAIL
    # A beating trial is Optuna's to judge by its heartbeat age; it was just recorded, and the
    # storage's own grace period (set when it was opened) has not passed.
    assert states[beating.number] == optuna.trial.TrialState.RUNNING


# ---------------------------------------------------------------- CLI, resume after kill -9


def _ablate(out: Path, *extra: str, env=None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "zsl_bench", "ablate", "smoke.yaml", "--out", str(out),
                             "--no-progress", "--no-mlflow", *extra], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


# Runs `zsl-bench ablate` and SIGKILLs the process itself right after the first unit's rows reach
# results.csv, before Optuna hears that the unit finished: the hardest point to resume from, and a
# deterministic one (no wall-clock race with a fast or a loaded machine).
KILL_AFTER_FIRST_UNIT = """
import os, signal, sys
import zsl_bench.study.runner as R
write = R.write_unit_rows
def write_then_die(*args, **kwargs):
    wrote = write(*args, **kwargs)
    if wrote:
        os.kill(os.getpid(), signal.SIGKILL)
    return wrote
R.write_unit_rows = write_then_die
from zsl_bench.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def test_ablate_resumes_after_sigkill_and_matches_uninterrupted_run(tmp_path):
    env = {**os.environ, "ZSL_BENCH_HEARTBEAT_S": "1", "ZSL_BENCH_GRACE_S": "3"}
    killed = tmp_path / "killed"
    csv = killed / "results.csv"
    proc = subprocess.Popen([sys.executable, "-c", KILL_AFTER_FIRST_UNIT, "ablate", "smoke.yaml", "--out",
                             str(killed), "--no-progress", "--no-mlflow"], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, err = proc.communicate(timeout=600)  # a safety net only: the kill point is not timed
    assert proc.returncode == -signal.SIGKILL, f"not killed after the first unit: {err[-2000:]}"
    done_at_kill = {r["run_id"] for r in read_rows(csv)}
    assert len(done_at_kill) == 1

    resumed = _ablate(killed, env=env)
    _, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err[-2000:]
    assert "smoke: 3 units run here" in err, err[-2000:]  # the killed unit's rows are reused, not rerun
    rows = read_rows(csv)
    per_unit = len({r["metric"] for r in rows})  # 6, or 10 with context reliance (generator v2 data)
    assert per_unit in (6, 10) and len(rows) == len(dedupe_rows(rows)) == 4 * per_unit  # no duplicate rows
    assert done_at_kill <= {r["run_id"] for r in rows}

    # Uninterrupted reference, in-process through the same runner.
    ref = StudyRunner(load_spec(REPO / "benchmarks" / "smoke.yaml"), tmp_path / "ref", progress=False).run()
    want = render_markdown(build_table(ref.rows, "ablation"))
    assert (killed / "tables" / "ablation_table.md").read_text() == want


def test_ablate_bad_spec_is_one_line_error(tmp_path, capsys):
    from zsl_bench.cli.main import main

    bad = tmp_path / "bad.yaml"
    bad.write_text(json.dumps({"name": "x", "methods": ["ale"], "datasets": ["cub"], "seeds": [0],
                               "grid": {"variants": {"v": {"method.marginn": 1}}}}))
    assert main(["ablate", str(bad), "--out", str(tmp_path / "o"), "--no-mlflow"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("zsl-bench: error: unknown config key method.marginn")
    assert str(bad) in err[-1] and "Traceback" not in "\n".join(err)
    assert main(["ablate", "smoke.yaml", "--workers", "2", "--out", str(tmp_path / "o")]) == 2
    assert "needs a server --storage" in capsys.readouterr().err
    bad.write_text("name: [unclosed")
    assert main(["ablate", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "not valid YAML" in capsys.readouterr().err


# ---------------------------------------------------------------- data seeds and the reference row


def test_msdnpp_ablation_units_are_unchanged_by_data_seeds():
    """The default data seeds are the spec's sim seed: every unit, key and run id stays what it was
    (hashes computed by the code before data_seeds existed, commit 1d36a1e)."""
    import dataclasses
    import hashlib

    spec = load_spec("msdnpp_ablation.yaml")
    assert spec.data_seeds == (0,) and spec.reference == "full"
    for sim, want in ((None, "44cf53abf56f4d73cf142e8f050680acdce50950"),
                      ("small", "d4a6dc3dee03c8795181f0ec2aaf0609bc31ceda")):
        ids = [u.run_id for ds in spec.datasets for u in grid_units(dataclasses.replace(spec, sim=sim), ds)]
        assert len(ids) == 144 and hashlib.sha1(" ".join(ids).encode()).hexdigest() == want
    assert grid_units(dataclasses.replace(spec, sim="small"), "cub")[0].run_id == "grid-2be031d9111f90cd"


def test_data_seeds_are_a_unit_dimension_whose_rows_carry_the_seed(tmp_path):
    spec = _spec(data_seeds=[0, 3])
    units = grid_units(spec, "cub")
    assert len(units) == 8 and len({u.key for u in units}) == 8
    assert sorted({(u.spec.seed, u.spec.sim_seed) for u in units}) == [(0, 0), (0, 3), (1, 0), (1, 3)]
    assert units[1].desc == "study_toy/a/cub/seed 0/data seed 3"
    # The data seed 0 units are those of the spec without data_seeds: adding a data seed reuses them.
    assert {u.key for u in units if u.spec.sim_seed == 0} == {u.key for u in grid_units(_spec(), "cub")}
    assert "2 variants x 1 dataset x 2 seeds x 2 data seeds" in StudyRunner(spec, tmp_path, progress=False).plan() \
        .listing().replace("×", "x")
    spec = _spec(data_seeds=[0, 3], seeds=[1])  # 4 units run: cheap
    out = StudyRunner(spec, tmp_path, run_fn=toy_run, progress=False).run()
    assert sorted({(r["seed"], r["data_seed"]) for r in out.rows}) == [(1, 0), (1, 3)]
    table = build_table(out.rows, "ablation", reference=spec.reference)
    assert table.reference == "a" and table.delta_cells[1][1].paired.n == 2
    assert table.delta_cells[1][1].paired.mean == pytest.approx(5.0)  # toy H rises by 5 per unit of method.w


def test_each_unit_loads_the_data_of_its_data_seed(tmp_path, monkeypatch):
    import zsl_bench.data.loader as loader
    import zsl_bench.runner as R

    loads, used = [], []
    monkeypatch.setattr(loader, "load_dataset", lambda ds, root, sim_preset=None, sim_seed=0, **kw: loads.append(sim_seed)
                        or f"data {ds} {sim_seed}")
    monkeypatch.setattr(R, "run_one", lambda spec, **kw: used.append((spec.sim_seed, kw["data"])))
    runner = StudyRunner(_spec(data_seeds=[0, 3]), tmp_path, progress=False)
    for u in grid_units(runner.spec, "cub")[:2]:
        runner._run_one(u, out_dir=tmp_path)
    assert used == [(0, "data cub 0"), (3, "data cub 3")]
    runner.load_data("cub", 3)
    assert loads == [0, 3]  # loaded once per data seed
    assert runner.load_data("cub") == "data cub 0"  # default: the spec's sim seed


def test_data_seeds_and_reference_errors_name_the_key(tmp_path):
    from zsl_bench.cli.study import _spec_with_cli

    with pytest.raises(ConfigError, match="'data_seeds' in toy.yaml must be a non-empty list of distinct"):
        _spec(data_seeds=[1, 1])
    with pytest.raises(ConfigError, match="study.data_seeds: 'x'; expected an integer"):
        _spec(data_seeds=["x"])
    real = _spec(sim=None, data_seeds=[0, 1])  # a spec for real data may still be run with --sim
    with pytest.raises(ConfigError, match="'data_seeds' in toy.yaml: 2 data seeds need simulated data"):
        StudyRunner(real, tmp_path)
    assert StudyRunner(_spec_with_cli(real, SimpleNamespace(sim="tiny", data_root=None, overrides=[], seeds=None)),
                       tmp_path).spec.data_seeds == (0, 1)
    with pytest.raises(ConfigError, match="a search runs on one data seed"):
        _spec(grid=None, data_seeds=[0, 1], search={"space": {"method.w": {"type": "float", "low": 0, "high": 1}},
                                                    "n_trials": 2})
    assert _spec(sim_seed=4).data_seeds == (4,)
    with pytest.raises(ConfigError, match=r"bad value for study key 'reference' in toy.yaml: 'c'; valid: a, b"):
        _spec(reference="c")
    assert _spec(reference="b").reference == "b" and _spec().reference == "a"
    swept = _spec(grid={"variants": {"x": {}}, "sweep": {"method.w": [1.0, 2.0]}})
    assert swept.reference == "x" and _spec(grid={"sweep": {"method.w": [1.0, 2.0]}}).reference == "method.w=1"
    assert _spec(grid={"variants": {"x": {}}, "sweep": {"method.w": [1.0, 2.0]}}, reference="x,method.w=2") \
        .reference == "x,method.w=2"
    with pytest.raises(ConfigError, match="a search has no variants"):
        _spec(grid=None, reference="a", search={"space": {"method.w": {"type": "float", "low": 0, "high": 1}},
                                                "n_trials": 2})


def test_cli_data_seeds_replace_the_spec_data_seeds_and_reach_workers():
    from zsl_bench.cli.study import _spec_with_cli, _worker_argv

    args = SimpleNamespace(sim=None, data_root=None, overrides=[], seeds=None, data_seeds="1,0")
    assert _spec_with_cli(_spec(), args).data_seeds == (1, 0)
    with pytest.raises(ConfigError, match="--data-seeds: bad value"):
        _spec_with_cli(_spec(), SimpleNamespace(sim=None, data_root=None, overrides=[], seeds=None, data_seeds="-1"))
    full = SimpleNamespace(spec="toy.yaml", full=False, sim="tiny", storage=None, tracking_uri=None, data_root=None,
                           seeds=None, data_seeds="0,1", no_mlflow=True, rerun_changed=False, overrides=[])
    argv = _worker_argv(full, Path("out"))
    assert argv[argv.index("--data-seeds") + 1] == "0,1"


def test_ablate_data_seeds_dry_run_lists_them_and_real_data_is_refused(tmp_path, capsys):
    from zsl_bench.cli.main import main

    assert main(["ablate", "smoke.yaml", "--data-seeds", "0,1", "--dry-run", "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert "2 seeds x 2 data seeds" in out.replace("×", "x") and "/seed 1/data seed 1" in out
    real = tmp_path / "real.yaml"
    real.write_text(json.dumps({"name": "r", "methods": ["ale"], "datasets": ["cub"], "seeds": [0]}))
    assert main(["ablate", str(real), "--data-seeds", "0,1", "--dry-run", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("zsl-bench: error: study key 'data_seeds'") and "need simulated data" in err[-1]


def test_ablate_tables_use_the_spec_reference_while_it_has_rows(caplog):
    from zsl_bench.cli.study import _study_reference

    rows = [{"method": "study_toy", "variant": v, "dataset": "cub", "seed": 0, "metric": "h", "value": 1.0}
            for v in ("a", "b")]
    assert _study_reference(rows, _spec(reference="b")) == "b"
    assert _study_reference(rows[:1], _spec(reference="b")) is None  # b unfinished: the table's default (a)
    assert "reference variant b has no finished rows; differences are to a instead" in caplog.text
    assert _study_reference(rows, _spec(table="main")) is None
