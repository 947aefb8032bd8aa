"""Pins of the Optuna internals that ``zsl_bench.study.optuna_adapter`` relies on.

An Optuna upgrade that renames or reshapes one of them fails here, by name, rather than as a study
that hangs on a trial it cannot see as stale or reruns units it should have kept.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from zsl_bench.study import optuna_adapter as oa


def test_private_tables_and_attributes_exist():
    from optuna.storages._rdb import models

    assert hasattr(models.TrialHeartbeatModel, "trial_id")
    for col in ("trial_id", "key", "value_json"):
        assert hasattr(models.TrialUserAttributeModel, col), col
    for col in ("trial_id", "state"):
        assert hasattr(models.TrialModel, col), col


@pytest.fixture
def storage(tmp_path: Path):
    return oa.make_storage(f"sqlite:///{tmp_path / 'optuna.db'}", heartbeat_s=1, grace_s=2)


def test_trial_ids_heartbeats_and_supersede_round_trip(storage):
    study = optuna.create_study(study_name="pin", storage=storage, direction="maximize")
    trial = oa.ask(study)
    tid = oa.trial_id(trial)
    frozen = study.get_trials(deepcopy=False)[0]
    assert oa.trial_id(frozen) == tid and storage.get_trial(tid).number == trial.number

    assert oa.trials_with_heartbeat(storage, [tid]) == set()  # RUNNING from ask(), never beaten
    storage.record_heartbeat(tid)
    assert oa.trials_with_heartbeat(storage, [tid]) == {tid}

    study.tell(trial, 1.0)
    oa.supersede(storage, [(tid, "config a -> b")])
    oa.supersede(storage, [(tid, "config a -> c")])  # a racing worker's second try changes nothing
    t = storage.get_trial(tid)
    assert t.state == TrialState.FAIL and t.user_attrs["superseded"] == "config a -> b"


def test_experimental_warnings_are_silenced_only_around_the_calls(storage):
    filters = list(warnings.filters)
    study = optuna.create_study(study_name="quiet", storage=storage, direction="maximize")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        oa.ask(study)
        oa.fail_stale_trials(study)
        oa.make_storage(storage.url, heartbeat_s=1, grace_s=2)
    assert [str(w.message) for w in caught] == []
    assert warnings.filters == filters  # nothing process-wide
    with pytest.warns(UserWarning, match="Heartbeat of storage"):
        study.ask()  # what the adapter hides: Optuna still warns outside it
