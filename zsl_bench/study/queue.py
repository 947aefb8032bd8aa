"""The work queue: units of a study as Optuna trials in real storage, each run exactly once.

Grid units are enqueued as WAITING trials carrying their unit key; any number of workers on the
same storage claim them with an atomic WAITING -> RUNNING transition. A worker beats a heartbeat
while it runs a unit (the first beat *before* its claim turns RUNNING), so a worker killed at any
moment leaves a trial that goes stale after ``grace_s`` and whose unit is enqueued again. Should
two workers enqueue the same missing unit at once, the unit belongs to its lowest-numbered live
trial and the other copy is dropped (:meth:`WorkQueue.duplicate_of`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from . import optuna_adapter as oa
from .spec import Unit

log = logging.getLogger(__name__)

HEARTBEAT_ENV, GRACE_ENV = "ZSL_BENCH_HEARTBEAT_S", "ZSL_BENCH_GRACE_S"


@dataclass(frozen=True)
class Timing:
    """Heartbeat period and grace period (seconds) of the queue's trials, and how often a waiting worker polls.

    Short by default so that a resumed single-worker study waits only a few seconds for the
    units of a killed run to go stale.
    """

    heartbeat_s: int = 2
    grace_s: int = 8
    poll_s: float = 1.0

    @classmethod
    def from_env(cls) -> Timing:
        """Defaults, overridden by ``$ZSL_BENCH_HEARTBEAT_S`` / ``$ZSL_BENCH_GRACE_S`` (read now, not at import)."""
        return cls(heartbeat_s=int(os.environ.get(HEARTBEAT_ENV, cls.heartbeat_s)),
                   grace_s=int(os.environ.get(GRACE_ENV, cls.grace_s)))


def live(t: Any) -> bool:
    """A trial that holds its unit: waiting, running, done, or failed for a reason (e.g. NaN loss)."""
    from optuna.trial import TrialState

    if t.state in (TrialState.WAITING, TrialState.RUNNING, TrialState.COMPLETE, TrialState.PRUNED):
        return True
    return t.state == TrialState.FAIL and "failure" in t.user_attrs and "superseded" not in t.user_attrs


class WorkQueue:
    """Optuna storage ``url`` used as a queue of units (opened on first use).

    Args:
        url: Optuna storage URL (SQLite for one worker process, a server database for many).
        timing: heartbeat, grace and poll periods.
    """

    def __init__(self, url: str, timing: Timing) -> None:
        self.url, self.timing = url, timing
        self._storage: Any = None
        # trial id -> time.monotonic() when this queue first saw it RUNNING without a heartbeat.
        self._no_beat_since: dict[int, float] = {}

    @property
    def storage(self) -> Any:
        if self._storage is None:
            self._storage = oa.make_storage(self.url, heartbeat_s=self.timing.heartbeat_s,
                                            grace_s=self.timing.grace_s)
        return self._storage

    def study(self, name: str, sampler: Any = None, pruner: Any = None) -> Any:
        import optuna

        return optuna.create_study(study_name=name, storage=self.storage, direction="maximize",
                                   sampler=sampler, pruner=pruner, load_if_exists=True)

    def reload(self, study: Any) -> Any:
        """``study`` read again from storage (Optuna caches finished trials)."""
        import optuna

        return optuna.load_study(study_name=study.study_name, storage=self.storage, sampler=study.sampler,
                                 pruner=study.pruner)

    def load(self, name: str) -> Any | None:
        import optuna

        try:
            return optuna.load_study(study_name=name, storage=self.storage)
        except KeyError:
            return None

    # -- grid units
    def ensure_enqueued(self, study: Any, units: list[Unit]) -> None:
        """Enqueue every unit that no live trial holds."""
        held = {t.user_attrs.get("unit_key") for t in study.get_trials(deepcopy=False) if live(t)}
        for u in units:
            if u.key not in held:
                study.enqueue_trial({}, user_attrs={"unit_key": u.key, "unit": u.to_json(), "run_id": u.run_id})

    def claim(self, study: Any, keys: set[str], first: set[str] | frozenset[str] = frozenset()) -> Any | None:
        """Atomically move one WAITING trial of a unit in ``keys`` to RUNNING; None when none is waiting.

        Units in ``first`` (interrupted ones with a checkpoint) are claimed before the others, which
        go in queue order. Trials of other units (enqueued by a run of the same study with other
        seeds or variants) stay WAITING for a run that asks for them.

        The heartbeat is recorded *before* the trial turns RUNNING: Optuna never counts a RUNNING
        trial without any heartbeat as stale, so a worker killed between the claim and its first
        beat would otherwise hold the unit forever and every later run would wait on it.
        """
        from optuna.exceptions import UpdateFinishedTrialError
        from optuna.trial import TrialState

        waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
        for t in sorted(waiting, key=lambda t: t.user_attrs.get("unit_key") not in first):  # stable
            if t.user_attrs.get("unit_key") not in keys:
                continue
            try:
                self.storage.record_heartbeat(oa.trial_id(t))
                if self.storage.set_trial_state_values(oa.trial_id(t), TrialState.RUNNING):
                    return t
            except UpdateFinishedTrialError:
                continue
        return None

    def duplicate_of(self, study: Any, trial: Any) -> Any | None:
        """A live lower-numbered trial holding the same unit (a concurrent double enqueue)."""
        key = trial.user_attrs.get("unit_key")
        for t in study.get_trials(deepcopy=False):
            if t.number < trial.number and t.user_attrs.get("unit_key") == key and live(t):
                return t
        return None

    def ask(self, study: Any) -> Any:
        """A new RUNNING search trial, beating from the start (see :meth:`fail_stale`)."""
        trial = oa.ask(study)
        self.storage.record_heartbeat(oa.trial_id(trial))
        return trial

    # -- trial state
    def set_attr(self, trial: Any, key: str, value: Any) -> None:
        self.storage.set_trial_user_attr(oa.trial_id(trial), key, value)

    def finish(self, trial: Any, state: str, value: float | None = None) -> None:
        """End ``trial`` as ``COMPLETE`` (with its objective ``value``), ``FAIL`` or ``PRUNED``."""
        from optuna.trial import TrialState

        self.storage.set_trial_state_values(oa.trial_id(trial), TrialState[state],
                                            None if value is None else [value])

    def supersede(self, trials: list[tuple[Any, str]]) -> None:
        """FAIL finished trials with a ``superseded`` reason, so their units run again (see ``live``)."""
        oa.supersede(self.storage, [(oa.trial_id(t), reason) for t, reason in trials])

    @contextlib.contextmanager
    def heartbeat(self, trial: Any) -> Iterator[None]:
        """Beat for ``trial`` every ``heartbeat_s`` in a daemon thread while the body runs."""
        tid, stop = oa.trial_id(trial), threading.Event()

        def beat() -> None:
            while not stop.is_set():
                with contextlib.suppress(Exception):  # a missed beat is retried; staleness needs several
                    self.storage.record_heartbeat(tid)
                stop.wait(self.timing.heartbeat_s)

        self.storage.record_heartbeat(tid)
        thread = threading.Thread(target=beat, daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def fail_stale(self, study: Any) -> None:
        """Fail RUNNING trials of dead workers so their units can be run again.

        Optuna's ``fail_stale_trials`` covers trials whose last heartbeat is older than the grace
        period, but skips a RUNNING trial that never got one. Grid claims beat before they turn
        RUNNING, yet ``study.ask()`` (search trials) makes a trial RUNNING first: a worker killed in
        between would leave it held forever. Such a trial is failed once *this queue* has seen it
        without a beat for ``3 * grace_s`` (its own monotonic clock: other hosts' clocks and time
        zones do not matter).
        """
        from optuna.exceptions import UpdateFinishedTrialError
        from optuna.trial import TrialState

        oa.fail_stale_trials(study)
        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if not running:
            return
        now, limit = time.monotonic(), 3 * self.timing.grace_s
        beaten = oa.trials_with_heartbeat(self.storage, [oa.trial_id(t) for t in running])
        for t in running:
            tid = oa.trial_id(t)
            if tid in beaten:
                self._no_beat_since.pop(tid, None)
                continue
            if now - self._no_beat_since.setdefault(tid, now) > limit:
                with contextlib.suppress(UpdateFinishedTrialError):
                    self.storage.set_trial_state_values(tid, TrialState.FAIL)
                    log.warning("trial %d of %s was RUNNING with no heartbeat for %ds: failed as stale",
                                t.number, study.study_name, limit)
                self._no_beat_since.pop(tid, None)
