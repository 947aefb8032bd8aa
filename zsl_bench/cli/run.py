"""``zsl-bench run METHOD``: train and evaluate one method on datasets × seeds, print a table.

Rows go to ``<out>/results.csv`` (appended atomically after each run) and the resolved config of
each dataset to ``<out>/config.yaml``. Rerunning with the same ``--out`` skips runs whose rows are
already there and resumes an interrupted run from its last checkpoint.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import shutil
from collections.abc import Iterator
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
"""

TABLE_METRICS = (("zsl_acc", "ZSL acc"), ("u", "U"), ("s", "S"), ("h", "H"), ("gamma", "γ"), ("ausuc", "AUSUC"))
EXTRA_METRICS = {"attention_hit_rate_avca": "attn hit AVCA", "attention_hit_rate_vaca": "attn hit VACA"}


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
    p.set_defaults(func=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    from .. import config as C
    from ..data.datasets import parse_dataset_list
    from ..registry import METHODS, load_all
    from ..results import append_rows, read_rows
    from ..runner import RunSpec, resolve_config, run_one
    from ..study import write_curve

    load_all()
    method_cls = METHODS.get(args.method)  # an unknown method is a one-line error before anything else
    datasets = parse_dataset_list(args.datasets)
    seeds = list(C.parse_seeds(args.seeds))
    if args.sim is not None:
        from ..data.sim import PRESETS

        if args.sim not in PRESETS:
            raise C.ConfigError(f"--sim: unknown preset {args.sim!r}; valid: {', '.join(PRESETS)}")
    file_cfg = C.merge(C.load_yaml(args.config)) if args.config else {}
    flags: dict[str, Any] = {"train": {}}
    if args.epochs is not None:
        flags["train"]["epochs"] = args.epochs
    if args.device is not None:
        flags["train"]["device"] = args.device
    cli = C.merge(C.parse_overrides(args.overrides), flags)
    protocol = args.protocol or cli.get("eval", {}).get("protocol") or file_cfg.get("eval", {}).get("protocol") or "val"

    specs = {(ds, seed): RunSpec(method=args.method, dataset=ds, seed=seed, overrides=file_cfg, protocol=protocol,
                                 sim_preset=args.sim, sim_seed=args.sim_seed, data_root=args.data_root)
             for ds in datasets for seed in seeds}
    # Resolve every config before training anything: a bad value fails in a second, not after a run.
    configs = {ds: resolve_config(specs[(ds, seeds[0])], cli) for ds in datasets}
    # Load (or generate) every dataset and check its features before writing anything.
    from ..data.loader import load_dataset

    datas = {}
    for ds in datasets:
        datas[ds] = load_dataset(ds, args.data_root, sim_preset=args.sim, sim_seed=args.sim_seed)
        datas[ds].require_features(method_cls.input)
    out = Path(args.out) if args.out else Path("runs") / f"{datetime.now():%Y%m%d-%H%M%S}-{args.method}"
    out.mkdir(parents=True, exist_ok=True)
    _write_yaml(out / "config.yaml", {
        "method": args.method, "protocol": protocol, "seeds": seeds,
        "data": {"source": "simulated", "sim_preset": args.sim, "sim_seed": args.sim_seed} if args.sim
        else {"source": "real", "data_root": args.data_root},
        "configs": {ds: cfg.as_dict() for ds, cfg in configs.items()},
    })
    results = out / "results.csv"

    with _tracking(out, f"run {args.method}", {"method": args.method, "datasets": datasets, "seeds": seeds,
                                              "protocol": protocol, "sim": args.sim or ""},
                   args.tracking_uri, not args.no_mlflow) as track:
        for ds in datasets:
            done = _done_seeds(read_rows(results), args.method, ds, protocol, configs[ds].digest(), args.sim,
                               args.sim_seed)
            todo = [s for s in seeds if s not in done]
            if len(todo) < len(seeds):
                log.info("%s: seeds %s already in %s, skipped", ds, sorted(set(seeds) - set(todo)), results)
            for seed in todo:
                spec = specs[(ds, seed)]
                run_dir = out / "runs" / f"{ds}-seed{seed}"
                with track(f"{args.method}/{ds}/s{seed}") as reporter:
                    result = run_one(spec, out_dir=run_dir, cli_overrides=cli, reporter=reporter,
                                    data=datas[ds])
                    append_rows(results, result.rows)
                    write_curve(out / "curves" / f"{args.method}-{ds}-seed{seed}.npz", result,
                                method=args.method, variant="default", dataset=ds, seed=seed,
                                protocol=protocol, source="simulated" if args.sim else "real")
                    if reporter is not None:
                        track.log_result(reporter, result)
                # The rows are the run's record now; its checkpoints would only be skipped on a rerun.
                shutil.rmtree(run_dir / "ckpt", ignore_errors=True)
    print(format_table(read_rows(results), method=args.method, datasets=datasets, seeds=seeds, protocol=protocol,
                       hashes={ds: configs[ds].digest() for ds in datasets}, sim=args.sim, sim_seed=args.sim_seed))
    print(f"\nrows: {results}\nconfig: {out / 'config.yaml'}")
    return 0


# ---------------------------------------------------------------- hooks and files


@contextlib.contextmanager
def _tracking(out: Path, name: str, params: dict[str, Any], tracking_uri: str | None,
              enabled: bool) -> Iterator[Any]:
    """A parent MLflow run for this command (``<out>/mlflow.db`` unless ``--tracking-uri``).

    Yields ``track``: ``with track(child_name) as reporter`` opens a child run whose reporter gets
    ``on_epoch`` from the engine; ``track.log_result(reporter, result)`` records the finished run.
    With ``--no-mlflow`` every run gets no reporter.
    """
    if not enabled:
        yield _NoTracking()
        return
    from .. import tracking

    with tracking.command_run(out, name, tracking_uri=tracking_uri, params=params) as parent:

        class _Track:
            def __call__(self, child: str) -> contextlib.AbstractContextManager[Any]:
                return tracking.make_reporter(parent, child)

            def log_result(self, reporter: Any, result: Any) -> None:
                parent.log_result(reporter, result)

        yield _Track()


class _NoTracking:
    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        yield None

    def log_result(self, reporter: Any, result: Any) -> None:
        pass


def _write_yaml(path: Path, obj: dict[str, Any]) -> None:
    import yaml

    write_text_atomic(path, yaml.safe_dump(obj, sort_keys=False, allow_unicode=True))


def _matches(r: dict[str, str], method: str, ds: str, protocol: str, digest: str, sim: str | None,
             sim_seed: int) -> bool:
    same_data = (r["source"] == "simulated" and r["sim_preset"] == sim and r["data_seed"] == str(sim_seed)) \
        if sim else r["source"] == "real"
    return (r["method"] == method and r["dataset"] == ds and r["protocol"] == protocol
            and r["config_hash"] == digest and same_data)


def _done_seeds(rows: list[dict[str, str]], method: str, ds: str, protocol: str, digest: str,
                sim: str | None, sim_seed: int) -> set[int]:
    return {int(r["seed"]) for r in rows if _matches(r, method, ds, protocol, digest, sim, sim_seed)}


# ---------------------------------------------------------------- the table


def format_table(rows: list[dict[str, str]], *, method: str, datasets: list[str], seeds: list[int],
                 protocol: str, hashes: dict[str, str], sim: str | None, sim_seed: int) -> str:
    """Per dataset: mean ± std over seeds of ZSL acc, U, S, H, γ, AUSUC (from result rows)."""
    import numpy as np

    from ..protocol import protocol_label

    source = f"simulated data (preset {sim}, data seed {sim_seed})" if sim else "real data"
    label = protocol_label(protocol) or f"{protocol} protocol (selection on validation data)"
    title = f"{method} — {source} — {label} — mean ± std over {len(seeds)} seed(s)"
    selected = {ds: [r for r in rows if _matches(r, method, ds, protocol, hashes[ds], sim, sim_seed)
                     and int(r["seed"]) in seeds] for ds in datasets}
    # Extra metrics (attention hit rates against the simulated ground truth) get columns when present.
    extra = sorted({r["metric"] for rs in selected.values() for r in rs if r["metric"] in EXTRA_METRICS},
                   key=list(EXTRA_METRICS).index)
    columns = list(TABLE_METRICS) + [(k, EXTRA_METRICS[k]) for k in extra]
    header = ["dataset"] + [name for _, name in columns]
    lines = [header]
    for ds in datasets:
        mine = selected[ds]
        cells = [ds]
        for key, _ in columns:
            # The latest row per seed counts (a rerun with the same config appends, never edits).
            per_seed = {int(r["seed"]): float(r["value"]) for r in mine if r["metric"] == key}
            vals = np.array(list(per_seed.values()))
            fmt = ".3f" if key == "gamma" else ".2f"  # γ lives on the score scale, often below 0.01
            if len(vals) == 0:
                cells.append("–")
            elif len(vals) == 1:
                cells.append(f"{vals[0]:{fmt}}")
            else:
                cells.append(f"{vals.mean():{fmt}} ± {vals.std(ddof=1):{fmt}}")
        lines.append(cells)
    widths = [max(len(row[i]) for row in lines) for i in range(len(header))]
    body = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in lines]
    note = ("\nattn hit: % of (image, visible attribute) pairs whose attention peaks within one cell of the "
            "attribute's true part (simulated ground truth)") if extra else ""
    return "\n".join([title, body[0], "  ".join("-" * w for w in widths), *body[1:]]) + note
