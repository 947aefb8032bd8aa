"""What a person waiting on a study sees: the plan up front, an overall bar with ETA, a line per unit.

Bars are drawn only on a terminal: with ``--no-progress``, ``$ZSL_BENCH_NO_PROGRESS`` set, or
stderr not a TTY (a log file, CI), there are no bars and so no escape codes, while the plan and
the per-unit lines still go to the log. This module imports no torch.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

NO_PROGRESS_ENV = "ZSL_BENCH_NO_PROGRESS"


def progress_enabled(no_progress: bool = False, stream: Any = None) -> bool:
    """Whether to draw bars: not switched off by flag or variable, and ``stream`` (stderr) is a terminal."""
    if no_progress or os.environ.get(NO_PROGRESS_ENV, "").strip() not in ("", "0"):
        return False
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def fmt_duration(seconds: float) -> str:
    """``42 s``, ``12 min``, ``3 h 05 min``."""
    s = max(0.0, float(seconds))
    if s < 90:
        return f"{s:.0f} s"
    if s < 5400:
        return f"{s / 60:.0f} min"
    h, m = divmod(int(round(s / 60)), 60)
    return f"{h} h {m:02d} min"


def _count(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


@dataclass
class PlannedUnit:
    """One unit of the plan: its description, run id, and whether it is done, partly done or to do."""

    desc: str
    run_id: str
    state: str  # "done" | "changed" (rows of another config or data) | "resume" | "todo"
    resume: str = ""  # for "resume": where its checkpoint stands, e.g. "phase final, epoch 3"


@dataclass
class Plan:
    """The work of a study as seen before it starts (read from ``<out>``, writing nothing)."""

    name: str
    units: list[PlannedUnit]
    shape: str  # "12 variants × 4 datasets × 3 seeds"
    search: str = ""  # a search study's description (its trials are not known in advance)
    notes: list[str] = field(default_factory=list)
    done_walls: list[float] = field(default_factory=list)  # wall seconds of the done units (their rows)

    @property
    def done(self) -> list[PlannedUnit]:
        return [u for u in self.units if u.state == "done"]

    @property
    def to_resume(self) -> list[PlannedUnit]:
        return [u for u in self.units if u.state == "resume"]

    def summary(self) -> str:
        """``48 units: 12 variants × 4 datasets × 1 seed; 10 already done, 1 to resume``."""
        if self.search:
            head = f"{self.name}: {self.search}"
        else:
            head = f"{self.name}: {_count(len(self.units), 'unit')}: {self.shape}"
        tail = [f"{len(self.done)} already done"]
        if changed := sum(u.state == "changed" for u in self.units):
            tail.append(f"{changed} trained from another config or data (--rerun-changed reruns them)")
        if self.to_resume:
            tail.append(f"{len(self.to_resume)} to resume from a checkpoint")
        left = len(self.units) - len(self.done)
        if self.done_walls and left:
            per = sum(self.done_walls) / len(self.done_walls)
            tail.append(f"~{fmt_duration(per * left)} left at the rate of the finished units")
        return head + "; " + ", ".join(tail)

    def listing(self) -> str:
        """One line per unit with its state (``--dry-run``)."""
        lines = [self.summary(), *self.notes]
        for i, u in enumerate(self.units, 1):
            state = {"done": "done (rows reused)", "todo": "to run", "changed": "changed (config or data)"}.get(
                u.state, f"resume at {u.resume}")
            lines.append(f"  {i:>4}  {u.desc:<48} {state}")
        return "\n".join(lines)


class OverallProgress:
    """The study-wide bar (terminal only) and the per-unit log lines with an ETA.

    The ETA is the mean wall time of the units this process finished times the units left (before
    the first one finishes: of the units finished by earlier runs, from their rows).
    """

    def __init__(self, total: int, done: int, *, enabled: bool, log: Any, prior: list[float] | None = None) -> None:
        self.total, self.done, self.log = total, done, log
        self.walls: list[float] = []
        self.prior = list(prior or [])  # wall seconds of units finished before this run (its first ETA)
        self.bar: Any = None
        if enabled and total:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=done, desc="study", unit="unit", position=0, leave=True,
                            bar_format="{desc}: {n_fmt}/{total_fmt} units |{bar}| {elapsed}{postfix}")

    def eta(self) -> float | None:
        walls = self.walls or self.prior
        if not walls:
            return None
        return sum(walls) / len(walls) * max(0, self.total - self.done)

    def set_done(self, done: int) -> None:
        """Units finished by anyone (other workers included)."""
        self.done = min(max(done, self.done), self.total)
        if self.bar is not None:
            self.bar.n = self.done
            self.bar.refresh()

    def unit_finished(self, desc: str, wall_s: float, outcome: str) -> None:
        self.walls.append(wall_s)
        self.set_done(self.done + 1)
        eta = self.eta()
        eta_text = f"; ETA {fmt_duration(eta)}" if eta is not None and self.done < self.total else ""
        msg = f"[{self.done}/{self.total}] {desc}: {outcome} in {fmt_duration(wall_s)}{eta_text}"
        if self.bar is not None:
            self.bar.set_postfix_str(eta_text.lstrip("; "), refresh=True)
            self.bar.write(msg, file=sys.stderr)  # above the bars, not through them
        else:
            self.log.info(msg)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def shape_of(parts: Iterable[tuple[int, str]]) -> str:
    """``12 variants × 4 datasets × 3 seeds`` from (count, word) pairs."""
    return " × ".join(_count(n, w) for n, w in parts)
