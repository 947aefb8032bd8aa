"""Shared helpers of the equivalence checks (``benchmarks/equivalence/<method>.py --official DIR``).

Each check imports the official model class from the user's own checkout of the official
repository (never vendored here), builds it and our port on the same random inputs, copies the
weights across and compares forward scores, loss terms, gradients and a short training trajectory.
This module holds what the checks share: importing the official code with its hard-coded
dependencies stubbed at runtime, the synthetic task at a dataset's real shapes, the difference
measure and the report that prints one PASS/FAIL line.

Difference measure: ``abs`` is ``max |ours − official|``; ``rel`` is that divided by
``max |official|`` (relative to the quantity's scale, so entries near zero do not blow it up).
A row passes when ``abs <= tol`` or ``rel <= tol``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import sys
import types
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

# Real class/attribute counts of the xlsa17 splits (K classes, A attributes, S seen classes).
SHAPES = {"cub": (200, 312, 150), "sun": (717, 102, 645), "awa2": (50, 85, 40)}
TOL_F64 = 1e-10  # float64: everything that is the same computation in another order


def parser(description: str, datasets: tuple[str, ...] = ("cub", "sun", "awa2")) -> argparse.ArgumentParser:
    """The arguments every check takes."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--official", required=True, type=Path,
                   help="path to your checkout of the official repository (its root directory)")
    p.add_argument("--datasets", default=",".join(datasets),
                   help=f"comma-separated settings to check (default: {','.join(datasets)})")
    p.add_argument("--steps", type=int, default=20, help="training-trajectory length in steps (default 20)")
    p.add_argument("--batch", type=int, default=12, help="batch size (default 12)")
    p.add_argument("--feature-dim", type=int, default=128,
                   help="F of the random region features (default 128; 2048 is the real size, slow on CPU)")
    p.add_argument("--seed", type=int, default=0)
    return p


def parse_datasets(text: str, valid: tuple[str, ...]) -> list[str]:
    names = [t.strip().lower() for t in text.split(",") if t.strip()]
    bad = [n for n in names if n not in valid]
    if not names or bad:
        raise SystemExit(f"error: --datasets {text!r}: valid settings are {', '.join(valid)}")
    return names


def check_official_dir(path: Path, marker: str) -> Path:
    """The checkout root; exit with one line when ``marker`` (a file it must hold) is missing."""
    path = path.expanduser().resolve()
    if not (path / marker).is_file():
        raise SystemExit(f"error: --official {path}: no {marker} there; pass the root of your checkout "
                         "of the official repository")
    return path


def import_official(root: Path, module: str, stubs: tuple[str, ...] = ()) -> types.ModuleType:
    """Import ``module`` from the official checkout ``root``.

    ``stubs`` names modules the official file imports but never uses in the model class
    (``tensorflow`` in MSDN's ``core/MSDN.py``, ``wandb``): an empty module stands in for each one
    that is not installed, at runtime only.
    """
    stubbed = []
    for name in stubs:
        try:
            importlib.import_module(name)
        except ImportError:
            sys.modules[name] = types.ModuleType(name)
            stubbed.append(name)
    root_s = str(root)
    if root_s not in sys.path:
        sys.path.insert(0, root_s)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return importlib.import_module(module)
    finally:  # the stub stays bound inside the official module only (torch probes sys.modules later)
        for name in stubbed:
            sys.modules.pop(name, None)


@contextlib.contextmanager
def cuda_calls_stay_on_cpu() -> Iterator[None]:
    """``Tensor.cuda()`` returns the tensor in the default dtype on the CPU (official code that
    hard-codes ``.cuda()`` runs on a CPU-only machine, in float64 when that is the default)."""
    original = torch.Tensor.cuda

    def cuda(self: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        return self.to(torch.get_default_dtype()) if self.is_floating_point() else self

    torch.Tensor.cuda = cuda  # type: ignore[method-assign]
    try:
        yield
    finally:
        torch.Tensor.cuda = original  # type: ignore[method-assign]


@dataclass
class SyntheticTask:
    """Random class semantics, word vectors and seen/unseen split at a dataset's real K and A."""

    dataset: str
    att: np.ndarray  # [K, A] float64, with a few negative entries (AWA2's clipping matters)
    w2v: np.ndarray  # [A, D]
    seen: np.ndarray  # sorted global ids
    unseen: np.ndarray

    @property
    def num_classes(self) -> int:
        return int(self.att.shape[0])


def synthetic_task(dataset: str, rng: np.random.Generator, dim_v: int = 300) -> SyntheticTask:
    k, a, s = SHAPES[dataset]
    att = rng.uniform(-0.1, 1.0, size=(k, a))
    att /= np.linalg.norm(att, axis=1, keepdims=True)
    perm = rng.permutation(k)  # seen classes are not a prefix of the ids: index maps are exercised
    return SyntheticTask(dataset, att, rng.normal(size=(a, dim_v)), np.sort(perm[:s]), np.sort(perm[s:]))


def batches(n_steps: int, batch: int, task: SyntheticTask, feature_dim: int, regions: int,
            rng: np.random.Generator) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Non-negative (post-ReLU-like) region features [B, F, R] and seen-class labels, float64."""
    out = []
    for _ in range(n_steps):
        x = torch.from_numpy(rng.gamma(0.5, 1.0, size=(batch, feature_dim, regions)))
        y = torch.from_numpy(rng.choice(task.seen, size=batch))
        out.append((x, y))
    return out


def max_diff(ours: Any, official: Any) -> tuple[float, float]:
    """(max |a − b|, that / max |b|); shapes must agree exactly."""
    a = torch.as_tensor(ours).detach().double()
    b = torch.as_tensor(official).detach().double()
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch: ours {tuple(a.shape)} vs official {tuple(b.shape)}")
    if a.numel() == 0:
        return 0.0, 0.0
    if not (torch.isfinite(a).all() and torch.isfinite(b).all()):
        return float("inf"), float("inf")
    d = (a - b).abs().max().item()
    scale = b.abs().max().item()
    return d, (d / scale if scale > 0 else (0.0 if d == 0 else float("inf")))


@dataclass
class Row:
    name: str
    abs: float
    rel: float
    tol: float

    @property
    def ok(self) -> bool:
        return self.abs <= self.tol or self.rel <= self.tol


@dataclass
class Report:
    """Rows of compared quantities, notes on what cannot be compared, and the verdict."""

    title: str
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    measured: list[Row] = field(default_factory=list)  # known differences: printed, not judged

    def compare(self, name: str, ours: Any, official: Any, tol: float = TOL_F64) -> Row:
        row = Row(name, *max_diff(ours, official), tol)
        self.rows.append(row)
        return row

    def measure(self, name: str, ours: Any, official: Any) -> Row:
        """A documented difference: its size is printed, it does not decide PASS/FAIL."""
        row = Row(name, *max_diff(ours, official), float("nan"))
        self.measured.append(row)
        return row

    def note(self, text: str) -> None:
        self.notes.append(text)

    @property
    def ok(self) -> bool:
        return bool(self.rows) and all(r.ok for r in self.rows)

    def print(self) -> bool:
        print(f"== {self.title}")
        width = max([len(r.name) for r in self.rows + self.measured] + [8])
        for r in self.rows:
            print(f"  {r.name:<{width}}  abs {r.abs:.3e}  rel {r.rel:.3e}  tol {r.tol:.0e}  "
                  f"{'ok' if r.ok else 'DIFFERS'}")
        for r in self.measured:
            print(f"  {r.name:<{width}}  abs {r.abs:.3e}  rel {r.rel:.3e}  (documented difference, measured)")
        for n in self.notes:
            print(f"  note: {n}")
        worst = max(self.rows, key=lambda r: r.abs, default=None)
        tail = f"max abs {worst.abs:.3e} ({worst.name})" if worst else "nothing compared"
        print(f"  {'PASS' if self.ok else 'FAIL'} {self.title}: {len(self.rows)} quantities, {tail}")
        return self.ok


def finish(reports: list[Report]) -> int:
    """Print the overall verdict; the exit status is 0 only when every report passed."""
    ok = all(r.ok for r in reports) and bool(reports)
    rows = [r for rep in reports for r in rep.rows if r.tol <= 1e-9]  # the float64-exact quantities
    worst = max(rows, key=lambda r: r.abs, default=None)
    tail = f"; max abs difference of the float64 quantities {worst.abs:.3e} ({worst.name})" if worst else ""
    print(f"{'PASS' if ok else 'FAIL'}: {sum(r.ok for r in reports)}/{len(reports)} settings match{tail}")
    return 0 if ok else 1


def grads(model: torch.nn.Module, names: dict[str, str]) -> dict[str, torch.Tensor]:
    """``{our name: grad}`` for the parameters in ``names`` (zeros where no gradient arrived)."""
    params = dict(model.named_parameters())
    return {k: (params[n].grad if params[n].grad is not None else torch.zeros_like(params[n]))
            for k, n in names.items()}


def copy_params(dst: torch.nn.Module, src: torch.nn.Module, mapping: dict[str, str],
                transform: dict[str, Any] | None = None) -> None:
    """``dst.<key> = src.<value>`` for each pair (after ``transform[key]`` when given)."""
    transform = transform or {}
    dp, sp = dict(dst.named_parameters()), dict(src.named_parameters())
    with torch.no_grad():
        for ours, theirs in mapping.items():
            value = sp[theirs].detach()
            if ours in transform:
                value = transform[ours](value)
            if dp[ours].shape != value.shape:
                raise ValueError(f"{ours} {tuple(dp[ours].shape)} <- {theirs} {tuple(value.shape)}")
            dp[ours].copy_(value)


def trajectory(pairs: list[tuple[torch.nn.Module, torch.optim.Optimizer, Any]],
               data: list[tuple[torch.Tensor, torch.Tensor]]) -> list[torch.Tensor]:
    """Train each (model, optimizer, loss_fn(x, y)) on the same batches; the per-step losses of each."""
    losses: list[list[torch.Tensor]] = [[] for _ in pairs]
    for xb, yb in data:
        for (model, opt, loss_fn), sink in zip(pairs, losses):
            model.train()
            opt.zero_grad()
            loss = loss_fn(xb, yb)
            loss.backward()
            opt.step()
            sink.append(loss.detach())
    return [torch.stack(s) for s in losses]


def compare_grads(report: Report, key: str, ours_loss: torch.Tensor, official_loss: torch.Tensor,
                  ours: torch.nn.Module, official: torch.nn.Module, mapping: dict[str, str],
                  transform: dict[str, Any] | None = None) -> None:
    """Gradient of one loss term with respect to every trainable parameter of ours, mapped to theirs
    (``transform[name]`` maps the official gradient to our layout, as for :func:`copy_params`)."""
    transform = transform or {}
    op = dict(ours.named_parameters())
    tp = dict(official.named_parameters())
    names = [n for n in mapping if op[n].requires_grad]
    g_ours = torch.autograd.grad(ours_loss, [op[n] for n in names], retain_graph=True, allow_unused=True)
    g_off = torch.autograd.grad(official_loss, [tp[mapping[n]] for n in names], retain_graph=True,
                                allow_unused=True)
    for n, a, b in zip(names, g_ours, g_off):
        b = b if b is not None else torch.zeros_like(tp[mapping[n]])
        report.compare(f"grad d{key}/d{n}", a if a is not None else torch.zeros_like(op[n]),
                       transform[n](b) if n in transform else b)


def official_batch(batch: int, num_seen: int, balanced: bool) -> str:
    """What the official loaders' ``next_batch(batch)`` yields per step, in words.

    The balanced loaders (DAZLE, MSDN, TransZero ``dataset.py``/``core/*DataLoader.py``) draw
    min(#seen, batch) distinct classes without replacement and max(batch // #seen, 1) images of
    each; the others ``randperm(n)[:batch]``.
    """
    if not balanced:
        return f"{batch} images, uniform"
    classes, per_class = min(num_seen, batch), max(batch // num_seen, 1)
    return f"{classes * per_class} images, {classes} distinct classes"


def our_batch(batch: int, num_seen: int, sampler: str) -> str:
    """What the harness's sampler yields per step, in the words of :func:`official_batch`."""
    if sampler != "class_balanced":
        return f"{batch} images, uniform"
    if batch <= num_seen:
        return f"{batch} images, {batch} distinct classes"
    return f"{batch} images, classes drawn with replacement"


def note_batch_and_epoch(report: Any, tr: dict[str, Any], off: dict[str, Any], num_seen: int) -> None:
    """Note what each side's loader yields per step and how many steps make an epoch.

    ``tr``: our preset's train section; ``off``: the official values read as ``{key: (value, where)}``
    with ``batch_size`` and ``is_balance``. The official scripts count an epoch as
    ``ntrain // batch_size`` steps (``niters = ntrain * epochs // batch_size``); ours is
    ``floor(ntrain / train.epoch_batch_size)`` when that is set, else ``ceil(ntrain / batch_size)``.
    """
    ours_batch = our_batch(tr["batch_size"], num_seen, tr.get("sampler", "uniform"))
    off_size = int(off["batch_size"][0])
    off_batch = official_batch(off_size, num_seen, bool(off["is_balance"][0]))
    report.note(f"preset batch: ours batch_size {tr['batch_size']} -> {ours_batch}; official batch_size "
                f"{off['batch_size'][0]} ({off['batch_size'][1]}) -> {off_batch} per step"
                + ("" if ours_batch == off_batch else "  <- DIFFERENT (documented in docs/FIDELITY.md)"))
    epoch_batch = int(tr.get("epoch_batch_size", 0))
    if epoch_batch <= 0:  # zsl_bench.engine.steps_per_epoch: one pass over the data
        ours = f"ceil(ntrain / {tr['batch_size']})"
        same = tr["batch_size"] == off_size
    else:
        ours = f"floor(ntrain / {epoch_batch}) (train.epoch_batch_size)"
        same = epoch_batch == off_size
    report.note(f"schedule: the official counts an epoch as ntrain // {off_size} steps, ours {ours}"
                + ("" if same else "  <- DIFFERENT (documented in docs/FIDELITY.md)"))


def val_phase(task: SyntheticTask) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A validation-shaped phase of ``task``: (phase seen, phase unseen, phase classes), global ids.

    The last fifth of the seen classes act as the validation (unseen) classes and the first four
    fifths are trained on; the task's unseen classes (the test classes) are outside the phase.
    """
    n_val = max(1, len(task.seen) // 5)
    seen, unseen = task.seen[:-n_val], task.seen[-n_val:]
    return seen, unseen, np.sort(np.concatenate([seen, unseen]))
