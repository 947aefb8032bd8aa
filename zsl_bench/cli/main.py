"""``zsl-bench``: entry point. Parses arguments, dispatches, turns user errors into one line."""

from __future__ import annotations

import argparse
import logging
import sys

from .. import __version__

EPILOG = """examples:
  zsl-bench run msdnpp --datasets all --sim     train + evaluate on the simulated benchmark
  zsl-bench ls methods                          list registered methods
  zsl-bench data info cub --data-root DIR       summarise a dataset
  zsl-bench evaluate scores.npz --json          evaluate your own score matrix
  zsl-bench ablate benchmarks/msdnpp_ablation.yaml --sim
"""


def build_parser() -> argparse.ArgumentParser:
    from . import data, evaluate, ls, realdata, run, sim, study

    parser = argparse.ArgumentParser(
        prog="zsl-bench", description="Benchmark and ablation harness for zero-shot learning.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"zsl-bench {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv: debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    ls.register(sub)
    data_p = sub.add_parser("data", help="dataset tools: info, verify, sim, download, extract, import")
    data_sub = data_p.add_subparsers(dest="data_command", metavar="ACTION")
    data_sub.required = True
    data.register(data_sub)
    sim.register(data_sub)
    realdata.register(data_sub)
    run.register(sub)
    evaluate.register(sub)
    study.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from ..errors import ZSLError

    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2) if args.verbose else logging.INFO
    logging.basicConfig(level=level, format="%(message)s", stream=sys.stderr)
    try:
        if getattr(args, "data_root", None):  # every command taking --data-root: refuse a file at once
            from ..data.root import data_root

            data_root(args.data_root)
        rc = args.func(args)
    except ZSLError as exc:
        print(f"zsl-bench: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except PermissionError as exc:  # an unreadable data root, dataset directory or file
        print(f"zsl-bench: error: {exc.filename or exc}: permission denied; make it readable "
              "(and writable where output goes) by this user", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("zsl-bench: interrupted", file=sys.stderr)
        return 130
    return int(rc or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
