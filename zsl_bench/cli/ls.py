"""``zsl-bench ls methods|datasets|metrics``."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ls", help="list registered methods, datasets or metrics",
                       description="List what is registered, one line each.")
    p.add_argument("what", choices=["methods", "datasets", "metrics"])
    p.set_defaults(func=cmd_ls)


def cmd_ls(args: argparse.Namespace) -> int:
    from ..registry import DATASETS, METRICS

    rows: list[tuple[Any, ...]]
    if args.what == "methods":
        _table(["method", "family", "input", "paper"], method_rows())
    elif args.what == "datasets":
        rows = [(n, s.dirname, f"{s.seen}/{s.unseen}", str(s.semantic_dim), s.description)
                for n, s in DATASETS.items()]
        _table(["dataset", "dir", "seen/unseen", "sem. dim", "description"], rows)
    else:
        from ..metrics import PLACES

        rows = [(n, s.label, s.direction, ",".join(p for p in PLACES if p in s.shown), s.description)
                for n, s in METRICS.items()]
        _table(["metric", "label", "best", "shown", "description"], rows)
    return 0


def method_rows() -> list[tuple[str, str, str, str]]:
    """One row per method: (key, family, input, paper or description), plug-ins included.

    Without installed plug-ins the rows are read from the zoo's source (no torch import, see
    ``zsl_bench.methodinfo``). Plug-ins must be imported to be listed (and a broken one is only
    known by importing it); their modules import torch through the contract anyway, so then the whole
    registry is loaded and read.
    """
    from importlib.metadata import entry_points

    from ..methodinfo import StaticReadError, builtin_methods
    from ..registry import ENTRY_POINT_GROUP, METHODS

    if not list(entry_points(group=ENTRY_POINT_GROUP)):
        try:
            return [(i.key, i.family, i.input, i.summary) for i in builtin_methods()]
        except StaticReadError as exc:
            import logging

            logging.getLogger(__name__).debug("reading the zoo statically failed (%s); importing it", exc)
    rows = [(n, c.family, c.input, c.paper or c.description) for n, c in METHODS.items()]
    # A plug-in whose import failed is listed (with why) rather than silently missing.
    rows += [(n, "BROKEN", "-", reason) for n, reason in METHODS.broken().items()]
    return rows


def _table(header: list[str], rows: Sequence[Sequence[Any]]) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    for r in [header, *rows]:
        print("  ".join(str(x).ljust(w) for x, w in zip(r, widths)).rstrip())
