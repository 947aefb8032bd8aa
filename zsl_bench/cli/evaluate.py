"""``zsl-bench evaluate SCORES.npz``: the harness's protocol applied to your own score matrix."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

# .npz key -> argument of zsl_bench.protocol.evaluate_scores
NPZ_KEYS = {
    "scores": "scores", "labels": "labels", "seen_classes": "seen_classes",
    "unseen_classes": "unseen_classes", "test_seen_loc": "seen_idx", "test_unseen_loc": "unseen_idx",
}

EPILOG = """The file (numpy .npz) holds:
  scores [N, K]            class scores, any scale (higher = more likely)
  labels [N]               0-based class of each row
  seen_classes, unseen_classes   0-based class indices
  test_seen_loc, test_unseen_loc 0-based row indices of the seen / unseen test rows

examples:
  zsl-bench evaluate scores.npz                 ZSL acc, U, S, H at gamma 0, best gamma, AUSUC
  zsl-bench evaluate scores.npz --gamma 2       calibrated stacking: score - 2 on seen classes
  zsl-bench evaluate scores.npz --json          one JSON object (percent floats)

The numbers are the metrics registered for evaluations (zsl-bench ls metrics).
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate", help="evaluate a score matrix (.npz): ZSL acc, U, S, H, best gamma, AUSUC",
        description="Evaluate a score matrix with the harness's protocol: per-class accuracies, "
                    "calibrated stacking at --gamma, the H-maximising gamma and the exact AUSUC.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("scores_file", metavar="SCORES.npz", help="the score file (keys below)")
    p.add_argument("--gamma", type=float, default=0.0,
                   help="calibration subtracted from seen-class scores (default 0)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.set_defaults(func=cmd_evaluate)


def _load(path: Path) -> dict[str, Any]:
    """Read the six arrays of a score file; a missing or unreadable file or key raises DataError."""
    import zipfile

    import numpy as np

    from ..errors import DataError

    if not path.is_file():
        raise DataError(f"{path}: no such file (expected a .npz with keys {', '.join(NPZ_KEYS)})")
    if not zipfile.is_zipfile(path):
        raise DataError(f"{path}: not a .npz archive (write one with numpy.savez)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in NPZ_KEYS if k not in npz.files]
            if missing:
                raise DataError(f"{path}: missing key {missing[0]!r} (needs {', '.join(NPZ_KEYS)}; "
                                f"found {', '.join(npz.files) or 'none'})")
            return {k: npz[k] for k in NPZ_KEYS}
    except DataError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"{path}: not a readable .npz file of arrays ({exc})") from None


def cmd_evaluate(args: argparse.Namespace) -> int:
    import json

    from .. import metrics
    from ..errors import ConfigError
    from ..protocol import check_inputs

    if not math.isfinite(args.gamma):
        raise ConfigError(f"--gamma must be a finite number, got {args.gamma}")
    path = Path(args.scores_file)
    arrays = _load(path)
    checked = check_inputs(*(arrays[k] for k in NPZ_KEYS), names={v: k for k, v in NPZ_KEYS.items()},
                           source=str(path))
    res = metrics.evaluate(metrics.Evaluation(*checked, gamma=args.gamma))
    if args.json:
        print(json.dumps(res, allow_nan=False))
        return 0
    n_s, n_u = len(checked[4]), len(checked[5])
    print(f"{path}: {n_s} seen-test rows ({len(checked[2])} classes), "
          f"{n_u} unseen-test rows ({len(checked[3])} classes)")
    specs = metrics.specs("evaluate")
    calibrations = {s.at for s in specs}  # γ values: printed beside the numbers measured at them
    for s in specs:
        if s.name in calibrations:
            continue
        line = f"  {s.label:<9}{res[s.name]:7{s.fmt}}"
        if s.at is not None:  # any γ but the one asked for was chosen on the evaluated rows
            line += f"  (gamma = {res[s.at]:.6g}{'' if s.at == 'gamma' else ', chosen on these rows'})"
        print(line)
    return 0
