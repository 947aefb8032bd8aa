"""Conditional search dimensions (``when:``): MSDN++'s loss weights are sampled only when their loss is on."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import methods  # noqa: F401  (registers the methods)
from zsl_bench.data import sim
from zsl_bench.errors import ConfigError
from zsl_bench.results import METRIC_NAMES
from zsl_bench.runner import make_rows, resolve_config
from zsl_bench.study import StudyRunner, Unit, parse_spec

SPACE = {
    "method.effect_loss": {"type": "categorical", "choices": ["class", "attribute", "both"]},
    "method.lambda_sem": {"type": "log_float", "low": 0.01, "high": 0.3,
                          "when": {"method.effect_loss": ["attribute", "both"]}},
    "method.lambda_eff": {"type": "log_float", "low": 0.1, "high": 3.0, "when": {"method.effect_loss": "class"}},
}


def _spec(space=None, sampler: str = "random", n_trials: int = 12):
    return parse_spec({"name": "condsearch", "methods": ["msdnpp"], "datasets": ["cub"], "seeds": [0],
                       "sim": "tiny", "search": {"space": space or SPACE, "n_trials": n_trials,
                                                 "sampler": sampler, "seed": 0}}, "cond.yaml")


def _toy_run(unit: Unit, *, out_dir: Path, reporter=None, progress: bool = True) -> SimpleNamespace:
    """Stands in for training: the config is resolved as for a real run, H is a function of it."""
    spec = unit.spec
    cfg = resolve_config(spec)
    h = 40.0 + 10.0 * cfg.method.lambda_sem + cfg.method.lambda_eff
    metrics = {"zsl_acc": h, "u": h, "s": h, "h": h, "gamma": 0.0, "ausuc": 20.0}
    names = (*METRIC_NAMES, "val_h") if spec.select_only else METRIC_NAMES
    data = SimpleNamespace(is_simulated=True, provenance={"generator_version": sim.GENERATORS[sim.DEFAULT_GENERATOR]})
    rows = make_rows(spec, cfg, data, {**metrics, "val_h": h}, epoch=1, wall_time_s=0.0, names=names)
    return SimpleNamespace(metrics=metrics, selection={"val_h": h, "best_epoch": 1}, history=[], curve={},
                           rows=rows, config=cfg, wall_time_s=0.0)


def test_inactive_dimension_is_not_sampled_by_an_optuna_trial() -> None:
    """What the search loop does per trial (``study.ask`` then ``SearchSpec.sample`` with ``_suggest``)."""
    import functools

    import optuna

    from zsl_bench.study.runner import _suggest

    search = _spec().search
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0), direction="maximize")
    losses = set()
    for _ in range(30):
        trial = study.ask()
        params = search.sample(functools.partial(_suggest, trial))
        assert params == trial.params  # only what was sampled, and all of it
        loss = params["method.effect_loss"]
        losses.add(loss)
        assert ("method.lambda_sem" in params) == (loss in ("attribute", "both")), params
        assert ("method.lambda_eff" in params) == (loss == "class"), params
        study.tell(trial, 1.0)
    assert losses == {"class", "attribute", "both"}


@pytest.mark.slow
def test_inactive_dimension_is_not_sampled_through_optuna(tmp_path: Path) -> None:
    """The real search loop (Optuna ask, storage, unit overrides) with a stand-in run function."""
    import optuna

    runner = StudyRunner(_spec(), tmp_path, run_fn=_toy_run, progress=False)
    runner.run()
    trials = optuna.load_study(study_name="condsearch.cub.search", storage=runner.url).trials
    assert len(trials) == 12
    losses = set()
    for t in trials:
        loss = t.params["method.effect_loss"]
        losses.add(loss)
        assert ("method.lambda_sem" in t.params) == (loss in ("attribute", "both")), t.params
        assert ("method.lambda_eff" in t.params) == (loss == "class"), t.params
        # what the trial trained: an inactive weight keeps the config's value (MSDN++ defaults)
        unit = Unit.from_json(t.user_attrs["unit"])
        method = unit.spec.overrides.get("method", {})
        assert ("lambda_sem" in method) == ("method.lambda_sem" in t.params)
    assert losses == {"class", "attribute", "both"}


@pytest.mark.parametrize("when, match", [
    ({"method.effect_los": ["both"]}, r"search\.space\.method\.lambda_sem\.when\.method\.effect_los.*valid: method\.effect_loss"),
    ({"method.lambda_eff": [0.1]}, r"when\.method\.lambda_eff: a dimension can depend only on another categorical"),
    ({"method.effect_loss": ["none"]}, r"bad value for search\.space\.method\.lambda_sem\.when\.method\.effect_loss: 'none'; valid: class, attribute, both"),
    ({"method.lambda_sem": ["x"]}, r"when\.method\.lambda_sem: a dimension can depend only on another"),
    ("attribute", r"search\.space\.method\.lambda_sem\.when must be a non-empty mapping"),
    ({}, r"search\.space\.method\.lambda_sem\.when must be a non-empty mapping"),
])
def test_bad_conditions_are_one_clear_line(when, match: str) -> None:
    space = {**SPACE, "method.lambda_sem": {**SPACE["method.lambda_sem"], "when": when}}
    with pytest.raises(ConfigError, match=match) as exc:
        _spec(space)
    assert "\n" not in str(exc.value) and "cond.yaml" in str(exc.value)


def test_condition_cycles_and_grid_sampler_are_refused() -> None:
    cyclic = {"train.sampler": {"type": "categorical", "choices": ["uniform", "class_balanced"],
                                "when": {"method.effect_loss": ["class"]}},
              "method.effect_loss": {"type": "categorical", "choices": ["class", "both"],
                                     "when": {"train.sampler": ["uniform"]}}}
    with pytest.raises(ConfigError, match="depend on each other in a cycle"):
        _spec(cyclic)
    grid = {"method.effect_loss": {"type": "categorical", "choices": ["class", "both"]},
            "method.lambda_sem": {"type": "categorical", "choices": [0.1, 0.3], "when": {"method.effect_loss": "both"}}}
    with pytest.raises(ConfigError, match="grid cannot use conditional dimensions"):
        _spec(grid, sampler="grid")


def test_dependency_order_does_not_depend_on_spec_order() -> None:
    """A conditional dimension listed before its parent is still sampled after it."""
    spec = _spec({k: SPACE[k] for k in reversed(list(SPACE))})
    order = [p.key for p in spec.search.ordered()]
    assert order.index("method.effect_loss") < order.index("method.lambda_sem")
    rng = np.random.default_rng(0)
    for _ in range(10):
        picked = spec.search.sample(lambda p: rng.choice(p.choices) if p.type == "categorical" else p.low)
        assert ("method.lambda_sem" in picked) == (picked["method.effect_loss"] != "class")
