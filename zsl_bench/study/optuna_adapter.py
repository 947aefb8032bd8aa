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
import os
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


# SQLAlchemy's default driver for a plain ``postgresql://`` URL: psycopg2 in 2.0, psycopg (3) from 2.1.
# The ``postgres`` extra installs one of them; the URL is pointed at whichever is importable.
_PG_DRIVERS = (("psycopg", "psycopg"), ("psycopg2", "psycopg2"))


def resolve_url(url: str) -> str:
    """``url`` with a driver named where it names none and SQLAlchemy's default one is not installed.

    ``postgresql://u:p@host/db`` (the documented form) becomes ``postgresql+psycopg2://...`` when
    only psycopg2 is installed (SQLAlchemy 2.1 maps the plain form to psycopg 3). Other URLs, and
    URLs that name a driver (``postgresql+psycopg://``), are returned unchanged.

    Raises:
        ConfigError: a plain PostgreSQL URL and no PostgreSQL driver installed.
    """
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in ("postgresql", "postgres"):
        return url
    import importlib.util

    from sqlalchemy.engine import make_url

    try:
        default = make_url("postgresql://").get_dialect().driver
    except Exception:  # noqa: BLE001 (its module missing: fall through to what is installed)
        default = None
    installed = [drv for drv, module in _PG_DRIVERS if importlib.util.find_spec(module) is not None]
    if not installed:
        raise ConfigError(f"--storage {_redact(url)}: no PostgreSQL driver is installed; "
                          "pip install 'zsl-bench[postgres]' (psycopg2-binary) or psycopg[binary]")
    driver = default if default in installed else installed[0]
    return f"postgresql+{driver}://{rest}"


def _redact(url: str) -> str:
    """``url`` without its password, for messages."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001
        return url.split("://", 1)[0] + "://..."


def _creation_race(exc: BaseException) -> bool:
    """Whether ``exc`` is a worker losing the race to create Optuna's tables (a retry succeeds)."""
    text = f"{type(exc).__name__} {exc}"
    return any(w in text for w in ("UniqueViolation", "UNIQUE constraint failed", "duplicate key",
                                   "already exists", "database is locked", "IntegrityError"))


@contextlib.contextmanager
def _creation_lock(url: str) -> Iterator[None]:
    """For a SQLite file: hold an exclusive lock on its folder while the storage is created.

    Processes started together on a fresh file otherwise race to create Optuna's tables and
    Alembic's version row (``UNIQUE constraint failed: alembic_version.version_num``). A server
    database has no folder to lock; there the retries in :func:`make_storage` settle the race.
    """
    try:
        import fcntl
    except ImportError:  # Windows: the retries alone
        yield
        return
    folder = None
    if url.startswith("sqlite"):
        from sqlalchemy.engine import make_url

        db = make_url(url).database
        if db and db != ":memory:" and not db.startswith("file:"):
            folder = os.path.dirname(os.path.abspath(db))
    if folder is None or not os.path.isdir(folder):
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def make_storage(url: str, *, heartbeat_s: int, grace_s: int) -> Any:
    """An ``RDBStorage`` with heartbeats, created safely while concurrent workers start on it."""
    import optuna

    engine_url = resolve_url(url)
    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        # Workers and heartbeat threads share the file: wait on a lock instead of failing at once.
        engine_kwargs = {"connect_args": {"timeout": 60}}
    else:
        engine_kwargs = {"pool_pre_ping": True}
    # Workers starting together on an empty database race to create Optuna's tables; on SQLite
    # they take turns (a lock on the file's folder), elsewhere the loser fails on a unique
    # constraint and succeeds on retry, once the tables exist.
    attempts = 6
    for attempt in range(attempts):
        try:
            with _creation_lock(url), _quiet():
                return optuna.storages.RDBStorage(engine_url, engine_kwargs=engine_kwargs,
                                                  heartbeat_interval=heartbeat_s, grace_period=grace_s)
        except Exception as exc:
            if attempt == attempts - 1 or not _creation_race(exc):
                raise ConfigError(f"cannot open --storage {_redact(url)}: {str(exc).splitlines()[0]}") from None
            time.sleep(0.2 + 0.5 * attempt)
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
