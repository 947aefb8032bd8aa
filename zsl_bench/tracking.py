"""MLflow tracking: one parent run per study (``zsl-bench run`` is a study too), one nested run per unit.

MLflow is imported lazily here and nowhere in the engine: the engine reports through the runner's
``Reporter`` hook and this module turns reports into MLflow calls. The default backend is
``sqlite:///<out>/mlflow.db`` with artifacts under ``<out>/mlartifacts``; pass a server URI
(``--tracking-uri http://host:5000`` or a database URL) to share one tracker between machines.

Exactly once: a unit's nested run is created only when the unit has finished, tagged with the unit
key, after checking that no run with that key exists; local workers serialise this check with a
file lock, and the Optuna claim already guarantees a unit finishes on one worker only.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .fileio import file_lock

log = logging.getLogger(__name__)

UNIT_TAG = "zsl.unit_key"
STUDY_TAG = "zsl.study"
SUPERSEDED_TAG = "zsl.superseded"  # set on a unit run whose config changed and that was run again
PARENT_TAG = "mlflow.parentRunId"
DEFAULT_EXPERIMENT = "zsl-bench"


def default_uri(out: str | os.PathLike[str]) -> str:
    return f"sqlite:///{(Path(out) / 'mlflow.db').resolve()}"


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"method": {"lr": 1}}`` -> ``{"method.lr": 1}`` (what MLflow params and tables key on)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _finite(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if f == f and abs(f) != float("inf") else None


class Tracker:
    """Logs studies and units to MLflow.

    Args:
        tracking_uri: MLflow tracking URI; None means ``sqlite:///<out>/mlflow.db``.
        out: output directory (default backend, artifacts, lock file).
        experiment: MLflow experiment name.
    """

    def __init__(self, out: str | os.PathLike[str], tracking_uri: str | None = None,
                 experiment: str = DEFAULT_EXPERIMENT) -> None:
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.uri = tracking_uri or default_uri(self.out)
        self.local = tracking_uri is None
        self.experiment = experiment
        self.parent_id: str | None = None
        self.study_name: str | None = None
        self._client: Any = None
        self._exp_id: str | None = None
        self._depth = 0

    # -- setup
    @property
    def client(self) -> Any:
        if self._client is None:
            # Schema creation and migration talk at INFO on every new <out>/mlflow.db: not news to a user.
            for name in ("alembic", "mlflow.store.db.utils"):
                logging.getLogger(name).setLevel(logging.WARNING)
            from mlflow.tracking import MlflowClient

            try:
                # Local workers sharing <out>/mlflow.db must not create its tables concurrently.
                with self._lock():
                    self._client = MlflowClient(tracking_uri=self.uri)
                    self._exp_id = self._experiment_id()
            except Exception as exc:
                raise ConfigError(f"cannot use --tracking-uri {self.uri}: {str(exc).splitlines()[0]}") from None
        return self._client

    def _experiment_id(self) -> str:
        c = self._client
        exp = c.get_experiment_by_name(self.experiment)
        if exp is not None:
            return str(exp.experiment_id)
        artifacts = (self.out / "mlartifacts").resolve().as_uri() if self.local else None
        try:
            return str(c.create_experiment(self.experiment, artifact_location=artifacts))
        except Exception:  # another worker created it first
            exp = c.get_experiment_by_name(self.experiment)
            if exp is None:
                raise
            return str(exp.experiment_id)

    @property
    def experiment_id(self) -> str:
        _ = self.client
        assert self._exp_id is not None
        return self._exp_id

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        """Inter-process lock, re-entrant within this tracker (flock would block on a second open)."""
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        with file_lock(self.out / ".mlflow.lock"):
            self._depth = 1
            try:
                yield
            finally:
                self._depth = 0

    def find_runs(self, filter_string: str) -> list[Any]:
        return list(self.client.search_runs([self.experiment_id], filter_string=filter_string, max_results=10000))

    # -- parent runs
    @contextlib.contextmanager
    def study_run(self, spec: Any) -> Iterator[str]:
        """The study's parent run (found by name, or created): every worker nests under the same one."""
        self.study_name = spec.name
        with self._lock():
            found = [r for r in self.find_runs(f"tags.`{STUDY_TAG}` = '{spec.name}'")
                     if PARENT_TAG not in r.data.tags]
            if found:
                run_id = sorted(found, key=lambda r: r.info.start_time)[0].info.run_id
            else:
                run = self.client.create_run(self.experiment_id, run_name=f"study {spec.name}",
                                             tags={STUDY_TAG: spec.name, "zsl.kind": "study"})
                run_id = run.info.run_id
                params = {"methods": ",".join(spec.methods), "datasets": ",".join(spec.datasets),
                          "seeds": ",".join(map(str, spec.seeds)), "protocol": spec.protocol,
                          "sim": spec.sim or "real", "source": spec.source}
                self._log_params(run_id, params)
        self.parent_id = run_id
        status = "FAILED"
        try:
            yield run_id
            status = "FINISHED"
        finally:
            with contextlib.suppress(Exception):
                self.client.set_terminated(run_id, status)

    def log_study_artifacts(self, out: Path) -> None:
        """Attach the study's result rows (and tables/figures, when present) to the parent run."""
        if self.parent_id is None:
            return
        for name in ("results.csv", "trials.csv"):
            if (out / name).is_file():
                self.client.log_artifact(self.parent_id, str(out / name))
        for sub in ("tables", "figures"):
            if (out / sub).is_dir():
                self.client.log_artifacts(self.parent_id, str(out / sub), sub)

    # -- units
    def _unit_runs(self, key: str) -> list[Any]:
        """The current (not superseded) nested runs holding unit ``key``."""
        return [r for r in self.find_runs(f"tags.`{UNIT_TAG}` = '{key}'") if SUPERSEDED_TAG not in r.data.tags]

    def has_unit(self, key: str) -> bool:
        return bool(self._unit_runs(key))

    def supersede_unit(self, key: str, reason: str, *, before: float | None = None) -> int:
        """Tag unit ``key``'s current runs as superseded (kept for the record, skipped by readers).

        ``before`` (a ``time.time()``): only runs started earlier, so a rerun logged meanwhile stays.
        """
        with self._lock():
            runs = [r for r in self._unit_runs(key) if before is None or r.info.start_time / 1000 < before]
            for r in runs:
                self.client.set_tag(r.info.run_id, SUPERSEDED_TAG, reason)
        return len(runs)

    def log_unit(self, unit: Any, *, result: Any = None, rows: list[dict[str, Any]] | None = None,
                 history: list[dict[str, Any]] | None = None, curve: Path | None = None,
                 status: str = "FINISHED", reason: str = "") -> str | None:
        """Create the finished unit's nested run with params, per-epoch and final metrics, artifacts.

        Returns the MLflow run id, or None when the unit was already logged (by this or another worker).
        """
        with self._lock():
            if self.has_unit(unit.key):
                return None
            spec = unit.spec
            tags = {UNIT_TAG: unit.key, STUDY_TAG: unit.study, "zsl.method": spec.method,
                    "zsl.dataset": spec.dataset, "zsl.variant": spec.variant, "zsl.seed": str(spec.seed),
                    "zsl.phase": unit.phase, "zsl.protocol": spec.protocol,
                    "zsl.source": "simulated" if spec.sim_preset else "real"}
            if reason:
                tags["zsl.failure"] = reason[:5000]
            first = (rows or [{}])[0]
            if first.get("generator_version"):  # the simulated data's generator, for tables built from here
                tags["zsl.generator"] = str(first["generator_version"])
            if self.parent_id:
                tags[PARENT_TAG] = self.parent_id
            name = f"{spec.method}/{spec.variant}/{spec.dataset}/s{spec.seed}"
            if getattr(unit, "show_data_seed", False):  # a study over several data seeds: name the draw
                tags["zsl.data_seed"] = str(spec.sim_seed)
                name += f"/d{spec.sim_seed}"
            run = self.client.create_run(self.experiment_id, run_name=name, tags=tags)
            run_id = run.info.run_id
        try:
            cfg: dict[str, Any] = {}
            if result is not None and getattr(result, "config", None) is not None:
                cfg = result.config.as_dict() if hasattr(result.config, "as_dict") else dict(result.config)
            params = flatten(cfg) if cfg else flatten(spec.overrides)
            params.update({"unit.seed": spec.seed, "unit.variant": spec.variant, "unit.dataset": spec.dataset,
                           "unit.protocol": spec.protocol, "unit.sim": spec.sim_preset or "real"})
            self._log_params(run_id, params)
            self._log_history(run_id, history or [])
            if result is not None:
                final = {f"test.{k}": v for k, v in (getattr(result, "metrics", {}) or {}).items()}
                final.update({f"selection.{k}": v for k, v in (getattr(result, "selection", {}) or {}).items()})
                final["wall_time_s"] = getattr(result, "wall_time_s", 0.0)
                self._log_metrics(run_id, final, step=0)
                self._log_json(run_id, {"config": cfg, "unit": json.loads(unit.to_json())}, "config.json")
            if rows:
                self._log_rows(run_id, rows)
            if curve is not None and Path(curve).is_file():
                self.client.log_artifact(run_id, str(curve), "curves")
        finally:
            self.client.set_terminated(run_id, status)
        return run_id

    def count_units(self, study: str | None = None) -> dict[str, int]:
        """Unit key -> number of nested runs holding it (for checks: each should be 1)."""
        flt = f"tags.`{STUDY_TAG}` = '{study}'" if study else ""
        counts: dict[str, int] = {}
        for r in self.find_runs(flt):
            key = r.data.tags.get(UNIT_TAG)
            if key and SUPERSEDED_TAG not in r.data.tags:
                counts[key] = counts.get(key, 0) + 1
        return counts

    # -- helpers
    def _log_params(self, run_id: str, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for i in range(0, len(items), 100):
            self.client.log_batch(run_id, params=items[i:i + 100])

    def _log_metrics(self, run_id: str, metrics: dict[str, Any], step: int) -> None:
        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        items = [Metric(k, f, ts, step) for k, v in metrics.items() if (f := _finite(v)) is not None]
        for i in range(0, len(items), 1000):
            self.client.log_batch(run_id, metrics=items[i:i + 1000])

    def _log_history(self, run_id: str, history: list[dict[str, Any]]) -> None:
        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        items = []
        for h in history:
            phase, epoch = h.get("phase", "train"), int(h.get("epoch", 0))
            for k, v in h.items():
                f = _finite(v)
                if k not in ("phase", "epoch") and f is not None:
                    items.append(Metric(f"{phase}.{k}", f, ts, epoch))
        for i in range(0, len(items), 1000):
            self.client.log_batch(run_id, metrics=items[i:i + 1000])

    def _log_json(self, run_id: str, obj: Any, name: str) -> None:
        with tempfile.TemporaryDirectory() as d:
            p = Path(d) / name
            p.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str))
            self.client.log_artifact(run_id, str(p))

    def _log_rows(self, run_id: str, rows: list[dict[str, Any]]) -> None:
        from .results import append_rows

        with tempfile.TemporaryDirectory() as d:
            p = Path(d) / "rows.csv"
            append_rows(p, rows)
            self.client.log_artifact(run_id, str(p))


def rows_from_mlflow(tracking_uri: str, experiment: str = DEFAULT_EXPERIMENT) -> list[dict[str, Any]]:
    """Result rows rebuilt from the finished unit runs of an MLflow experiment (tags + test metrics)."""
    from .errors import DataError

    tracker = Tracker(tempfile.gettempdir(), tracking_uri, experiment)
    if tracker.client.get_experiment_by_name(experiment) is None:
        raise DataError(f"no MLflow experiment {experiment!r} at --tracking-uri {tracking_uri}")
    rows: list[dict[str, Any]] = []
    for r in tracker.find_runs("attributes.status = 'FINISHED'"):
        tags = r.data.tags
        if UNIT_TAG not in tags or tags.get("zsl.phase") == "trial" or SUPERSEDED_TAG in tags:
            continue
        for key, value in r.data.metrics.items():
            if key.startswith("test."):
                rows.append({"run_id": tags[UNIT_TAG], "method": tags.get("zsl.method", ""),
                             "variant": tags.get("zsl.variant", ""), "dataset": tags.get("zsl.dataset", ""),
                             "source": tags.get("zsl.source", ""), "protocol": tags.get("zsl.protocol", ""),
                             "seed": tags.get("zsl.seed", ""), "metric": key[len("test."):], "value": value,
                             # several data seeds: a second unit dimension (pairs are (seed, data seed))
                             "data_seed": tags.get("zsl.data_seed", ""),
                             "generator_version": tags.get("zsl.generator", ""),
                             "sim_preset": "" if tags.get("zsl.source") != "simulated" else r.data.params.get("unit.sim", "")})
    if not rows:
        raise DataError(f"no finished zsl-bench unit runs in experiment {experiment!r} at {tracking_uri}")
    return rows
