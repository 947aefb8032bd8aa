"""Every use of Optuna beyond its public API, in one place (``tests/test_optuna_adapter.py`` pins them).

Studies drive Optuna as a work queue, which its public API does not fully cover:

- ``FrozenTrial._trial_id``: the storage id of a trial, needed to claim, beat and finish trials
  other than through ``study.tell`` (Optuna has no public accessor).
- ``optuna.storages._rdb.models``: the heartbeat table (no public query for "has this trial ever
  beaten?") and the trial tables (Optuna refuses to change a finished trial through its API, and
  superseding a unit whose config changed must do exactly that).
- heartbeats outside ``Study.optimize`` and ``fail_stale_trials``: public but experimental; their
  warnings are silenced here, only around the calls that raise them.
"""

from __future__ import annotations

import contextlib
import json
import time
import warnings
from collections.abc import Iterator
from typing import Any

from ..errors import ConfigError


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence Optuna's experimental-feature warnings for heartbeats, for the calls inside only."""
    import optuna

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        # We drive heartbeats ourselves (ask/tell and claimed WAITING trials), not through optimize().
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
        yield


def trial_id(trial: Any) -> int:
    """The storage id of a ``Trial`` or ``FrozenTrial`` (``_trial_id``: private in both)."""
    return int(trial._trial_id)


def make_storage(url: str, *, heartbeat_s: int, grace_s: int) -> Any:
    """An ``RDBStorage`` with heartbeats, retried while concurrent workers create its tables."""
    import optuna

    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        # Workers and heartbeat threads share the file: wait on a lock instead of failing at once.
        engine_kwargs = {"connect_args": {"timeout": 60}}
    else:
        engine_kwargs = {"pool_pre_ping": True}
    # Workers starting together on an empty database race to create Optuna's tables; the loser
    # fails on a unique constraint and succeeds on retry, once the tables exist.
    for attempt in range(5):
        try:
            with _quiet():
                return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat_s,
                                                  grace_period=grace_s)
        except Exception as exc:
            if attempt == 4 or not any(w in str(exc) for w in ("UniqueViolation", "already exists", "locked")):
                raise ConfigError(f"cannot open --storage {url}: {str(exc).splitlines()[0]}") from None
            time.sleep(0.5 + attempt)
    raise AssertionError("unreachable")


def ask(study: Any) -> Any:
    """``study.ask()`` on a storage with heartbeats (Optuna warns: meant for ``optimize``)."""
    with _quiet():
        return study.ask()


def fail_stale_trials(study: Any) -> None:
    """Optuna's own staleness check: RUNNING trials whose last heartbeat is older than the grace period."""
    from optuna.storages import fail_stale_trials as _fail

    with _quiet():
        _fail(study)


def trials_with_heartbeat(storage: Any, trial_ids: list[int]) -> set[int]:
    """Which of ``trial_ids`` have a heartbeat row."""
    from optuna.storages._rdb import models

    with storage.scoped_session() as session:
        rows = session.query(models.TrialHeartbeatModel.trial_id).filter(
            models.TrialHeartbeatModel.trial_id.in_(trial_ids)).all()
    return {r[0] for r in rows}


def supersede(storage: Any, trials: list[tuple[int, str]]) -> None:
    """Turn finished trials to FAIL with a ``superseded`` user attribute holding the reason.

    Written into the storage's own tables, once per trial even when workers race: the attribute
    row is unique per (trial, key), so the second writer's insert fails and is rolled back.
    """
    from optuna.storages._rdb import models
    from optuna.trial import TrialState
    from sqlalchemy.exc import IntegrityError

    attr = models.TrialUserAttributeModel
    for tid, reason in trials:
        with storage.scoped_session() as session:
            try:
                if session.query(attr).filter(attr.trial_id == tid, attr.key == "superseded").first():
                    continue  # another worker did it a moment ago
                session.query(models.TrialModel).filter(
                    models.TrialModel.trial_id == tid,
                    models.TrialModel.state.in_([TrialState.COMPLETE, TrialState.FAIL])).update(
                    {"state": TrialState.FAIL}, synchronize_session=False)
                session.add(attr(trial_id=tid, key="superseded", value_json=json.dumps(reason)))
                session.commit()
            except IntegrityError:  # the same, concurrently: its attribute row won
                session.rollback()
