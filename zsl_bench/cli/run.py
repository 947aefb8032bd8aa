"""``zsl-bench run METHOD``: train and evaluate one method on datasets × seeds, print a table.

A run is a one-method study (``zsl_bench.study``): one unit per (dataset, seed), variant
``default``, run by the same :class:`~zsl_bench.study.StudyRunner` with the same resume semantics
(an Optuna work queue in ``<out>/optuna.db``). Rows go to ``<out>/results.csv`` (appended
under a lock after each unit), U-S curves to ``<out>/curves/``. Rerunning with the same ``--out``
skips finished units and resumes an interrupted one from its last checkpoint; a unit's checkpoints
are removed once its rows are written.

``<out>/config.yaml`` (the resolved config of each dataset) is written only when the run ends and
some of its units have rows, so it always describes rows in ``results.csv``: a rerun that fails
(a bad value, a config drift, every unit failing) or is killed leaves the previous one as it was.
When a finished rerun resolves another config, the previous file is kept as
``config.previous-<n>.yaml``. Every row also carries its full config (column ``config``).
"""

from __future__ import annotations

import argparse
import logging
from datetime import datetime
from pathlib import Path
from typing import Any

from ..fileio import write_text_atomic

log = logging.getLogger(__name__)

EPILOG = """examples:
  zsl-bench run eszsl --datasets cub --sim tiny --seeds 0          seconds: tiny simulated CUB
  zsl-bench run ale --datasets all --sim                          simulated benchmark (small preset)
  zsl-bench run msdn --datasets cub,sun --data-root DATA           real features
  zsl-bench run msdn --datasets cub --sim --protocol test-oracle   papers' protocol (labelled)
  zsl-bench run ale --datasets cub --sim --set train.lr=0.1 --set method.margin=0.5
  zsl-bench run msdn --datasets cub --data-root DATA --preset paper   the paper's row (docs/REPRODUCE.md)
"""
PAPER_HELP = ("paper: the official schedule exactly: test-oracle selection (labelled), fp32, the paper's "
              "features (res101.mat for pooled methods, region maps at the paper's image size), the method's "
              "presets (official epochs and hyperparameters); real data only")
# --set keys that change where or how fast a run computes, not what it computes: allowed with --preset paper.
PAPER_FREE_KEYS = {("train", "device"), ("train", "eval_batch_size")}



def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run", help="train and evaluate a method on datasets x seeds",
        description="Train and evaluate METHOD on each dataset and seed under one selection protocol; "
                    "append long-format rows to <out>/results.csv and print mean ± std per dataset.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("method", metavar="METHOD", help="registered method (zsl-bench ls methods)")
    p.add_argument("--datasets", required=True, metavar="LIST", help="'all' or a comma list: cub,sun,awa2,flo")
    p.add_argument("--sim", nargs="?", const="small", default=None, metavar="PRESET",
                   help="use the simulated benchmark (preset tiny|small|full; default small)")
    p.add_argument("--sim-seed", type=int, default=0, metavar="S", help="seed of the simulated data (default 0)")
    p.add_argument("--seeds", default="0,1,2", metavar="LIST", help="training seeds (default 0,1,2)")
    p.add_argument("--protocol", choices=("val", "test-oracle"), default=None,
                   help="model selection: val (default) or test-oracle (labelled in every output)")
    p.add_argument("--preset", choices=("paper",), default=None, help=PAPER_HELP)
    p.add_argument("--epochs", type=int, default=None, metavar="N", help="shortcut for --set train.epochs=N")
    p.add_argument("--config", default=None, metavar="FILE.yaml", help="config file (sections method/train/eval)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", dest="overrides",
                   help="override one config value (repeatable), e.g. train.lr=3e-4")
    p.add_argument("--out", default=None, metavar="DIR", help="output directory (default runs/<time>-<method>)")
    p.add_argument("--data-root", default=None, metavar="DIR", help="real data root (default $ZSL_BENCH_DATA)")
    p.add_argument("--device", default=None, metavar="D", help="auto | cpu | cuda | cuda:N (train.device)")
    p.add_argument("--tracking-uri", default=None, metavar="URI",
                   help="MLflow tracking URI (default sqlite:///<out>/mlflow.db)")
    p.add_argument("--no-mlflow", action="store_true", help="do not log to MLflow")
    p.add_argument("--rerun-changed", action="store_true",
                   help="rerun finished seeds whose config or simulated data the code now resolves differently "
                        "(a method preset, default or default generator changed); without it such seeds stop "
                        "the run with an error")
    add_speed_flags(p)
    p.set_defaults(func=cmd_run)


def add_speed_flags(p: argparse.ArgumentParser) -> None:
    """--threads, --no-progress, --dry-run: shared by ``run`` and ``ablate``."""
    from ..progress import NO_PROGRESS_ENV
    from ..threads import MAX_AUTO_THREADS, THREADS_ENV

    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help=f"PyTorch intra-op threads (default: ${THREADS_ENV}, else $OMP_NUM_THREADS, else automatic: "
                        "the CPUs the affinity mask and cgroup quota allow, minus the 1-min load average, "
                        f"at least 1, at most {MAX_AUTO_THREADS}); results do not depend on it")
    p.add_argument("--no-progress", action="store_true",
                   help=f"no progress bars (also ${NO_PROGRESS_ENV}=1; bars are drawn only when stderr is a "
                        "terminal); the plan and one line per finished unit are still logged")
    p.add_argument("--dry-run", action="store_true",
                   help="list the planned units (and which are done or will resume) and exit; writes nothing")


def choose_threads(args: argparse.Namespace) -> Any:
    """The thread choice of ``--threads`` / environment / automatic rule (validated, not yet applied)."""
    from ..threads import choose_threads as choose

    return choose(args.threads)


def cmd_run(args: argparse.Namespace) -> int:
    from .. import config as C
    from ..data.datasets import parse_dataset_list
    from ..progress import progress_enabled

    # Arguments and data first, without torch: a typo or missing data fails in a second.
    method = args.method.lower()
    datasets = parse_dataset_list(args.datasets)
    seeds = C.parse_seeds(args.seeds, "--seeds")
    if args.sim is not None:
        from ..data.sim import PRESETS

        if args.sim not in PRESETS:
            raise C.ConfigError(f"--sim: unknown preset {args.sim!r}; valid: {', '.join(PRESETS)}")
    if args.preset == "paper":
        check_paper_flags(args)
    threads = choose_threads(args)
    file_cfg = C.merge(C.load_yaml(args.config)) if args.config else {}
    from ..data.loader import load_dataset

    def load(ds: str, sim: dict[str, Any] | None = None) -> object:
        return load_dataset(ds, args.data_root, sim_preset=args.sim, sim_seed=args.sim_seed, sim_overrides=sim)

    # Real data is checked before the training stack is imported; simulated data (generated if
    # missing, with log lines) after the method, so that a bad method is the only line printed.
    data = {ds: load(ds) for ds in datasets} if args.sim is None and (not args.dry_run or args.preset) else {}

    from ..registry import METHODS  # the training stack (torch) from here on
    from ..runner import RunSpec, resolve_config
    from ..study import StudyRunner, StudySpec

    method_cls = METHODS.get(args.method)
    flags: dict[str, Any] = {"train": {}}
    if args.epochs is not None:
        flags["train"]["epochs"] = args.epochs
    if args.device is not None:
        flags["train"]["device"] = args.device
    cli = C.merge(C.parse_overrides(args.overrides), flags)
    protocol = args.protocol or cli.get("eval", {}).get("protocol") or file_cfg.get("eval", {}).get("protocol") or "val"
    variant, grid = "default", None
    if args.preset == "paper":
        from ..runner import PAPER_OVERRIDES, PAPER_VARIANT
        from ..study.spec import GridSpec

        protocol, variant = "test-oracle", PAPER_VARIANT
        grid = GridSpec(variants={PAPER_VARIANT: PAPER_OVERRIDES})
    # One method, one variant: the config file and then the flags on top, as the study's base.
    spec = StudySpec(name=f"run-{method}", methods=(method,), datasets=tuple(datasets), seeds=seeds,
                     protocol=protocol, sim=args.sim, sim_seed=args.sim_seed, data_root=args.data_root,
                     base=C.merge(file_cfg, cli), grid=grid, source="zsl-bench run")

    # Resolve every config before training anything: a bad value fails in a second, not after a run.
    configs = {ds: resolve_config(RunSpec(method=method, dataset=ds, variant=variant, protocol=protocol,
                                          overrides=C.merge(spec.base, (grid.variants or {}).get(variant) if grid
                                                            else None), sim_preset=args.sim))
               for ds in datasets}
    if args.sim is not None and not args.dry_run:  # generated with the config's sim section (--set sim.rho=...)
        data = {ds: load(ds, configs[ds].sim.overrides()) for ds in datasets}
    if args.preset == "paper":  # the paper's features, or one line saying which are missing
        paper_lines = [paper_plan(method_cls, ds, data[ds], configs[ds]) for ds in datasets]
    out = C.check_out_dir(Path(args.out) if args.out else Path("runs") / f"{datetime.now():%Y%m%d-%H%M%S}-{method}")
    runner = StudyRunner(spec, out, progress=progress_enabled(args.no_progress), rerun_changed=args.rerun_changed,
                         keep_checkpoints=False)
    if args.dry_run:
        if args.preset == "paper":
            print("\n".join(paper_lines))
        print(runner.plan().listing())
        print(f"dry run: nothing written; output would go to {out}")
        return 0
    # Every dataset's features for this method, before writing anything.
    for ds, d in data.items():
        runner.use_data(ds, d, sim=configs[ds].sim.overrides()).choose_features(method_cls.input, method_cls.image_size,
                                               what=f"{ds.upper()} {method_cls.name}")
    from ..threads import apply_threads

    apply_threads(threads)
    runner.threads = threads  # an automatic choice is made again before each unit
    out.mkdir(parents=True, exist_ok=True)
    if not args.no_mlflow:
        from ..tracking import Tracker

        runner.tracker = Tracker(out, args.tracking_uri)
    outcome = runner.run()  # seeds already finished in <out> are reused, not run again
    for desc, reason in outcome.failed:
        log.warning("failed: %s: %s", desc, reason)
    if outcome.rows:  # only a config that some rows were trained from
        write_run_config(out / "config.yaml", {
            "method": method, "protocol": protocol, "seeds": list(seeds),
            "data": {"source": "simulated", "sim_preset": args.sim, "sim_seed": args.sim_seed} if args.sim
            else {"source": "real", "data_root": args.data_root},
            **({"preset": "paper"} if args.preset == "paper" else {}),
            "configs": {ds: cfg.as_dict() for ds, cfg in configs.items()},
        })
    print(format_table(outcome.rows, method=method, datasets=datasets, seeds=list(seeds), protocol=protocol,
                       sim=args.sim, sim_seed=args.sim_seed))
    print(f"\nrows: {runner.results_csv}\nconfig: {out / 'config.yaml'}")
    return 3 if outcome.failed else 0


def check_paper_flags(args: argparse.Namespace) -> None:
    """``--preset paper`` runs the official schedule as it is: flags that would change it are refused."""
    from .. import config as C

    if args.sim is not None:
        raise C.ConfigError("--preset paper: simulated data has no paper row; give real features (--data-root, "
                            "docs/REPRODUCE.md), or drop --preset paper to run the simulated benchmark")
    if args.protocol == "val":
        raise C.ConfigError("--preset paper selects as the papers do, on test (protocol test-oracle, labelled); "
                            "drop --protocol val")
    changed = [flag for flag, given in (("--epochs", args.epochs is not None), ("--config", args.config))
               if given]
    changed += [f"--set {k}" for k in (f"{sec}.{key}" for sec, vals in C.parse_overrides(args.overrides).items()
                                       for key in vals if (sec, key) not in PAPER_FREE_KEYS)]
    if changed:
        raise C.ConfigError(f"--preset paper runs the official schedule as is; {', '.join(changed)} would change "
                            "it (only --device and --set train.eval_batch_size may be given); drop them, or run "
                            "without --preset paper")


def paper_plan(method_cls: Any, dataset: str, data: Any, cfg: Any) -> str:
    """One line of what ``--preset paper`` runs on ``dataset``; raises when its features are absent."""
    from ..protocol import protocol_label

    _, features = data.choose_features(method_cls.input, method_cls.image_size, paper=True)
    train = cfg.train
    epochs = "fit() once (its own schedule)" if method_cls.fits_closed_form else f"{train.epochs} epochs"
    return (f"preset paper: {method_cls.name} on {dataset}: features {features}; {epochs}; precision "
            f"{train.precision}; {protocol_label('test-oracle')}")


def write_run_config(path: Path, obj: dict[str, Any]) -> Path:
    """Write ``obj`` as ``path`` (atomically); a different previous file is kept as ``config.previous-<n>.yaml``."""
    import os

    import yaml

    from ..fileio import file_lock

    text = yaml.safe_dump(obj, sort_keys=False, allow_unicode=True)
    with file_lock(path.with_name(path.name + ".lock")):  # two runs finishing together keep both versions
        try:
            old = path.read_text()
        except (FileNotFoundError, UnicodeDecodeError):
            old = None
        if old == text:
            return path
        if old is not None:
            n = 1 + max((int(q.name.split("-")[-1].split(".")[0]) for q in path.parent.glob("config.previous-*.yaml")
                         if q.name.split("-")[-1].split(".")[0].isdigit()), default=0)
            os.link(path, path.with_name(f"config.previous-{n}.yaml"))
        return write_text_atomic(path, text)


# ---------------------------------------------------------------- the table


def format_table(rows: list[dict[str, Any]], *, method: str, datasets: list[str], seeds: list[int],
                 protocol: str, sim: str | None, sim_seed: int) -> str:
    """Per dataset: mean ± std over seeds of ZSL acc, U, S, H, γ, AUSUC (from the run's result rows)."""
    import numpy as np

    from .. import metrics
    from ..protocol import protocol_label

    source = f"simulated data (preset {sim}, data seed {sim_seed})" if sim else "real data"
    label = protocol_label(protocol) or f"{protocol} protocol (selection on validation data)"
    title = f"{method} — {source} — {label} — mean ± std over {len(seeds)} seed(s)"
    selected = {ds: [r for r in rows if r["method"] == method and r["dataset"] == ds and int(r["seed"]) in seeds]
                for ds in datasets}
    # Extras (attention hit rates on simulated data) get columns only when some row has them.
    columns = metrics.columns("run", {r["metric"] for rs in selected.values() for r in rs})
    # An extra that is 0.0 in every row (context reliance on data drawn without a confounder) is left
    # out, as in the paper tables, and a line under the table says so.
    zero = metrics.zero_extras(columns, (r for rs in selected.values() for r in rs))
    columns = [s for s in columns if s not in zero]
    header = ["dataset"] + [s.label for s in columns]
    lines = [header]
    for ds in datasets:
        mine = selected[ds]
        cells = [ds]
        for spec in columns:
            per_seed = {int(r["seed"]): float(r["value"]) for r in mine if r["metric"] == spec.name}
            vals = np.array(list(per_seed.values()))
            if len(vals) == 0:
                cells.append("–")
            elif len(vals) == 1:
                cells.append(f"{vals[0]:{spec.fmt}}")
            else:
                cells.append(f"{vals.mean():{spec.fmt}} ± {vals.std(ddof=1):{spec.fmt}}")
        lines.append(cells)
    widths = [max(len(row[i]) for row in lines) for i in range(len(header))]
    body = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in lines]
    note = "".join(f"\n{n}" for n in dict.fromkeys(s.note for s in columns if s.note))
    if zero:
        note += f"\nnot shown: {', '.join(s.label for s in zero)} (0.0 in every row)"
    return "\n".join([title, body[0], "  ".join("-" * w for w in widths), *body[1:]]) + note
