"""StudyRunner: a study's units through the work queue, with drift checks, rows, curves and MLflow.

Every unit (grid point x dataset x seed, or search trial x dataset) is an Optuna trial, one Optuna
study per (spec, dataset). Rows are written per finished unit (appended under the results file's
lock, once per run id) and also stored on the trial, so a rerun after ``kill -9`` completes the
study without redoing finished units, and tables derive from the deduplicated set of finished units.

A unit writes in this order: its curve (``curves/<run_id>.npz``, atomic), then its rows (one
appended block), then its checkpoints go, then its trial is finished. Rows therefore imply their
curve. A kill before the rows leaves a claimed trial that goes stale and is redone (the curve is
rewritten, training resumes from the checkpoint); a kill after them leaves rows that the rerun
finds and reuses instead of training again. What a kill can leave behind (temporary files of dead
writers, ``runs/<run_id>/ckpt`` of units whose rows are written) is swept by the next run.
``ZSL_BENCH_CRASH_AT`` (see :func:`zsl_bench.fileio.crash_point`) kills at the points in
``CRASH_POINTS``, for tests.

A search trial runs phase 1 of the ``val`` protocol only (``RunSpec.select_only``): it trains on
``val_train``, scores validation and stops, so its rows (``trials.csv``) hold ``val_*`` numbers and
no test numbers. The best trial's configuration is then retrained on ``trainval`` with every seed
and tested once (phase ``final``, ``results.csv``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import math
import os
import shutil
import signal
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import merge
from ..errors import ConfigError, TrainingError, ZSLError
from ..fileio import crash_point, sweep_temp_files
from ..progress import OverallProgress, Plan, PlannedUnit, shape_of
from ..results import (
    RowIndex,
    append_rows,
    git_commit,
    lock_path,
    read_rows,
    recover,
    remove_runs,
    results_lock,
    write_curve,
)
from .queue import Timing, WorkQueue, live
from .spec import SearchParam, StudySpec, Unit, check_configs, grid_units, make_unit, nest

log = logging.getLogger(__name__)

CRASH_POINTS = ("unit-trained", "curve-mid", "curve-written", "rows-mid", "rows-written", "unit-finished")
"""Where ``ZSL_BENCH_CRASH_AT`` may kill a unit, in write order (``curve-mid`` and ``rows-mid`` are
inside :func:`zsl_bench.results.write_curve` / :func:`~zsl_bench.results.append_rows`)."""

RunFn = Callable[..., Any]
"""``run_fn(unit, *, out_dir, reporter, progress) -> RunResult``-like (rows, metrics, selection,
history, curve, config). Default: ``runner.run_one`` on the runner's cached data."""


State = tuple[str, str, str]
"""What a unit's rows were trained from: (config digest, generator of the data, semantics source)."""


def row_state(row: dict[str, Any]) -> State:
    """What a result row says its unit was trained from: the config digest, and on simulated data
    the generator whose data it read (``sim.data_version``: v3 off AWA2 is v2) and the source of its
    class semantics (``sim_semantics``: generated or real-<digest>); '' where unrecorded."""
    gen = str(row.get("generator_version") or "")
    if gen and row.get("sim_preset"):
        from ..data import sim

        gen = sim.recorded_data_version(gen, str(row.get("dataset", "")), str(row["sim_preset"]))
    return str(row.get("config_hash") or ""), gen, str(row.get("sim_semantics") or "")


def state_matches(state: State, want: State) -> bool:
    """Whether rows of ``state`` stand for a unit that wants ``want`` (an unrecorded part matches:
    rows written before a part was recorded stand for any value of it)."""
    return all(not got or not w or got == w for got, w in zip(state, want))


def stale_states(states: Iterable[State], want: State) -> set[State]:
    """The ``states`` that do not stand for a unit that wants ``want`` (:func:`state_matches`)."""
    return {st for st in states if not state_matches(st, want)}


def _drift(stale: set[State], want: State) -> str:
    """'config a -> b', 'generator 2.0 -> 3.0', 'semantics generated -> real-…' or several: how
    ``stale`` states differ from ``want``."""
    parts = []
    for i, what in enumerate(("config", "generator", "semantics")):
        old = sorted({st[i] for st in stale if st[i] and want[i] and st[i] != want[i]})
        if old:
            parts.append(f"{what} {','.join(old)} -> {want[i]}")
    return "; ".join(parts)


def storage_url(out: Path, storage: str | None) -> str:
    return storage or f"sqlite:///{(out / 'optuna.db').resolve()}"


def is_server_storage(url: str) -> bool:
    return not url.startswith("sqlite")


def dedupe_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Keep one row per (run_id, metric): the last written. Row order is otherwise preserved."""
    seen: dict[tuple[str, str], int] = {}
    out: list[dict[str, Any]] = []
    for r in rows:
        k = (str(r.get("run_id", "")), str(r.get("metric", "")))
        if k in seen and k[0]:
            out[seen[k]] = r
        else:
            seen[k] = len(out)
            out.append(r)
    return out


def read_study_rows(paths: list[str | os.PathLike[str]]) -> list[dict[str, Any]]:
    """Read, check (every row against the schema) and deduplicate result rows from CSV files.

    A missing file, or a malformed row (cut, corrupted, non-numeric, unknown metric), is a
    DataError naming the file and line.
    """
    from ..errors import DataError

    rows: list[dict[str, Any]] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            raise DataError(f"{path} is a directory; give the results file (e.g. {path / 'results.csv'})")
        if not path.is_file():
            raise DataError(f"results file not found: {path}")
        rows.extend(read_rows(path, validate=True))
    return dedupe_rows(rows)


def write_unit_rows(csv_path: Path, rows: list[dict[str, Any]], index: RowIndex | None = None) -> bool:
    """Append a unit's rows unless its run id is already there. Returns whether rows were written.

    ``index`` (of ``csv_path``) makes the check cost the rows appended since it was last refreshed.
    """
    if not rows:
        return False
    index = index or RowIndex(csv_path)
    with results_lock(csv_path):
        if rows[0]["run_id"] in index.refresh():
            return False
        append_rows(csv_path, rows)
    return True


_lock_of = lock_path


class PruningReporter:
    """``Reporter`` that feeds per-epoch validation H to an Optuna trial and stops pruned trials."""

    def __init__(self, trial: Any, inner: Any = None) -> None:
        self.trial, self.inner = trial, inner

    def on_epoch(self, phase: str, epoch: int, metrics: dict[str, float]) -> None:
        if self.inner is not None:
            self.inner.on_epoch(phase, epoch, metrics)
        # Only the validation phase of the `val` protocol is what a search may select on.
        value = metrics.get("val_h", metrics.get("h")) if phase == "val" else None
        if value is None or not math.isfinite(float(value)):
            return
        self.trial.report(float(value), int(epoch))
        if self.trial.should_prune():
            import optuna

            raise optuna.TrialPruned(f"pruned at epoch {epoch} (val H {float(value):.2f})")


KILL_AT_ENV = "ZSL_BENCH_TEST_KILL_AT"
"""Tests only: ``PHASE:EPOCH`` makes the process SIGKILL itself right after that epoch's checkpoint."""


class _History:
    """Reporter that keeps per-epoch metrics so MLflow can log them when the unit completes."""

    def __init__(self) -> None:
        self.epochs: list[dict[str, Any]] = []
        self.kill_at = os.environ.get(KILL_AT_ENV, "")

    def on_epoch(self, phase: str, epoch: int, metrics: dict[str, float]) -> None:
        self.epochs.append({"phase": phase, "epoch": epoch, **metrics})
        # Reporters run after the checkpoint hook, so the epoch is on disk: a deterministic kill point.
        if self.kill_at and self.kill_at == f"{phase}:{epoch}":
            os.kill(os.getpid(), signal.SIGKILL)


@dataclass
class StudyOutcome:
    """What a worker saw: rows of finished units (all workers'), failures, and the search results."""

    rows: list[dict[str, Any]]
    trial_rows: list[dict[str, Any]]
    failed: list[tuple[str, str]]  # (unit description, reason)
    ran: int  # units this worker executed
    best: dict[str, dict[str, Any]]  # dataset -> {"params": ..., "value": ...} for searches


class StudyRunner:
    """Executes a :class:`StudySpec` as Optuna trials; any number of these may share one storage.

    Building a runner writes nothing: the output directory and the storage are made by :meth:`run`.

    Args:
        spec: the validated study.
        out: output directory (``results.csv``, ``trials.csv``, ``curves/``, ``runs/``, ``optuna.db``).
        storage: Optuna storage URL; default ``sqlite:///<out>/optuna.db`` (one worker).
        run_fn: the per-unit function (default: ``runner.run_one`` on data loaded once per runner).
            Configs are resolved and checked for drift whatever runs the units.
        tracker: a :class:`zsl_bench.tracking.Tracker` or None (no MLflow).
        progress: show tqdm bars.
        rerun_changed: rerun finished units whose config the code now resolves differently (a
            method preset or default changed), or whose data a changed default generator writes
            differently; without it such units stop the study with an error.
        keep_checkpoints: keep ``runs/<run_id>/ckpt`` of finished units (attention figures rebuild
            models from them); False removes them once the unit's rows are written.
        timing: heartbeat / grace / poll periods (default: :meth:`Timing.from_env`).
    """

    def __init__(self, spec: StudySpec, out: str | os.PathLike[str], *, storage: str | None = None,
                 run_fn: RunFn | None = None, tracker: Any = None, progress: bool = True,
                 rerun_changed: bool = False, keep_checkpoints: bool = True, timing: Timing | None = None) -> None:
        spec.check_data()
        self.spec = spec
        self.out = Path(out)
        self.url = storage_url(self.out, storage)
        self.queue = WorkQueue(self.url, timing or Timing.from_env())
        self.run_fn = run_fn or self._run_one
        self.tracker = tracker
        self.progress = progress
        self.rerun_changed = rerun_changed
        self.keep_checkpoints = keep_checkpoints
        self.failed: list[tuple[str, str]] = []
        self.ran = 0
        self.best: dict[str, dict[str, Any]] = {}
        self._expected: dict[str, set[str]] = {}  # study name -> unit keys this run stands for
        self._data: dict[tuple[Any, ...], Any] = {}  # loaded datasets, shared by this runner's units
        self._semantics_of: dict[tuple[Any, ...], str] = {}  # wanted_state: the semantics source per data key
        self._resume_ids: set[str] = set()  # run ids of units with a checkpoint to resume (run them first)
        self._done_by_study: dict[str, int] = {}  # grid study name -> finished units (the overall bar)
        self._overall = OverallProgress(0, 0, enabled=False, log=log)
        self._indexes: dict[Path, RowIndex] = {}
        self.threads: Any = None  # a threads.ThreadChoice; an automatic one is made again per unit
        self._configs: dict[str, Any] = {}  # what resolve_config reads (JSON) -> its ResolvedConfig

    def requested(self, unit: Unit) -> Any:
        """The config the code resolves for ``unit`` now (presets < overrides), resolved once per
        runner for all units that share it (seeds): the drift checks, the claim and the run use it."""
        from ..runner import resolve_config

        s = unit.spec
        key = json.dumps([s.method, s.dataset, s.overrides, s.protocol], sort_keys=True, default=str)
        if key not in self._configs:
            self._configs[key] = resolve_config(s)
        return self._configs[key]

    def index(self, csv_path: Path) -> RowIndex:
        """The runner's incremental index of ``csv_path`` (refresh it before use)."""
        if csv_path not in self._indexes:
            self._indexes[csv_path] = RowIndex(csv_path)
        return self._indexes[csv_path]

    def sweep(self) -> None:
        """Remove what killed writers left: temporary files of dead processes in the output folders."""
        for d in (self.out, self.out / "curves", self.out / "curves" / "trials", self.out / "tables",
                  self.out / "figures"):
            sweep_temp_files(d)

    def _drop_checkpoints(self, run_id: str) -> None:
        """Remove ``runs/<run_id>/ckpt`` of a unit whose rows are written (unless checkpoints are kept)."""
        if not self.keep_checkpoints:
            shutil.rmtree(self.out / "runs" / run_id / "ckpt", ignore_errors=True)

    # -- paths
    @property
    def storage(self) -> Any:
        self.out.mkdir(parents=True, exist_ok=True)  # a SQLite storage lives in <out>
        return self.queue.storage

    @property
    def results_csv(self) -> Path:
        return self.out / "results.csv"

    @property
    def trials_csv(self) -> Path:
        return self.out / "trials.csv"

    def study_name(self, dataset: str, phase: str = "grid") -> str:
        return f"{self.spec.name}.{dataset}" + ("" if phase == "grid" else f".{phase}")

    def _study(self, name: str, sampler: Any = None, pruner: Any = None) -> Any:
        _ = self.storage
        return self.queue.study(name, sampler, pruner)

    # -- data and the default run function
    def _data_key(self, dataset: str, data_seed: int | None, sim: dict[str, Any] | None) -> tuple[Any, ...]:
        seed = self.spec.sim_seed if data_seed is None else data_seed
        return (dataset, self.spec.data_root, self.spec.sim, seed, json.dumps(sim or {}, sort_keys=True, default=str))

    def load_data(self, dataset: str, data_seed: int | None = None, sim: dict[str, Any] | None = None) -> Any:
        """``dataset`` as this study reads it (real, or simulated with ``data_seed``, default the spec's
        ``sim_seed``, and generator setting ``sim``: a config's ``sim`` section, ``SimConfig.overrides()``),
        loaded once per runner."""
        from ..data.loader import load_dataset

        key = self._data_key(dataset, data_seed, sim)
        if key not in self._data:
            self._data[key] = load_dataset(dataset, self.spec.data_root, sim_preset=self.spec.sim, sim_seed=key[3],
                                           sim_overrides=sim)
        return self._data[key]

    def use_data(self, dataset: str, data: Any, data_seed: int | None = None, sim: dict[str, Any] | None = None) -> Any:
        """Use ``data`` (already loaded as this study reads ``dataset`` with ``data_seed`` and ``sim``)
        for that dataset's units."""
        self._data[self._data_key(dataset, data_seed, sim)] = data
        return data

    def _run_one(self, unit: Unit, *, out_dir: Path, reporter: Any = None, progress: bool = True) -> Any:
        from ..runner import run_one

        requested = self.requested(unit)
        return run_one(unit.spec, out_dir=out_dir, reporter=reporter, progress=progress,
                       data=self.load_data(unit.spec.dataset, unit.spec.sim_seed, requested.sim.overrides()),
                       requested=requested)

    # -- the plan (read from <out>, writes nothing)
    def plan(self) -> Plan:
        """The study's units and their state in ``<out>``: done (rows in results.csv), changed (rows of
        another config or data: ``--rerun-changed`` redoes them), to resume (a checkpoint under
        ``runs/<run_id>/ckpt``) or to run. Creates nothing, opens no storage."""
        spec = self.spec
        if spec.is_search:
            s = spec.search
            assert s is not None
            budget = f"{s.n_trials} trials" if s.n_trials is not None else f"trials for {s.timeout:g} s"
            text = (f"search on {len(spec.datasets)} dataset(s): {budget} each (validation only), then the best "
                    f"config × {len(spec.seeds)} seed(s)")
            return Plan(spec.name, [], "", search=text)  # its units depend on the trials
        # Rows a killed writer cut short are not done: the next run removes them and redoes the unit.
        walls: dict[Any, Any] = {}
        states: dict[Any, set[State]] = {}
        for r in read_rows(self.results_csv, partial_tail="ignore"):
            walls[r.get("run_id")] = r.get("wall_time_s")
            states.setdefault(r.get("run_id"), set()).add(row_state(r))
        units: list[PlannedUnit] = []
        for ds in spec.datasets:
            for u in grid_units(spec, ds):
                if u.run_id in walls:
                    want = self.wanted_state(u)
                    stale = stale_states(states[u.run_id], want)
                    units.append(PlannedUnit(u.desc, u.run_id, "changed" if stale else "done"))
                    continue
                where = checkpoint_state(self.out / "runs" / u.run_id / "ckpt")
                units.append(PlannedUnit(u.desc, u.run_id, "resume" if where else "todo", where or ""))
        variants = spec.variants or {"default": {}}
        parts = [(len(spec.methods), "method")] if len(spec.methods) > 1 else []
        parts += [(len(variants), "variant"), (len(spec.datasets), "dataset"), (len(spec.seeds), "seed")]
        if len(spec.data_seeds or ()) > 1:
            parts.append((len(spec.data_seeds or ()), "data seed"))
        done_walls = []
        for pu in units:
            with contextlib.suppress(TypeError, ValueError):
                if pu.state == "done":
                    done_walls.append(float(walls[pu.run_id]))  # type: ignore[arg-type]
        return Plan(spec.name, units, shape_of(parts), done_walls=done_walls)

    # -- entry point
    def run(self) -> StudyOutcome:
        """Run (or resume, or join) the study on every dataset; returns the finished units' rows."""
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        git_commit()  # cached now: rows name the commit this process started from, not a later checkout
        check_configs(self.spec)
        plan = self.plan()
        log.info("%s", plan.summary())
        for u in plan.to_resume:
            log.info("resuming %s from its checkpoint (%s)", u.desc, u.resume)
        if plan.done:
            log.info("reusing %d finished unit(s) (their rows are in %s)", len(plan.done), self.results_csv)
        self._resume_ids = {u.run_id for u in plan.to_resume}
        self.out.mkdir(parents=True, exist_ok=True)
        self.sweep()
        for csv_path in (self.results_csv, self.trials_csv):
            recover(csv_path)  # a block a killed writer cut short goes now, before anything reads the file
        # Datasets with a unit to resume first: an interrupted unit finishes before new ones start.
        datasets = sorted(self.spec.datasets, key=lambda ds: not any(
            u.run_id in self._resume_ids for u in grid_units(self.spec, ds))) if not self.spec.is_search \
            else list(self.spec.datasets)
        self._overall = OverallProgress(0 if self.spec.is_search else len(plan.units), len(plan.done),
                                        enabled=self.progress, log=log, prior=plan.done_walls)
        done_ids = {u.run_id for u in plan.done}
        self._done_by_study = {self.study_name(ds): sum(u.run_id in done_ids for u in grid_units(self.spec, ds))
                               for ds in self.spec.datasets} if not self.spec.is_search else {}
        parent = self.tracker.study_run(self.spec) if self.tracker else contextlib.nullcontext()
        try:
            with parent:
                # Every dataset's finished units against the code's configs, before any training. Search
                # finals are checked when their units are known, in _run_units.
                for ds in self.spec.datasets:
                    if self.spec.is_search:
                        self._check_search(ds)
                    else:
                        self._check_changed(self._study(self.study_name(ds)), grid_units(self.spec, ds))
                for ds in datasets:
                    if self.spec.is_search:
                        self._run_search(ds)
                    else:
                        self._run_units(self._study(self.study_name(ds)), grid_units(self.spec, ds), "grid")
                rows = self.collect("results")
                trial_rows = self.collect("trials") if self.spec.is_search else []
                if self.tracker:
                    self.tracker.log_study_artifacts(self.out)
        finally:
            self._overall.close()
        return StudyOutcome(rows, trial_rows, self.failed, self.ran, self.best)

    # -- config drift
    def wanted_state(self, unit: Unit) -> State:
        """What ``unit``'s rows must record to stand for it now (:func:`row_state`): the digest of the
        config the code resolves, and on simulated data the generator whose data it reads and the
        source of its semantics (real where the data root holds the dataset's metadata)."""
        from ..data import sim

        cfg = self.requested(unit)
        s = unit.spec
        if not s.sim_preset:
            return cfg.digest(), "", ""
        data = sim.data_version(cfg.sim.generator, s.dataset, s.sim_preset)
        return cfg.digest(), data, self._semantics(s.dataset, s.sim_seed, cfg.sim.overrides())

    def _semantics(self, dataset: str, data_seed: int | None, sim_cfg: dict[str, Any]) -> str:
        """The semantics source (``sim.semantics_label``) of the simulated data a unit reads: that of
        the data loaded for it, else where the generator would take them from (real files are
        hashed once per runner); '' for a preset that is not the generator's."""
        from ..data import sim

        key = self._data_key(dataset, data_seed, sim_cfg)
        if key in self._data:
            return str(self._data[key].provenance.get("semantics") or "")
        if self.spec.sim not in sim.PRESETS:
            return ""
        if key not in self._semantics_of:
            over = dict(sim_cfg)
            generator = over.pop("generator", None)
            self._semantics_of[key] = sim.semantics_label(
                sim.locate(dataset, self.spec.sim, key[3], self.spec.data_root, generator=generator, **over)[2])
        return self._semantics_of[key]

    def _recorded_states(self, t: Any) -> set[State]:
        """What a finished trial's unit was trained from (rows; failures: the claim's digest and data)."""
        from optuna.trial import TrialState

        if t.state == TrialState.COMPLETE:
            return {st for r in json.loads(t.user_attrs.get("rows", "[]")) if (st := row_state(r))[0]}
        if t.state == TrialState.FAIL and "failure" in t.user_attrs and t.user_attrs.get("config_hash"):
            return {(t.user_attrs["config_hash"], t.user_attrs.get("data_version", ""),
                     t.user_attrs.get("sim_semantics", ""))}
        return set()

    def _check_changed(self, study: Any, units: list[Unit]) -> Any:
        """Stop (or, with ``rerun_changed``, rerun) finished units trained from another config or data.

        A unit's key covers the spec (method, dataset, seed, overrides), not the method presets or
        config defaults in the code. Rows record the digest of the config they were trained from
        (failed trials: the digest stored at claim time) and the generator of their data; if the code
        now resolves another config, or a default generator that writes other data, reusing them would
        put numbers from two settings in one table.

        Cleanup comes first and touches only what is older than this check (rows of the old state,
        older curves and MLflow runs); the trial is superseded last. A crash in between leaves it
        COMPLETE, so the next run does both again; a worker that lost a race removes nothing new.
        Checkpoints of the old data are never resumed: their fingerprint names the data (``Engine.fingerprint``).
        Returns the study, reloaded if trials were superseded (Optuna caches finished trials).
        """
        from optuna.trial import TrialState

        seen_at = time.time()
        by_key = {u.key: u for u in units}
        changed: list[tuple[Any, Unit, str]] = []
        wants: dict[str, State] = {}
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL)):
            unit = by_key.get(t.user_attrs.get("unit_key"))
            if unit is None or "superseded" in t.user_attrs:
                continue
            want = self.wanted_state(unit)
            if stale := stale_states(self._recorded_states(t), want):
                changed.append((t, unit, _drift(stale, want)))
                wants[unit.run_id] = want
        if not changed:
            return study
        listed = "; ".join(f"{u.desc} ({why})" for _, u, why in changed[:5]) + (
            f"; and {len(changed) - 5} more" if len(changed) > 5 else "")
        if not self.rerun_changed:
            raise ConfigError(f"{self.out}: {len(changed)} finished unit(s) of {study.study_name} were trained from "
                              "another config or data than the code resolves now (a preset or default changed): "
                              f"{listed}. Rerun with --rerun-changed to redo them, or use a new --out")
        log.warning("%s: rerunning %d unit(s) whose config or data changed: %s", study.study_name, len(changed), listed)
        remove_runs(self.results_csv, set(wants), keep=lambda r: state_matches(row_state(r), wants[r["run_id"]]))
        for _, u, why in changed:
            curve = self.out / "curves" / f"{u.run_id}.npz"
            with contextlib.suppress(FileNotFoundError):
                if curve.stat().st_mtime < seen_at:
                    curve.unlink()
            if self.tracker:  # the old MLflow runs stay, tagged, so the rerun can be logged
                self.tracker.supersede_unit(u.key, why, before=seen_at)
        # Checkpoints need no cleanup: their fingerprint holds the config and data, so old ones are ignored.
        self.queue.supersede([(t, why) for t, _, why in changed])
        return self.queue.reload(study)

    def _check_search(self, dataset: str) -> None:
        """A search whose finished trials were trained from another config cannot be partly redone."""
        from optuna.trial import TrialState

        study = self.queue.load(self.study_name(dataset, "search"))
        if study is None:
            return
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            unit_json = t.user_attrs.get("unit")
            if not unit_json:
                continue
            want = self.wanted_state(Unit.from_json(unit_json))
            if stale := stale_states(self._recorded_states(t), want):
                raise ConfigError(f"{self.out}: search trial {t.number} of {study.study_name} was trained from another "
                                  f"config or data than the code resolves now ({_drift(stale, want)}; "
                                  "a preset or default changed). A search's history cannot be partly redone: "
                                  "use a new --out")

    # -- grid-like execution over fixed units
    def _run_units(self, study: Any, units: list[Unit], phase: str) -> None:
        from optuna.trial import TrialState
        from tqdm.auto import tqdm

        keys = {u.key for u in units}
        self._expected.setdefault(study.study_name, set()).update(keys)
        if phase == "final":  # grid units were checked up front in run()
            study = self._check_changed(study, units)
        bar = tqdm(total=len(units), desc=f"{study.study_name} units", unit="unit", leave=False,
                   disable=not self.progress or phase != "final")  # grid units count on the overall bar
        first = {u.key for u in units if u.run_id in self._resume_ids}
        resume_wait_until = time.monotonic() + 2 * self.queue.timing.grace_s + 2 * self.queue.timing.poll_s
        while True:
            self.queue.fail_stale(study)
            self.queue.ensure_enqueued(study, units)
            trials = [t for t in study.get_trials(deepcopy=False) if t.user_attrs.get("unit_key") in keys]
            done = {t.user_attrs["unit_key"] for t in trials if t.state.is_finished() and live(t)}
            bar.n = len(done)
            bar.refresh()
            if phase == "grid":  # units finished by any worker, reused ones included
                self._done_by_study[study.study_name] = len(done)
                self._overall.set_done(sum(self._done_by_study.values()))
            if len(done) >= len(keys):
                break
            if first and time.monotonic() < resume_wait_until and any(
                    t.state == TrialState.RUNNING and t.user_attrs.get("unit_key") in first for t in trials):
                # An interrupted unit is still held by its dead worker's trial: wait (one grace period)
                # for it to go stale, so that it resumes before new units start.
                time.sleep(self.queue.timing.poll_s)
                continue
            frozen = self.queue.claim(study, keys, first=first)
            if frozen is None:
                # Others hold the remaining units: wait for them to finish or to go stale.
                time.sleep(self.queue.timing.poll_s)
                continue
            with self.queue.heartbeat(frozen):
                dup = self.queue.duplicate_of(study, frozen)
                if dup is not None:
                    self.queue.set_attr(frozen, "duplicate_of", dup.number)
                    self.queue.finish(frozen, "FAIL")
                    continue
                unit = dataclasses.replace(Unit.from_json(frozen.user_attrs["unit"]),
                                           show_data_seed=len(self.spec.data_seeds or ()) > 1)
                # Lets _check_changed judge a unit that fails (it leaves no rows with a digest).
                digest, data, semantics = self.wanted_state(unit)
                self.queue.set_attr(frozen, "config_hash", digest)
                self.queue.set_attr(frozen, "data_version", data)
                self.queue.set_attr(frozen, "sim_semantics", semantics)
                self._execute(frozen, unit, phase)
        bar.close()

    def _execute(self, frozen: Any, unit: Unit, phase: str, trial: Any = None) -> float | None:
        """Run one claimed unit, record rows / curve / MLflow, and finish its trial."""
        import optuna

        csv_path = self.trials_csv if phase == "trial" else self.results_csv
        index = self.index(csv_path)
        with results_lock(csv_path):  # a unit's rows are read whole: no writer is mid-block
            recover(csv_path)
            existing = index.refresh().rows_of(unit.run_id)
        if existing:
            want = self.wanted_state(unit)
            if stale_states(map(row_state, existing), want):
                # Rows of another config or data under this run id (a --rerun-changed cleanup cut short): never reuse.
                remove_runs(csv_path, {unit.run_id}, keep=lambda r: state_matches(row_state(r), want))
                existing = [r for r in existing if state_matches(row_state(r), want)]
        if existing:
            # Finished before a kill, between writing rows and telling Optuna: reuse, do not redo.
            value = _objective(existing, phase)
            self.queue.set_attr(frozen, "rows", json.dumps(existing))
            self._drop_checkpoints(unit.run_id)
            self.queue.finish(frozen, "COMPLETE", value)
            return value
        history = _History()
        reporter: Any = PruningReporter(trial, history) if trial is not None else history
        self._adapt_threads()
        t0, cpu0 = time.time(), time.process_time()
        run_dir = self.out / "runs" / unit.run_id
        grid = phase == "grid"
        if phase != "grid":
            log.info("%s %s: starting", "trial" if phase == "trial" else "final run", unit.desc)
        try:
            result = self.run_fn(unit, out_dir=run_dir, reporter=reporter, progress=self.progress)
        except optuna.TrialPruned as exc:
            self.queue.set_attr(frozen, "failure", f"pruned: {exc}")
            self.queue.finish(frozen, "PRUNED")
            if self.tracker:
                self.tracker.log_unit(unit, history=history.epochs, status="KILLED", reason=f"pruned: {exc}")
            self.ran += 1
            log.info("trial %s: pruned after %.1f s (%s)", unit.desc, time.time() - t0, exc)
            return None
        except TrainingError as exc:
            reason = str(exc) or type(exc).__name__
            log.warning("unit %s failed: %s", unit.desc, reason)
            self.failed.append((unit.desc, reason))
            self.queue.set_attr(frozen, "failure", reason)
            self.queue.finish(frozen, "FAIL")
            if self.tracker:
                self.tracker.log_unit(unit, history=history.epochs, status="FAILED", reason=reason)
            self.ran += 1
            if grid:
                self._overall.unit_finished(unit.desc, time.time() - t0, "FAILED")
            return None
        rows = [dict(r) for r in result.rows]
        if not rows or any(r.get("run_id") != unit.run_id for r in rows):
            raise ZSLError(f"the run of {unit.desc} returned no rows or rows of another run id "
                           f"(expected run_id {unit.run_id} from its RunSpec)")
        if phase == "trial" and not any(r.get("metric") == "val_h" for r in rows):
            raise ZSLError(f"the run of search trial {unit.desc} returned no val_h row to optimise")
        value = _objective(rows, phase)
        self.queue.set_attr(frozen, "rows", json.dumps(rows, default=str))
        self.queue.set_attr(frozen, "wall_time_s", round(time.time() - t0, 3))
        crash_point("unit-trained")
        # Curve first, rows second: a row on disk implies its curve (a kill in between redoes the unit).
        curve = self._save_curve(unit, result)
        crash_point("curve-written")
        write_unit_rows(csv_path, rows, index)
        crash_point("rows-written")
        # The rows are the unit's record now; its checkpoints would only be skipped on a rerun.
        self._drop_checkpoints(unit.run_id)
        if self.tracker:
            hist = list(getattr(result, "history", None) or []) or history.epochs
            self.tracker.log_unit(unit, result=result, rows=rows, history=hist, curve=curve)
        self.queue.finish(frozen, "COMPLETE", value)
        crash_point("unit-finished")
        self.ran += 1
        # CPU seconds beside wall seconds: on a busy machine the gap is the time lost to other processes.
        outcome = (f"H {value:.2f}" if phase != "trial" else f"val H {value:.2f}") + \
            f" (CPU {time.process_time() - cpu0:.0f} s)"
        if grid:
            self._overall.unit_finished(unit.desc, time.time() - t0, outcome)
        else:
            log.info("%s %s: %s in %.1f s", "trial" if phase == "trial" else "final run", unit.desc, outcome,
                     time.time() - t0)
        return value

    def _adapt_threads(self) -> None:
        """Make an automatic thread choice again from the load now (it changes during a study)."""
        from ..threads import apply_threads, rechoose

        if self.threads is None or not self.threads.auto:
            return
        new = rechoose(self.threads)
        if new.n != self.threads.n:
            apply_threads(new)
        self.threads = new

    def _save_curve(self, unit: Unit, result: Any) -> Path | None:
        """The unit's test U-S curve as ``<out>/curves/<run_id>.npz`` (plots regenerate from files)."""
        s = unit.spec
        # Search trials' curves go one level down, so the study's U–S figure shows final runs only.
        path = self.out / "curves" / ("trials" if unit.phase == "trial" else "") / f"{unit.run_id}.npz"
        return write_curve(path, result, method=s.method, variant=s.variant, dataset=s.dataset, seed=s.seed,
                           protocol=s.protocol, source="simulated" if s.sim_preset else "real")

    # -- Optuna search
    def _sampler(self) -> Any:
        import optuna

        s = self.spec.search
        assert s is not None
        if s.sampler == "random":
            return optuna.samplers.RandomSampler(seed=s.seed)
        if s.sampler == "grid":
            return optuna.samplers.GridSampler(_grid_space(s.space), seed=s.seed)
        return optuna.samplers.TPESampler(seed=s.seed)

    def _pruner(self) -> Any:
        import optuna

        s = self.spec.search
        assert s is not None
        if s.pruner == "median":
            return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1)
        if s.pruner == "successive_halving":
            return optuna.pruners.SuccessiveHalvingPruner()
        return optuna.pruners.NopPruner()

    def _run_search(self, dataset: str) -> None:
        import optuna
        from optuna.trial import TrialState
        from tqdm.auto import tqdm

        s = self.spec.search
        assert s is not None
        study = self._study(self.study_name(dataset, "search"), self._sampler(), self._pruner())
        method, seed = self.spec.methods[0], self.spec.seeds[0]
        counted = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
        start = time.time()
        bar = tqdm(total=s.n_trials, desc=f"{study.study_name} trials", unit="trial", disable=not self.progress,
                   leave=False)
        while True:
            self.queue.fail_stale(study)
            trials = study.get_trials(deepcopy=False)
            used = sum(1 for t in trials if t.state in counted or (t.state == TrialState.FAIL and "failure" in
                                                                   t.user_attrs))
            bar.n = min(used, s.n_trials or used)
            bar.refresh()
            if s.n_trials is not None and used >= s.n_trials:
                break
            if s.timeout is not None and time.time() - start > s.timeout:
                break
            if isinstance(study.sampler, optuna.samplers.GridSampler) and study.sampler.is_exhausted(study):
                break
            trial = self.queue.ask(study)  # beating as soon as it is RUNNING; see WorkQueue.fail_stale
            params = s.sample(functools.partial(_suggest, trial))  # inactive conditional dimensions: not sampled
            unit = make_unit(self.spec, method, dataset, seed, f"trial-{trial.number}",
                             merge(self.spec.base_for(method), nest(params, "search.space")), phase="trial")
            self.queue.set_attr(trial, "unit", unit.to_json())
            self.queue.set_attr(trial, "unit_key", unit.key)
            with self.queue.heartbeat(trial):
                self._execute(trial, unit, "trial", trial=trial)
        bar.close()
        # Others may still run trials of this budget: the best is chosen once every trial has ended.
        while any(t.state == TrialState.RUNNING for t in study.get_trials(deepcopy=False)):
            self.queue.fail_stale(study)
            time.sleep(self.queue.timing.poll_s)
        complete = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
        if not complete:
            log.warning("search %s finished no trial; no final runs", study.study_name)
            return
        best = max(complete, key=lambda t: (t.value, -t.number))
        self.best[dataset] = {"params": dict(best.params), "value": best.value, "trial": best.number}
        log.info("%s: best trial %d, val H %.2f, params %s", study.study_name, best.number, best.value,
                 best.params)
        overrides = merge(self.spec.base_for(method), nest(dict(best.params), "search.space"))
        final = [make_unit(self.spec, method, dataset, sd, "best", overrides, phase="final") for sd in self.spec.seeds]
        self._run_units(self._study(self.study_name(dataset, "final")), final, "final")

    # -- collecting results of every worker
    def _belongs(self, unit_json: str | None) -> bool:
        """Whether a stored unit is part of this spec as run now (an edited spec or --sim may differ)."""
        if not unit_json:
            return False
        u = Unit.from_json(unit_json)
        s, r = self.spec, u.spec
        return (r.method in s.methods and r.seed in s.seeds and r.protocol == s.protocol
                and r.sim_preset == s.sim and (u.phase != "grid" or r.variant in (s.variants or {"default": {}}))
                and (u.phase != "grid" or r.sim_seed in (s.data_seeds or (s.sim_seed,))))

    def collect(self, which: str = "results") -> list[dict[str, Any]]:
        """Rows of every finished unit in storage (any worker); fills in local CSVs missing some."""
        from optuna.trial import TrialState

        csv_path = self.trials_csv if which == "trials" else self.results_csv
        names = []
        for ds in self.spec.datasets:
            if self.spec.is_search:
                names.append(self.study_name(ds, "search" if which == "trials" else "final"))
            else:
                names.append(self.study_name(ds))
        rows: list[dict[str, Any]] = []
        for name in names:
            study = self.queue.load(name)
            if study is None:
                continue
            expected = self._expected.get(name)
            for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
                # Units of this run only: an edited base / per_method / --set leaves the old units COMPLETE
                # in the same study, under other keys.
                if expected is not None and t.user_attrs.get("unit_key") not in expected:
                    continue
                if self._belongs(t.user_attrs.get("unit")):
                    rows.extend(json.loads(t.user_attrs.get("rows", "[]")))
        index = self.index(csv_path)
        with results_lock(csv_path):
            index.refresh()
            missing = [r for r in rows if r.get("run_id") not in index]
            if missing:
                append_rows(csv_path, missing)
        # Units finished by a process killed after its rows but before removing their checkpoints.
        for run_id in {str(r.get("run_id")) for r in rows}:
            self._drop_checkpoints(run_id)
        return dedupe_rows(rows)


def checkpoint_state(ckpt_dir: Path) -> str | None:
    """Where a unit's checkpoints stand (``phase final, epoch 3``), None when it has none.

    Reads the newest checkpoint file's epoch and phase; torch is imported only when one exists.
    """
    files = sorted(ckpt_dir.glob("*.pt"), key=lambda p: p.stat().st_mtime) if ckpt_dir.is_dir() else []
    if not files:
        return None
    try:
        import torch

        state = torch.load(files[-1], map_location="cpu", weights_only=False)
        return f"phase {state['fingerprint']['phase']}, epoch {int(state['epoch'])} done"
    except Exception:  # unreadable: the engine will say so and start that phase afresh
        return f"{files[-1].name}, unreadable"


def _objective(rows: list[dict[str, Any]], phase: str) -> float:
    """Trials optimise validation H (their ``val_h`` row); other units store test H for reference."""
    by_metric = {r.get("metric"): r.get("value") for r in rows}
    value = by_metric.get("val_h") if phase == "trial" else by_metric.get("h")
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan


def _suggest(trial: Any, p: SearchParam) -> Any:
    if p.type == "categorical":
        return trial.suggest_categorical(p.key, list(p.choices))
    if p.type == "int":
        return trial.suggest_int(p.key, int(p.low), int(p.high), step=int(p.step or 1))  # type: ignore[arg-type]
    return trial.suggest_float(p.key, p.low, p.high, log=p.type == "log_float",  # type: ignore[arg-type]
                               step=p.step if p.type == "float" else None)


def _grid_space(space: tuple[SearchParam, ...]) -> dict[str, list[Any]]:
    import numpy as np

    out: dict[str, list[Any]] = {}
    for p in space:
        if p.type == "categorical":
            out[p.key] = list(p.choices)
        else:
            assert p.low is not None and p.high is not None and p.step is not None
            vals = np.arange(p.low, p.high + p.step / 2, p.step)
            out[p.key] = [int(v) for v in vals] if p.type == "int" else [float(v) for v in vals]
    return out


__all__ = ["PruningReporter", "RunFn", "StudyOutcome", "StudyRunner", "dedupe_rows", "is_server_storage",
           "read_study_rows", "storage_url", "write_unit_rows"]
