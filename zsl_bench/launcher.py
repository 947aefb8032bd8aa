"""Start study workers through ``submitit``: a Slurm job array, or local processes (same code path).

``zsl-bench ablate SPEC --launcher slurm --workers N --storage postgresql://...`` submits N copies of
the worker command (``ablate SPEC ... --worker-only``) as one Slurm job array. Each worker runs the
same study loop as a local worker: it claims units from the shared Optuna storage, so every unit
runs once however many workers there are, and a worker that dies leaves its unit to be claimed
again (:mod:`zsl_bench.study.queue`). ``--launcher submitit-local`` runs the identical submission
through submitit's local executor (processes on this machine): CI tests the launcher that way.

Nothing here decides what a worker does; it only starts ``zsl_bench.cli.main.main(argv)`` somewhere.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError

log = logging.getLogger(__name__)

LAUNCHERS = ("local", "slurm", "submitit-local")


@dataclass(frozen=True)
class SlurmOptions:
    """Resources of one worker (one array task). ``None``: the cluster's default.

    Attributes:
        partition: Slurm partition (``--partition``).
        gpus_per_worker: GPUs of each worker (``--gpus-per-node``).
        cpus_per_worker: CPU cores of each worker (``--cpus-per-task``).
        time_min: wall-time limit of each worker in minutes (``--time``).
        mem_gb: memory of each worker in GB (``--mem``).
        account, qos, constraint: passed to sbatch when set.
        extra: more ``#SBATCH`` options, ``{"reservation": "x"}`` -> ``--reservation=x``.
    """

    partition: str | None = None
    gpus_per_worker: int = 1
    cpus_per_worker: int = 8
    time_min: int = 240
    mem_gb: int = 64
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    extra: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for flag, value, low in (("--gpus-per-worker", self.gpus_per_worker, 0),
                                 ("--cpus-per-worker", self.cpus_per_worker, 1),
                                 ("--time", self.time_min, 1), ("--mem-gb", self.mem_gb, 1)):
            if not isinstance(value, int) or value < low:
                raise ConfigError(f"bad value for {flag}: {value!r}; valid: an integer >= {low}")
        for k in self.extra:
            if not re.fullmatch(r"[a-z][a-z0-9-]*", k):
                raise ConfigError(f"bad --slurm-option {k!r}; valid: KEY=VALUE with an sbatch long option "
                                  "name as KEY (e.g. reservation=gpu-week)")

    def executor_parameters(self, workers: int, name: str) -> dict[str, Any]:
        """``AutoExecutor.update_parameters`` keywords for a Slurm array of ``workers`` tasks."""
        params: dict[str, Any] = {
            "name": name, "timeout_min": self.time_min, "mem_gb": self.mem_gb,
            "cpus_per_task": self.cpus_per_worker, "gpus_per_node": self.gpus_per_worker,
            "slurm_array_parallelism": workers,
        }
        if self.partition:
            params["slurm_partition"] = self.partition
        extra = {k.replace("-", "_"): v for k, v in self.extra.items()}
        for k in ("account", "qos", "constraint"):
            if getattr(self, k):
                extra[k] = getattr(self, k)
        if extra:
            params["slurm_additional_parameters"] = extra
        return params


def check_spec_slurm(raw: Any, where: str = "") -> dict[str, Any]:
    """A spec's ``slurm:`` mapping, checked (field names and values) as :class:`SlurmOptions` does."""
    import dataclasses

    valid = [f.name for f in dataclasses.fields(SlurmOptions)]
    if not isinstance(raw, dict):
        raise ConfigError(f"study key 'slurm'{where} must be a mapping of {', '.join(valid)}")
    for k in raw:
        if k not in valid:
            raise ConfigError(f"unknown key 'slurm.{k}'{where}; valid: {', '.join(valid)}")
    try:
        SlurmOptions(**raw)
    except (ConfigError, TypeError) as exc:
        raise ConfigError(f"study key 'slurm'{where}: {exc}") from None
    return dict(raw)


def parse_slurm_options(items: Sequence[str]) -> dict[str, str]:
    """``["reservation=x", "exclude=n1"]`` -> ``{"reservation": "x", "exclude": "n1"}``."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ConfigError(f"bad --slurm-option {item!r}; expected KEY=VALUE, e.g. reservation=gpu-week")
        out[key.strip()] = value.strip()
    return out


def run_worker(argv: list[str]) -> int:
    """A worker's body (pickled by submitit): ``zsl-bench <argv>`` in this process; its exit code."""
    from .cli.main import main

    rc = main(list(argv))
    if rc:
        # A non-zero exit must fail the job, so that the submitter and `sacct` see it.
        raise SystemExit(rc)
    return rc


def make_executor(kind: str, folder: Path, options: SlurmOptions, workers: int, name: str) -> Any:
    """A submitit executor for ``kind`` (``slurm`` or ``submitit-local``) writing logs to ``folder``."""
    try:
        import submitit
    except ImportError:
        raise ConfigError("--launcher slurm needs submitit: pip install 'zsl-bench[slurm]' "
                          "(or pip install submitit)") from None
    if kind == "slurm":
        try:
            ex = submitit.AutoExecutor(folder=folder, cluster="slurm")
        except RuntimeError as exc:  # no srun / sbatch on this machine
            raise ConfigError(f"--launcher slurm: {exc} (run it on a Slurm login node; "
                              "--launcher local runs the workers on this machine)") from None
        ex.update_parameters(**options.executor_parameters(workers, name))
        return ex
    if kind == "submitit-local":
        ex = submitit.AutoExecutor(folder=folder, cluster="local")
        ex.update_parameters(name=name, timeout_min=options.time_min, gpus_per_node=0)
        return ex
    raise ConfigError(f"bad --launcher {kind!r}; valid: {', '.join(LAUNCHERS)}")


def submit_workers(kind: str, argv: list[str], workers: int, folder: Path, options: SlurmOptions,
                   name: str) -> list[Any]:
    """Submit ``workers`` copies of ``zsl-bench <argv>`` (one job array on Slurm); returns the jobs."""
    folder.mkdir(parents=True, exist_ok=True)
    ex = make_executor(kind, folder, options, workers, name)
    jobs = ex.map_array(run_worker, [list(argv) for _ in range(workers)])
    first = jobs[0].job_id if jobs else "-"
    log.info("submitted %d worker%s (%s, job %s); logs in %s", workers, "s" if workers != 1 else "",
             kind, first.split("_")[0], folder)
    return jobs


def wait(jobs: Sequence[Any]) -> list[tuple[str, str]]:
    """Wait for every job; returns ``(job id, reason)`` for each job that failed."""
    failed = []
    for job in jobs:
        try:
            job.result()
        except Exception as exc:  # noqa: BLE001 - submitit raises several types; each is one failed worker
            lines = [ln for ln in str(exc).strip().splitlines() if ln.strip()]
            failed.append((str(job.job_id), lines[-1] if lines else type(exc).__name__))
    return failed
