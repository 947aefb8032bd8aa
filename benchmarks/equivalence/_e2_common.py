"""Shared helpers of the equivalence checks by helper e2 (ALE, SJE, DeViSE, ESZSL, SAE, LATEM,
tf-VAEGAN, f-CLSWGAN). The lead may merge this module with e1's helpers.

Every check imports the official code from the user's own checkout (``--official DIR``, never
vendored here), builds our port and the official code on the same random inputs, and records each
comparison in a :class:`Report`:

- ``check``: a quantity that must match; max abs / rel difference against a stated tolerance.
  Any failing check makes the script print ``FAIL`` and exit 1.
- ``measure``: a documented, deliberate difference; its size is printed, it cannot fail.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np


def to_np(x: Any) -> np.ndarray:
    """Tensor / array / number -> float64 numpy array."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


def max_diff(ours: Any, theirs: Any) -> tuple[float, float]:
    """(max |a - b|, max |a - b| / max |b|) of two same-shaped arrays."""
    a, b = to_np(ours), to_np(theirs)
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch: ours {a.shape} vs official {b.shape}")
    if a.size == 0:
        return 0.0, 0.0
    d = float(np.max(np.abs(a - b)))
    scale = float(np.max(np.abs(b)))
    return d, d / scale if scale > 0 else (0.0 if d == 0 else float("inf"))


@dataclass
class Report:
    """Rows of (kind, name, max abs, max rel, tolerance, ok) printed as one table."""

    title: str
    rows: list[tuple[str, str, float, float, float | None, bool]] = field(default_factory=list)

    def check(self, name: str, ours: Any, theirs: Any, atol: float) -> bool:
        d, r = max_diff(ours, theirs)
        ok = bool(np.isfinite(d) and d <= atol)
        self.rows.append(("check", name, d, r, atol, ok))
        return ok

    def check_true(self, name: str, cond: bool) -> bool:
        self.rows.append(("check", name, 0.0 if cond else 1.0, 0.0 if cond else 1.0, 0.0, bool(cond)))
        return bool(cond)

    def measure(self, name: str, ours: Any, theirs: Any) -> tuple[float, float]:
        d, r = max_diff(ours, theirs)
        self.rows.append(("differs", name, d, r, None, True))
        return d, r

    def value(self, name: str, value: float) -> None:
        self.rows.append(("value", name, float(value), float("nan"), None, True))

    @property
    def ok(self) -> bool:
        return bool(self.rows) and all(row[5] for row in self.rows)

    def render(self) -> str:
        lines = [f"== {self.title}",
                 f"{'kind':8s} {'quantity':64s} {'max abs':>10s} {'max rel':>10s} {'tol':>8s}  result"]
        for kind, name, d, r, tol, ok in self.rows:
            tol_s = f"{tol:8.0e}" if tol is not None else "       -"
            res = ("ok" if ok else "MISMATCH") if kind == "check" else "documented"
            if kind == "value":
                res = "measured"
            lines.append(f"{kind:8s} {name:64s} {d:10.3e} {r:10.3e} {tol_s}  {res}")
        n_checks = sum(1 for row in self.rows if row[0] == "check")
        n_bad = sum(1 for row in self.rows if row[0] == "check" and not row[5])
        verdict = "PASS" if self.ok else "FAIL"
        lines.append(f"{verdict}: {self.title}: {n_checks - n_bad}/{n_checks} checks within tolerance; "
                     f"{sum(1 for row in self.rows if row[0] != 'check')} documented differences measured")
        return "\n".join(lines)

    def finish(self) -> int:
        print(self.render())
        return 0 if self.ok else 1


def parser(description: str, official_hint: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--official", required=True, metavar="DIR",
                   help=f"path to your own checkout of the official code ({official_hint})")
    p.add_argument("--seed", type=int, default=0, help="seed of the random inputs (default 0)")
    return p


def official_dir(path: str, must_have: str) -> str:
    """Check that ``path/must_have`` exists; exit with one clear line if not."""
    full = os.path.join(path, must_have)
    if not os.path.exists(full):
        sys.exit(f"--official {path}: {must_have} not found there; pass the root of the official checkout")
    return os.path.abspath(path)


def load_file(path: str, name: str) -> ModuleType:
    """Import one official source file as a module (its ``__main__`` block does not run)."""
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def random_task(seed: int, n_classes: int = 50, n_seen: int = 40, n_att: int = 85, n_feat: int = 2048,
                non_negative: bool = True) -> Any:
    """A TaskInfo with random L2-normalised class semantics (non-negative, like xlsa17's)."""
    from zsl_bench.contract import TaskInfo

    rng = np.random.default_rng(seed)
    att = rng.random((n_classes, n_att)) if non_negative else rng.standard_normal((n_classes, n_att))
    att /= np.linalg.norm(att, axis=1, keepdims=True)
    perm = rng.permutation(n_classes)
    return TaskInfo(dataset="awa2", att=att.astype(np.float32), seen=np.sort(perm[:n_seen]).astype(np.int64),
                    unseen=np.sort(perm[n_seen:]).astype(np.int64), feature_dim=n_feat)


def random_features(seed: int, task: Any, n: int, relu: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Features [n, F] (non-negative like ResNet pool5 when ``relu``) and seen-class labels [n]."""
    rng = np.random.default_rng(seed + 1)
    y = rng.choice(task.seen, size=n)
    proto = rng.standard_normal((task.num_classes, task.feature_dim))
    x = proto[y] + rng.standard_normal((n, task.feature_dim))
    if relu:
        x = np.maximum(x, 0)
    return x, y.astype(np.int64)


class Mvp18Stub:
    """Stands in for ``self`` of an mvp18/Popular-ZSL-Algorithms class (ALE, SJE, DeViSE, ...).

    Their ``__init__`` reads xlsa17 .mat files from a hard-coded path; the methods under test
    only read these attributes, so the stub sets them from our random task instead.
    X_train [d, N], labels_train [N] local seen ids, train_sig [A, S].
    """

    def __init__(self, off_cls: Any, x: np.ndarray, y_local: np.ndarray, sig: np.ndarray, **args: Any) -> None:
        self._cls = off_cls
        self.X_train = np.ascontiguousarray(x.T, dtype=np.float64)
        self.labels_train = np.asarray(y_local)
        self.train_sig = np.asarray(sig, dtype=np.float64)
        self.args = argparse.Namespace(**args)

    def __getattr__(self, name: str) -> Any:  # bind the official methods to this stub
        fn = getattr(self._cls, name)
        return fn.__get__(self)


def read_validated(path: str) -> dict[str, tuple[int, list[str]]]:
    """mvp18's table of validated values in a script's docstring, e.g. ``CUB  -> (L2, 0.3) -> Test
    Acc`` (ALE/SJE/DeViSE/ESZSL) or ``CUB  -> 0.3948 @ 100  [F-->S] 0.4670 @ 0.2  [S-->F]`` (SAE).

    Returns:
        dataset (upper case) -> (1-based line number, the fields): the tuple's items for the first
        form; ``[λ F→S, λ S→F]`` for SAE's.
    """
    import re

    out: dict[str, tuple[int, list[str]]] = {}
    with open(path, encoding="utf-8") as fh:
        for no, line in enumerate(fh, 1):
            m = re.match(r"\s*([A-Z0-9]+)\s*->\s*\(([^)]*)\)\s*->\s*Test Acc", line)
            if m:
                out[m.group(1)] = (no, [v.strip() for v in m.group(2).split(",")])
                continue
            m = re.match(r"\s*([A-Z0-9]+)\s*->\s*[\d.]+\s*@\s*([\d.]+)\s*\[F-->S\]\s*[\d.]+\s*@\s*([\d.]+)\s*\[S-->F\]",
                         line)
            if m:
                out[m.group(1)] = (no, [m.group(2), m.group(3)])
    return out


def read_arg_default(path: str, flag: str) -> tuple[int, str]:
    """(line, default) of ``parser.add_argument('-X', '--flag', default=...)`` in an mvp18 script."""
    import re

    with open(path, encoding="utf-8") as fh:
        for no, line in enumerate(fh, 1):
            if f"'--{flag}'" in line:
                m = re.search(r"default=([^,)]+)", line)
                if m:
                    return no, m.group(1).strip().strip("'\"")
    raise ValueError(f"{path}: no --{flag} argument found")
