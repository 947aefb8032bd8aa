"""``zsl-bench ablate``, ``zsl-bench table``, ``zsl-bench plot``: studies and what is made of their rows."""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

LAUNCHER_CHOICES = ("local", "slurm", "submitit-local")
SLURM_FLAGS = (("partition", "--partition"), ("gpus_per_worker", "--gpus-per-worker"),
               ("cpus_per_worker", "--cpus-per-worker"), ("time", "--time"), ("mem_gb", "--mem-gb"),
               ("account", "--account"), ("qos", "--qos"), ("constraint", "--constraint"),
               ("slurm_option", "--slurm-option"), ("slurm_log", "--slurm-log"), ("no_wait", "--no-wait"))

ABLATE_EPILOG = """examples:
  zsl-bench ablate --sim                             the MSDN++ ablation on a CPU budget (msdnpp_ablation_cpu.yaml)
  zsl-bench ablate --sim --full                      the full MSDN++ ablation (msdnpp_ablation.yaml)
  zsl-bench ablate --sim --dry-run                   list its units (and which are done) and exit
  zsl-bench ablate benchmarks/smoke.yaml --out runs/smoke
  zsl-bench ablate --sim --seeds 0                   one seed first; rerun with --seeds 0,1,2 to add seeds
  zsl-bench ablate --sim --data-seeds 0,1            every unit on two draws of the simulated data too
  zsl-bench ablate main_table_cpu.yaml --sim --seeds 0,1,2 --datasets cub,awa2   more seeds where units are cheap
  zsl-bench ablate msdnpp_search.yaml --sim small    an Optuna search on simulated data
  zsl-bench ablate --sim --rerun-changed            after editing a method preset: redo only the units it changed
  zsl-bench ablate main_table.yaml --storage postgresql://u:p@host/db --workers 4
                                                     run the same command on many machines: each unit runs once
  zsl-bench ablate main_table.yaml --storage postgresql://u:p@host/db --workers 16 \
      --launcher slurm --partition gpu --gpus-per-worker 1 --time 240
                                                     16 workers as one Slurm job array (submitit); no sbatch script
Specs without a path are looked up in ./benchmarks, then beside the installed package
($ZSL_BENCH_BENCHMARKS overrides). Rerun the same command after an interruption to resume.
"""

TABLE_EPILOG = """examples:
  zsl-bench table runs/smoke/results.csv
  zsl-bench table runs/*/results.csv --kind main --published published.csv --out tables
  zsl-bench table --tracking-uri sqlite:///runs/smoke/mlflow.db --kind ablation
  zsl-bench table runs/ablation/results.csv --kind ablation --reference full
  zsl-bench table a/results.csv b/results.csv --order eszsl,ale,msdn   these methods' rows first
"""

POWER_EPILOG = """examples:
  zsl-bench power runs/msdnpp_ablation-sim-small/results.csv
  zsl-bench power results.csv --reference full --delta 1
"""

PLOT_EPILOG = """examples:
  zsl-bench plot runs/ablation/results.csv --out figs                       ablation bars + sensitivity
  zsl-bench plot --curves runs/ablation/curves --out figs                    U-S curves with AUSUC
  zsl-bench plot runs/sweep/results.csv --kind sweep --x sim.rho --out figs   H, ZSL acc, reliance vs rho
  zsl-bench plot --storage sqlite:///runs/search/optuna.db --study msdnpp_search.cub.search --out figs
"""


DEFAULT_SPEC, FULL_SPEC = "msdnpp_ablation_cpu.yaml", "msdnpp_ablation.yaml"
# Budgets on the simulated benchmark (small preset), one worker, one thread. Full: the sum of the
# unit wall times of results/ablation (11,119 s, 2 CPU cores, 2026-11-27). CPU default: that per-seed
# time scaled by 10 / official epochs per dataset (385 + 199 + 60 + 286 s); not yet timed end to end.
DEFAULT_BUDGET = ("48 units = 12 variants x 4 datasets x 1 seed, 10 epochs; 18 min measured on an idle 2-core CPU, "
                  "several times that on a busy one (the plan line gives an ETA as units finish)")
FULL_BUDGET = ("144 units = 12 variants x 4 datasets x 3 seeds, official epochs (30-70); about 3 h on an idle "
               "2-core CPU; GPU time not measured")


def register(sub: argparse._SubParsersAction) -> None:
    from .run import add_speed_flags

    fmt = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser("ablate", help="run a study spec: grid ablation or Optuna search (resumable)",
                       description="Run a study spec. Without SPEC: the MSDN++ ablation on a CPU budget "
                                   f"({DEFAULT_SPEC}: {DEFAULT_BUDGET}); --full runs the full study "
                                   f"({FULL_SPEC}: {FULL_BUDGET}).",
                       epilog=ABLATE_EPILOG, formatter_class=fmt)
    p.add_argument("spec", nargs="?", default=None, metavar="SPEC.yaml",
                   help=f"study spec (default: {DEFAULT_SPEC}, or {FULL_SPEC} with --full)")
    p.add_argument("--full", action="store_true",
                   help=f"without SPEC: the full MSDN++ ablation ({FULL_SPEC}: {FULL_BUDGET})")
    p.add_argument("--sim", nargs="?", const="small", default=None, metavar="PRESET",
                   help="use simulated data (default preset: small); overrides the spec's sim")
    p.add_argument("--out", default=None, metavar="DIR", help="output directory (default runs/<spec name>)")
    p.add_argument("--storage", default=None, metavar="URL",
                   help="Optuna storage (default sqlite:///<out>/optuna.db; postgresql://... for many workers)")
    p.add_argument("--tracking-uri", default=None, metavar="URI",
                   help="MLflow tracking URI (default sqlite:///<out>/mlflow.db)")
    p.add_argument("--no-mlflow", action="store_true", help="do not log to MLflow")
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="local worker processes on the same storage (N>1 needs a server --storage)")
    p.add_argument("--set", action="append", default=[], dest="overrides", metavar="SECTION.KEY=VALUE",
                   help="override the spec's base config, e.g. --set train.epochs=2 (repeatable)")
    p.add_argument("--data-root", default=None, metavar="DIR", help="real data root (default $ZSL_BENCH_DATA)")
    p.add_argument("--seeds", default=None, metavar="S,S,...",
                   help="run these training seeds instead of the spec's (e.g. 0 or 0,1,2); units already "
                        "finished for a seed are reused, so adding seeds later only runs the new ones")
    p.add_argument("--datasets", default=None, metavar="LIST",
                   help="run only these of the spec's datasets (a comma list, e.g. cub,awa2); finished units "
                        "are reused, so the rest can run later; the tables then cover these datasets only "
                        "(zsl-bench table OUT/results.csv covers every finished row)")
    p.add_argument("--data-seeds", default=None, metavar="S,S,...",
                   help="simulated data only: draw the data with each of these seeds, a unit dimension beside "
                        "--seeds (default: the spec's data_seeds, else its sim_seed); like --seeds, finished "
                        "units are reused")
    p.add_argument("--rerun-changed", action="store_true",
                   help="rerun finished units whose config or simulated data the code now resolves "
                        "differently (a method preset, default or default generator changed); without it "
                        "such units stop the study with an error")
    s = p.add_argument_group("workers on a Slurm cluster (--launcher slurm; needs pip install 'zsl-bench[slurm]')")
    s.add_argument("--launcher", choices=LAUNCHER_CHOICES, default="local",
                   help="local (default): this process plus N-1 local worker processes; slurm: N workers "
                        "as one Slurm job array through submitit, this process waits and writes the tables; "
                        "submitit-local: the slurm code path with local processes (tests, a dry run)")
    s.add_argument("--partition", default=None, metavar="NAME", help="Slurm partition of the workers")
    s.add_argument("--gpus-per-worker", type=int, default=None, metavar="G", help="GPUs per worker (default 1)")
    s.add_argument("--cpus-per-worker", type=int, default=None, metavar="C",
                   help="CPU cores per worker (default 8)")
    s.add_argument("--time", type=int, default=None, metavar="MIN",
                   help="wall-time limit per worker in minutes (default 240); a worker stopped by it "
                        "leaves its unit to the others or to a rerun")
    s.add_argument("--mem-gb", type=int, default=None, metavar="GB", help="memory per worker (default 64)")
    s.add_argument("--account", default=None, metavar="NAME", help="Slurm account")
    s.add_argument("--qos", default=None, metavar="NAME", help="Slurm QOS")
    s.add_argument("--constraint", default=None, metavar="EXPR", help="Slurm node constraint (e.g. h100)")
    s.add_argument("--slurm-option", action="append", default=[], metavar="KEY=VALUE",
                   help="any other sbatch option, e.g. reservation=gpu-week (repeatable)")
    s.add_argument("--slurm-log", default=None, metavar="DIR", help="submitit logs (default <out>/slurm)")
    s.add_argument("--no-wait", action="store_true",
                   help="submit and return; rerun the same command later to collect rows and tables")
    add_speed_flags(p)
    # Children started by --workers only execute units; the parent writes tables and figures.
    p.add_argument("--worker-only", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_ablate)

    t = sub.add_parser("table", help="LaTeX / Markdown tables from result rows", epilog=TABLE_EPILOG,
                       formatter_class=fmt)
    t.add_argument("results", nargs="*", metavar="RESULTS.csv", help="result files (deduplicated)")
    t.add_argument("--tracking-uri", default=None, metavar="URI", help="read rows from MLflow instead")
    t.add_argument("--kind", choices=("main", "ablation"), default="main", help="table layout (default main)")
    t.add_argument("--published", default=None, metavar="CSV", help="published numbers to add as extra rows")
    t.add_argument("--reference", default=None, metavar="VARIANT",
                   help="--kind ablation: the row every variant is compared with (paired by training and data "
                        "seed; default: the first variant in the rows)")
    t.add_argument("--order", default=None, metavar="NAMES",
                   help="rows first in this order: methods (--kind main) or variants (--kind ablation), a comma "
                        "list; the others follow in input order (default: input order)")
    t.add_argument("--out", default=None, metavar="DIR", help="write <kind>_table.tex/.md here")
    t.add_argument("--format", choices=("latex", "markdown", "both"), default="both",
                   help="what to write (default both); stdout shows Markdown")
    t.set_defaults(func=cmd_table)

    w = sub.add_parser("power", help="seeds needed: sd of paired differences to the reference, detectable "
                       "difference", description="Per dataset and metric: the sd of the paired differences "
                       "(variant - reference, matched by training seed and data seed, pooled over variants), the "
                       "number of pairs n, the smallest difference a paired t-test detects at that n, and the "
                       "pairs needed to detect DELTA points.", epilog=POWER_EPILOG, formatter_class=fmt)
    w.add_argument("results", nargs="+", metavar="RESULTS.csv", help="result files of an ablation or sweep")
    w.add_argument("--reference", default=None, metavar="VARIANT",
                   help="the variant compared with (default: the first variant in the rows)")
    w.add_argument("--delta", type=float, default=2.0, metavar="POINTS",
                   help="the difference to detect, in points (default 2)")
    w.add_argument("--alpha", type=float, default=0.05, help="significance level (default 0.05)")
    w.add_argument("--power", type=float, default=0.8, help="power (default 0.8)")
    w.set_defaults(func=cmd_power)

    g = sub.add_parser("plot", help="figures (PNG + PDF) from result rows, curves and Optuna studies",
                       epilog=PLOT_EPILOG, formatter_class=fmt)
    g.add_argument("results", nargs="*", metavar="RESULTS.csv", help="result files for ablation/sensitivity")
    g.add_argument("--kind", choices=("results", "ablation", "sensitivity", "sweep", "curves", "optuna", "attention",
                                      "all"),
                   default="all", help="which figures (default all: what the inputs allow; bars per method "
                   "(results) or per variant (ablation) as the rows hold one or several variants of a "
                   "method, and the U-S curves in <results dir>/curves); attention rebuilds simulated "
                   "region models from <results dir>/runs/<run_id>/ckpt, which `zsl-bench ablate` keeps; "
                   "sweep: H, ZSL acc and (simulated data) context reliance vs a swept numeric key (--x) with 95%% "
                   "bands over seeds")
    g.add_argument("--x", default=None, metavar="SECTION.KEY",
                   help="--kind sweep: the swept key on the x axis, e.g. sim.rho (default: the rows' only one)")
    g.add_argument("--metric", default="h", metavar="NAME",
                   help="metric of bars/curves: a table metric (zsl-bench ls metrics), default h")
    g.add_argument("--curves", action="append", default=None, metavar="DIR",
                   help="directory of saved U-S curves (*.npz); repeat it for several studies' curves")
    g.add_argument("--storage", default=None, metavar="URL", help="Optuna storage of a search")
    g.add_argument("--study", default=None, metavar="NAME", help="Optuna study name (with --storage)")
    g.add_argument("--out", required=True, metavar="DIR", help="output directory for the figures")
    g.set_defaults(func=cmd_plot)


# ---------------------------------------------------------------- ablate


def _spec_with_cli(spec: Any, args: argparse.Namespace) -> Any:
    import dataclasses

    from ..config import merge, parse_overrides, parse_seeds

    changes: dict[str, Any] = {}
    if args.sim is not None:
        changes["sim"] = args.sim
    if args.data_root is not None:
        changes["data_root"] = str(args.data_root)
    if getattr(args, "seeds", None) is not None:
        changes["seeds"] = parse_seeds(args.seeds)
    if getattr(args, "data_seeds", None) is not None:
        changes["data_seeds"] = parse_seeds(args.data_seeds, "--data-seeds")
    if getattr(args, "datasets", None) is not None:
        changes["datasets"] = _dataset_subset(spec, args.datasets)
    if args.overrides:
        cli = parse_overrides(args.overrides)
        changes["base"] = merge(spec.base, cli)
        # --set also wins over the spec's per-method overrides.
        changes["per_method"] = {m: merge(ov, cli) for m, ov in spec.per_method.items()}
    return dataclasses.replace(spec, **changes) if changes else spec


def _dataset_subset(spec: Any, value: str) -> tuple[str, ...]:
    """``--datasets``: names from the spec's own datasets, in the spec's order."""
    from ..data.datasets import parse_dataset_list
    from ..errors import ConfigError, ZSLError

    try:
        names = parse_dataset_list(value)
    except ConfigError:
        raise
    except ZSLError as exc:
        raise ConfigError(f"--datasets: {exc}") from None
    if not names:
        raise ConfigError(f"--datasets {value!r}: give at least one of the spec's datasets: {', '.join(spec.datasets)}")
    extra = [n for n in names if n not in spec.datasets]
    if extra:
        raise ConfigError(f"--datasets: {', '.join(extra)} not in the spec's datasets ({', '.join(spec.datasets)}); "
                          "--datasets picks a subset of them")
    return tuple(d for d in spec.datasets if d in names)


def _worker_argv(args: argparse.Namespace, out: Path) -> list[str]:
    argv = [sys.executable, "-m", "zsl_bench", "ablate"]
    if args.spec:
        argv.append(str(args.spec))
    elif args.full:
        argv.append("--full")
    if args.sim is not None:
        argv += ["--sim", args.sim]
    argv += ["--out", str(out), "--workers", "1", "--no-progress", "--worker-only"]
    for flag, value in (("--storage", args.storage), ("--tracking-uri", args.tracking_uri),
                        ("--data-root", args.data_root), ("--seeds", args.seeds),
                        ("--datasets", getattr(args, "datasets", None)),
                        ("--data-seeds", getattr(args, "data_seeds", None))):
        if value:
            argv += [flag, str(value)]
    if args.no_mlflow:
        argv.append("--no-mlflow")
    if args.rerun_changed:
        argv.append("--rerun-changed")
    for o in args.overrides:
        argv += ["--set", o]
    return argv


def cmd_ablate(args: argparse.Namespace) -> int:
    import os

    from ..config import check_out_dir
    from ..errors import ConfigError
    from ..progress import progress_enabled
    from ..study import StudyRunner, is_server_storage, load_spec, storage_url
    from ..threads import THREADS_ENV, apply_threads, choose_threads

    launcher = getattr(args, "launcher", "local")
    if launcher == "local":
        given = [flag for dest, flag in SLURM_FLAGS if getattr(args, dest, None) not in (None, False, [])]
        if given:
            raise ConfigError(f"{', '.join(given)}: only with --launcher slurm (or submitit-local); "
                              "--launcher local runs the workers on this machine")
    # Every argument is checked before anything is written (databases, output folder, workers).
    _sim_or_spec(args)
    if args.full and args.spec:
        raise ConfigError(f"--full picks the full default study ({FULL_SPEC}); give SPEC.yaml or --full, not both")
    if args.workers < 1:
        raise ConfigError(f"bad --workers {args.workers}; valid: an integer >= 1")
    spec = _spec_with_cli(load_spec(args.spec or (FULL_SPEC if args.full else DEFAULT_SPEC)), args)
    _check_sim_preset(spec.sim, "--sim" if args.sim is not None else f"study key 'sim' in {spec.source}")
    out = check_out_dir(Path(args.out or Path("runs") / (spec.name + (f"-sim-{spec.sim}" if spec.sim else ""))))
    url = storage_url(out, args.storage)
    if args.workers > 1 and not is_server_storage(url):
        raise ConfigError("--workers N>1 needs a server --storage (e.g. postgresql://user:pw@host/db): "
                          "SQLite is safe for one worker process only")
    threads = choose_threads(args.threads, share=args.workers)  # auto: the CPUs are shared by the workers
    runner = StudyRunner(spec, out, storage=args.storage, progress=progress_enabled(args.no_progress),
                         rerun_changed=args.rerun_changed)
    if not args.spec and not args.worker_only:
        log.info("%s", f"{spec.name}: the MSDN++ ablation on a CPU budget ({DEFAULT_BUDGET}); "
                       f"the full study: --full ({FULL_BUDGET})" if not args.full else
                 f"{spec.name}: the full MSDN++ ablation ({FULL_BUDGET})")
    if args.dry_run:
        from ..study.spec import check_configs

        check_configs(spec)  # a bad value fails here too, not only when the study starts
        print(runner.plan().listing())
        print(f"dry run: nothing written; output would go to {out}")
        return 0
    if launcher == "local":  # a Slurm launch checks configs itself; its data lives where the jobs run
        _preflight(runner)
    tracker = None
    if not args.no_mlflow:
        from ..tracking import Tracker

        tracker = Tracker(out, args.tracking_uri)
    if launcher != "local":
        return _launch(args, spec, out, url, tracker)
    runner.tracker = tracker
    apply_threads(threads)
    runner.threads = threads  # an automatic choice is made again before each unit
    # N workers: this process plus N-1 children running the same command on the same storage.
    child_env = {**os.environ, THREADS_ENV: str(threads.n)}
    children = [subprocess.Popen(_worker_argv(args, out), env=child_env) for _ in range(args.workers - 1)]
    try:
        outcome = runner.run()
    finally:
        codes = [c.wait() for c in children]
    if any(codes):
        log.warning("worker exit codes: %s", codes)

    log.info("%s: %d units run here; results in %s", spec.name, outcome.ran, out / "results.csv")
    for desc, reason in outcome.failed:
        log.warning("failed: %s: %s", desc, reason)
    for ds, best in outcome.best.items():
        log.info("%s best (trial %d, val H %.2f): %s", ds, best["trial"], best["value"], best["params"])
    if args.worker_only:
        return 0  # failed units are recorded in the storage; the parent reports them
    return _tables(outcome.rows, bool(outcome.failed), out, spec, url, tracker)


def _tables(rows: list[dict[str, Any]], failed: bool, out: Path, spec: Any, url: str, tracker: Any) -> int:
    """Tables, figures and their MLflow artifacts from the study's rows (the parent's last step)."""
    from ..tables import build_table, render_markdown, write_tables

    if not rows:
        log.warning("no finished unit produced rows; no table")
        return 3 if failed else 0
    # Main tables list methods in the spec's order (rows of a rerun unit come last in results.csv).
    methods = {r.get("method") for r in rows}
    order = [m for m in spec.methods if m in methods] if spec.table == "main" else []
    table = build_table(rows, spec.table, reference=_study_reference(rows, spec), order=order)
    write_tables(table, out / "tables", "both", stem=f"{spec.table}_table")
    _figures(rows, out, spec, url)
    if tracker is not None:
        with tracker.study_run(spec):  # re-attach to the parent run to add tables and figures
            tracker.log_study_artifacts(out)
    sys.stdout.write(render_markdown(table))
    return 0


def _study_reference(rows: list[dict[str, Any]], spec: Any) -> str | None:
    """The spec's reference row for an ablation table; None (the table's default) when no row has it yet."""
    from ..tables import default_reference, valid_references

    if spec.table != "ablation" or spec.reference is None:
        return None
    variants = [str(r.get("variant", "") or "default") for r in rows]
    if spec.reference not in valid_references(variants):
        log.warning("reference variant %s has no finished rows; differences are to %s instead", spec.reference,
                    default_reference(variants))
        return None
    return str(spec.reference)


def _launch(args: argparse.Namespace, spec: Any, out: Path, url: str, tracker: Any) -> int:
    """``--launcher slurm|submitit-local``: N workers through submitit; wait; tables from the storage.

    Workers run ``ablate ... --worker-only`` (the local launcher's worker command) with absolute paths,
    since a job may start in another directory. This process trains nothing.
    """
    from .. import launcher as L
    from ..study import StudyRunner, check_configs

    flags = {"partition": args.partition, "account": args.account, "qos": args.qos, "constraint": args.constraint,
             "gpus_per_worker": args.gpus_per_worker, "cpus_per_worker": args.cpus_per_worker,
             "time_min": args.time, "mem_gb": args.mem_gb}
    from_spec = dict(spec.slurm)  # the spec's slurm: section, then the flags over it
    extra = {**from_spec.pop("extra", {}), **L.parse_slurm_options(args.slurm_option)}
    options = L.SlurmOptions(**{**from_spec, **{k: v for k, v in flags.items() if v is not None}}, extra=extra)
    check_configs(spec)  # a bad spec or preset fails here, before any job is queued
    out = out.resolve()
    spec_arg = Path(args.spec) if args.spec else None
    wargs = argparse.Namespace(**vars(args))
    if spec_arg is not None and spec_arg.is_file():
        wargs.spec = str(spec_arg.resolve())
    if args.data_root:
        wargs.data_root = str(Path(args.data_root).resolve())
    argv = _worker_argv(wargs, out)[3:]  # drop "python -m zsl_bench": the job calls main(argv)
    folder = Path(args.slurm_log).resolve() if args.slurm_log else out / "slurm"
    jobs = L.submit_workers(args.launcher, argv, args.workers, folder, options, name=f"zsl-{spec.name}")
    if args.no_wait:
        ids = ", ".join(str(j.job_id) for j in jobs)
        print(f"submitted {len(jobs)} workers ({ids}); logs in {folder}; when they are done, rerun this "
              "command without --no-wait (finished units are reused) to collect the rows and tables")
        return 0
    failed = L.wait(jobs)
    for job_id, reason in failed:
        log.warning("worker %s failed: %s (log: %s)", job_id, reason, folder)
    runner = StudyRunner(spec, out, storage=args.storage)
    rows = runner.collect("results")
    log.info("%s: %d workers done (%d failed); results in %s", spec.name, len(jobs), len(failed),
             out / "results.csv")
    if failed and not rows:
        return 3
    return _tables(rows, bool(failed), out, spec, url, tracker)


def _sim_or_spec(args: argparse.Namespace) -> None:
    """``ablate --sim SPEC.yaml``: argparse hands the spec to ``--sim`` (its preset is optional);
    read it as ``ablate SPEC.yaml --sim``. Any other unknown preset is refused."""
    from ..data.sim import PRESETS

    if args.sim is None or args.sim in PRESETS:
        return
    if args.spec is None and (args.sim.endswith((".yaml", ".yml")) or Path(args.sim).is_file()):
        log.info("reading 'ablate --sim %s' as 'ablate %s --sim' (simulated data, preset small)", args.sim, args.sim)
        args.spec, args.sim = args.sim, "small"
        return
    _check_sim_preset(args.sim, "--sim")


def _check_sim_preset(preset: str | None, where: str) -> None:
    from ..data.sim import PRESETS
    from ..errors import ConfigError

    if preset is not None and preset not in PRESETS:
        raise ConfigError(f"{where}: unknown preset {preset!r}; valid: {', '.join(PRESETS)} "
                          "(a spec goes first: zsl-bench ablate SPEC.yaml --sim [PRESET])")


def _preflight(runner: Any) -> None:
    """Configs resolve and every dataset loads with the features its methods need (simulated data
    is generated into the cache here), before the study writes anything."""
    from ..registry import METHODS
    from ..study import check_configs
    from ..study.spec import sim_settings

    spec = runner.spec
    check_configs(spec)
    needs = {(METHODS.get(m).input, METHODS.get(m).image_size, m) for m in spec.methods}
    for ds in spec.datasets:
        for data_seed in spec.data_seeds or (spec.sim_seed,):
            for sim in sim_settings(spec):  # every generator setting of the grid (sweep: sim.rho)
                data = runner.load_data(ds, data_seed, sim)
                for kind, size, m in sorted(needs, key=str):
                    data.choose_features(kind, size, what=f"{ds.upper()} {m}")


def _figures(rows: list[dict[str, Any]], out: Path, spec: Any, url: str) -> None:
    """Best-effort figures beside the tables: a figure that cannot be drawn is logged, not fatal."""
    from .. import plots
    from ..errors import ZSLError

    figs = out / "figures"
    bars = plots.plot_ablation if plots.is_ablation(rows) else plots.plot_results
    jobs: list[Callable[[], Any]] = [lambda: bars(rows, figs)]
    if any("=" in str(r.get("variant", "")) for r in rows):
        jobs.append(lambda: plots.plot_sensitivity(rows, figs))
    if len(plots.swept_keys(rows)) == 1:  # one numeric key swept: the metrics against it, with bands
        jobs.append(lambda: plots.plot_sweep(rows, figs))
    if (out / "curves").is_dir():
        jobs.append(lambda: plots.plot_us_curves(plots.load_curves(out / "curves"), figs))
    if spec.sim:
        jobs.append(lambda: plots.plot_study_attention(rows, out / "runs", figs))
    if spec.is_search:
        import functools

        for ds in spec.datasets:
            jobs.append(functools.partial(plots.plot_optuna, url, f"{spec.name}.{ds}.search", figs))
    for job in jobs:
        try:
            job()
        except ZSLError as exc:
            log.warning("figure skipped: %s", exc)


# ---------------------------------------------------------------- table / plot


def _no_attention_reason(rows: list[dict[str, Any]], results: list[str]) -> str:
    """Why ``plot --kind attention`` drew nothing, in one line."""
    from ..registry import METHODS

    sim = [r for r in rows if r.get("sim_preset")]
    if not sim:
        return "--kind attention: needs runs on simulated data (real data has no attention ground truth)"
    maps = sorted({str(r["method"]) for r in sim if str(r.get("method")) in METHODS
                   and getattr(METHODS.get(str(r["method"])), "input", "") == "regions"
                   and hasattr(METHODS.get(str(r["method"])), "attention_maps")})
    if not maps:
        return (f"--kind attention: no method in {', '.join(results)} has attention maps over regions "
                "(msdnpp, msdn, dazle, ... do)")
    dirs = ", ".join(str(Path(res).parent / "runs") for res in results)
    return (f"--kind attention: no checkpoint of a {'/'.join(maps)} run under {dirs} (<run_id>/ckpt); "
            "`zsl-bench run` removes checkpoints once a run's rows are written, `zsl-bench ablate` keeps "
            "them: e.g. zsl-bench ablate msdnpp_ablation.yaml --sim --seeds 0, then plot its results.csv")


def _rows(args: argparse.Namespace) -> list[dict[str, Any]]:
    from ..errors import ZSLError
    from ..study import read_study_rows

    if args.results and getattr(args, "tracking_uri", None):
        raise ZSLError("give RESULTS.csv files or --tracking-uri, not both")
    if getattr(args, "tracking_uri", None):
        from ..tracking import rows_from_mlflow

        return rows_from_mlflow(args.tracking_uri)
    if not args.results:
        raise ZSLError("no input: give RESULTS.csv files (or --tracking-uri for table)")
    return read_study_rows(args.results)


def cmd_table(args: argparse.Namespace) -> int:
    from ..errors import ZSLError
    from ..tables import build_table, load_published, render_markdown, write_tables

    rows = _rows(args)
    published = load_published(args.published) if args.published else None
    if args.reference is not None and args.kind != "ablation":
        raise ZSLError("--reference: only with --kind ablation (the main table has no reference row)")
    order = [o.strip() for o in args.order.split(",") if o.strip()] if args.order else []
    table = build_table(rows, args.kind, published, reference=args.reference, order=order)
    if args.out:
        for p in write_tables(table, args.out, args.format):
            log.info("wrote %s", p)
    sys.stdout.write(render_markdown(table))
    return 0


def cmd_power(args: argparse.Namespace) -> int:
    from ..errors import ConfigError
    from ..tables import power_report

    if not args.delta > 0:
        raise ConfigError(f"--delta: bad value {args.delta}; expected a number of points > 0")
    if not 0 < args.alpha < 1 or not 0 < args.power < 1:
        raise ConfigError(f"--alpha {args.alpha} / --power {args.power}: expected numbers between 0 and 1")
    sys.stdout.write(power_report(_rows(args), args.reference, args.delta, args.alpha, args.power))
    return 0


def _check_curves_cover_rows(rows: list[dict[str, Any]], curves: list[Path]) -> None:
    """Every run whose rows hold a test AUSUC has ``<curves>/<run_id>.npz`` in one of the curve
    folders (no figure from 2 of 3 seeds)."""
    from ..errors import DataError

    have = {p.stem for d in curves for p in d.glob("*.npz") if not p.name.startswith(".")}
    want = sorted({str(r["run_id"]) for r in rows if r.get("metric") == "ausuc"})
    missing = [r for r in want if r not in have]
    if missing:
        where = ", ".join(map(str, curves))
        raise DataError(f"{where}: no curve file for {len(missing)} of the {len(want)} runs in the results, e.g. "
                        f"{missing[0]}.npz; give the curves folder of the same study (<out>/curves)")


def cmd_plot(args: argparse.Namespace) -> int:
    from .. import metrics, plots
    from ..errors import ZSLError
    from ..study import read_study_rows

    if args.metric not in metrics.names("table"):
        raise ZSLError(f"--metric: unknown metric {args.metric!r}; valid: {', '.join(metrics.names('table'))}")
    made: list[Path] = []
    want = {args.kind} if args.kind != "all" else {"bars", "sensitivity", "curves", "optuna"}
    if args.x is not None and args.kind not in ("sweep", "all"):
        raise ZSLError(f"--x: only with --kind sweep (the x axis of the sweep figure), not --kind {args.kind}")
    if args.kind in ("results", "ablation", "sensitivity", "sweep", "attention") and not args.results:
        raise ZSLError(f"--kind {args.kind} needs RESULTS.csv files")
    if args.kind == "curves" and not args.curves:
        raise ZSLError("--kind curves needs --curves DIR (a study's <out>/curves)")
    if args.kind == "optuna" and not (args.storage and args.study):
        raise ZSLError("--kind optuna needs --storage URL and --study NAME")
    if bool(args.storage) != bool(args.study):
        raise ZSLError("--storage and --study go together")
    if args.results:
        rows = _rows(args)
        if "bars" in want:  # what the rows hold: several variants of a method, or one per method
            want.add("ablation" if plots.is_ablation(rows) else "results")
        if "ablation" in want:
            made += plots.plot_ablation(rows, args.out, args.metric)
        if "results" in want:
            made += plots.plot_results(rows, args.out, args.metric)
        if "sensitivity" in want:
            try:
                made += plots.plot_sensitivity(rows, args.out, args.metric)
            except ZSLError as exc:
                if args.kind == "sensitivity":
                    raise
                log.info("no sensitivity figure: %s", exc)
        if args.kind == "sweep" or (args.kind == "all" and (args.x or len(plots.swept_keys(rows)) == 1)):
            made += plots.plot_sweep(rows, args.out, args.x)
        if "attention" in want:
            before = len(made)
            for res in args.results:
                made += plots.plot_study_attention(read_study_rows([res]), Path(res).parent / "runs", args.out)
            if len(made) == before:
                raise ZSLError(_no_attention_reason(rows, args.results))
        if args.kind == "all" and not args.curves:  # a run's or study's curves beside its rows
            for res in args.results:
                if any((Path(res).parent / "curves").glob("*.npz")):
                    made += plots.plot_us_curves(plots.load_curves(Path(res).parent / "curves"), args.out)
    if args.curves and "curves" in want:
        curves = [c for d in args.curves for c in plots.load_curves(d)]
        if args.results:
            _check_curves_cover_rows(read_study_rows(args.results), [Path(d) for d in args.curves])
        made += plots.plot_us_curves(curves, args.out)
    if args.storage and "optuna" in want:
        made += plots.plot_optuna(args.storage, args.study, args.out)
    if not made:
        raise ZSLError("nothing to plot: give RESULTS.csv, --curves DIR or --storage/--study")
    for p in made:
        sys.stdout.write(f"{p}\n")
    return 0

