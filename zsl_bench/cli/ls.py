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
    from ..registry import DATASETS, METHODS, METRICS

    rows: list[tuple[Any, ...]]
    if args.what == "methods":
        rows = [(n, c.family, c.input, c.paper or c.description) for n, c in METHODS.items()]
        # A plug-in whose import failed is listed (with why) rather than silently missing.
        rows += [(n, "BROKEN", "-", reason) for n, reason in METHODS.broken().items()]
        _table(["method", "family", "input", "paper"], rows)
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


def _table(header: list[str], rows: Sequence[Sequence[Any]]) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    for r in [header, *rows]:
        print("  ".join(str(x).ljust(w) for x, w in zip(r, widths)).rstrip())
