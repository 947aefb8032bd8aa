"""Result rows: one long-format row per (method, variant, dataset, source, protocol, seed, metric).

``<out>/results.csv`` is append-only. :func:`append_rows` takes an exclusive ``flock`` on
``results.csv.lock``, checks the file's tail, writes the new whole rows with one ``O_APPEND`` write
and ``fsync``s: its cost does not grow with the file, and writers from any number of local
``run`` / ``ablate`` processes never lose or interleave rows. A last line without its newline
(a writer killed mid-write, a full disk, a truncated copy) is cut off before appending and kept in
``results.csv.partial-<time>``, with one warning; new rows are never glued onto it. Only
:func:`remove_runs` (``--rerun-changed``) rewrites the file, atomically (temporary file + rename).

Readers check every row against the schema (:func:`read_rows`): a cut or corrupted row, a broken
quote, a non-numeric value or seed, an unknown metric, binary garbage is a :class:`DataError` naming
the file and line.
"""

from __future__ import annotations

import csv
import datetime as _dt
import functools
import io
import json
import logging
import math
import os
import subprocess
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from .errors import DataError
from .fileio import atomic_path, crash_point, file_lock, write_text_atomic

log = logging.getLogger(__name__)

CRASH_POINTS = ("rows-mid",)
"""``ZSL_BENCH_CRASH_AT`` points here: ``rows-mid`` = half of a unit's row bytes written and synced."""

COLUMNS = (
    "run_id", "method", "variant", "dataset", "source", "sim_preset", "generator_version", "sim_semantics",
    "data_seed", "features", "precision",
    "protocol", "seed", "metric", "value", "gamma", "epoch", "config_hash", "config",
    "git_commit", "versions", "wall_time_s", "timestamp",
)
HEADER = ",".join(COLUMNS) + "\n"
# Provenance columns added after files were written without them, oldest first: ``features`` and
# ``precision`` (issue 12), ``sim_semantics`` (issue 16: the semantics source of simulated data). A
# file whose header lacks them is read with them filled in (:func:`legacy_value`) and rewritten with
# the current header the first time rows are appended to it.
ADDED_COLUMNS = ("features", "precision", "sim_semantics")
LEGACY_HEADERS = tuple(",".join(c for c in COLUMNS if c not in absent) + "\n"  # before issue 12; before sim_semantics
                       for absent in (ADDED_COLUMNS, ADDED_COLUMNS[2:]))
LEGACY_HEADER = LEGACY_HEADERS[0]

SOURCES = ("real", "simulated")
_INT_COLUMNS = {"seed": True, "data_seed": False, "epoch": False}  # column -> required
_FLOAT_COLUMNS = {"value": True, "gamma": False, "wall_time_s": False}
_REQUIRED_TEXT = ("run_id", "method", "dataset", "metric")


def __getattr__(name: str) -> Any:
    """``METRIC_NAMES``: the metrics of every run's rows, in order (``metrics.names("row")``).

    Looked up on each access, so a metric registered after this module was imported is included.
    """
    if name == "METRIC_NAMES":
        from . import metrics

        return metrics.names("row")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@functools.lru_cache(maxsize=1)
def git_commit() -> str:
    """The commit of the code that makes the rows.

    A checkout (editable install, ``PYTHONPATH``): ``git rev-parse`` there, ``-dirty`` when tracked
    files differ. An installed copy: the commit it was built from, recorded by setup.py in
    ``zsl_bench/_build.json``. Else ``unknown`` (built from a tree without git).
    """
    here = Path(__file__).resolve().parent
    commit = _checkout_commit(here)
    if commit:
        return commit
    try:
        recorded = json.loads((here / "_build.json").read_text()).get("git_commit")
    except (OSError, ValueError, AttributeError):
        recorded = None
    return str(recorded) if recorded else "unknown"


def _checkout_commit(pkg: Path) -> str | None:
    """``git rev-parse`` of the checkout whose top level holds ``pkg`` (never an enclosing repository,
    e.g. a virtual environment inside some other checkout)."""
    def git(*args: str) -> str | None:
        out = subprocess.run(["git", *args], cwd=pkg, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() if out.returncode == 0 else None

    try:
        top = git("rev-parse", "--show-toplevel")
        if not top or Path(top).resolve() != pkg.parent:
            return None
        commit = git("rev-parse", "--short=12", "HEAD")
        if not commit:
            return None
        dirty = git("status", "--porcelain", "--untracked-files=no")
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


@functools.lru_cache(maxsize=1)
def package_versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    parts = []
    for pkg in ("zsl-bench", "torch", "numpy", "scipy", "h5py"):
        try:
            parts.append(f"{pkg}={version(pkg)}")
        except PackageNotFoundError:
            continue
    return ";".join(parts)



# ---------------------------------------------------------------- reading


def lock_path(path: str | os.PathLike[str]) -> Path:
    """The lock file every writer of the results file ``path`` holds (``<path>.lock``)."""
    p = Path(path)
    return p.with_name(p.name + ".lock")


def results_lock(path: str | os.PathLike[str]) -> Any:
    """Exclusive lock of the results file ``path`` across processes (re-entrant in one process)."""
    return file_lock(lock_path(path))


def _read_bytes(p: Path) -> bytes:
    if p.is_dir():
        raise DataError(f"{p} is a directory, not a results file (a results.csv of zsl-bench run/ablate)")
    try:
        return p.read_bytes()
    except OSError as exc:
        raise DataError(f"{p}: cannot read: {exc.strerror or exc}") from None


def _decode(p: Path, data: bytes, first_line: int = 1) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = first_line + data.count(b"\n", 0, exc.start)
        raise DataError(f"{p}: line {line}: not UTF-8 text (byte {data[exc.start]:#04x}); "
                        "a binary or corrupted file, not a zsl-bench results CSV") from None


def legacy_value(column: str, row: dict[str, str]) -> str:
    """The value of an :data:`ADDED_COLUMNS` column for a row written before it existed.

    ``precision``: such rows were fp32 unless their ``versions`` names another (CUDA runs recorded
    ``precision=bf16`` there; CPU runs were always fp32). ``features`` and ``sim_semantics``: not
    recorded (empty; a study takes an unrecorded semantics source as matching any).
    """
    if column == "precision":
        for part in row.get("versions", "").split(";"):
            if part.startswith("precision="):
                return part.split("=", 1)[1]
        return "fp32"
    return ""


def _fill_legacy(row: dict[str, str]) -> dict[str, str]:
    for c in ADDED_COLUMNS:
        if c not in row:
            row[c] = legacy_value(c, row)
    return row


def _check_header(p: Path, header: list[str]) -> None:
    missing = [c for c in COLUMNS if c not in header and c not in ADDED_COLUMNS]
    if missing:
        shown = ", ".join(missing[:6]) + (f" and {len(missing) - 6} more" if len(missing) > 6 else "")
        raise DataError(f"{p}: line 1: not a zsl-bench results file: the header lacks column(s) {shown} "
                        "(see zsl_bench.results.COLUMNS)")
    dup = sorted({c for c in header if header.count(c) > 1})
    if dup:
        raise DataError(f"{p}: line 1: column(s) {', '.join(dup)} appear twice in the header")


def _parse(p: Path, text: str, *, header: list[str] | None, first_line: int,
           validate: bool) -> tuple[list[str] | None, list[tuple[int, dict[str, str]]]]:
    """Rows of ``text`` (whole lines) as ``(line number, row)``; checks structure (and values)."""
    if "\x00" in text:
        line = first_line + text.count("\n", 0, text.index("\x00"))
        raise DataError(f"{p}: line {line}: NUL byte: a binary or corrupted file, not a zsl-bench results CSV")
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    out: list[tuple[int, dict[str, str]]] = []
    start = 1
    try:
        for fields in reader:
            line = first_line + start - 1
            start = reader.line_num + 1
            if header is None:
                _check_header(p, fields)
                header = fields
                continue
            if not fields:
                raise DataError(f"{p}: line {line}: empty line inside the rows (a corrupted file)")
            if len(fields) != len(header):
                raise DataError(f"{p}: line {line}: {len(fields)} field(s), the header has {len(header)}: "
                                "a cut or corrupted row (a truncated copy? a stray quote or comma?)")
            row = _fill_legacy(dict(zip(header, fields)))
            if validate:
                _check_row(p, line, row)
            out.append((line, row))
    except csv.Error as exc:
        line = first_line + start - 1
        raise DataError(f"{p}: line {line}: malformed CSV ({exc}); a broken quote or a corrupted row") from None
    return header, out


def _known_metric(name: str) -> bool:
    from . import metrics

    known = set(metrics.names())
    return name in known or any(name.startswith(pre) and name[len(pre):] in known for pre in ("val_", "test_"))


def _check_row(p: Path, line: int, row: dict[str, str]) -> None:
    """One row's values against the schema; raises a DataError naming ``p``, ``line`` and the column."""
    from .protocol import PROTOCOLS

    def bad(col: str, what: str) -> DataError:
        return DataError(f"{p}: line {line}: column {col} = {row[col]!r}: {what}")

    for col in _REQUIRED_TEXT:
        if not row[col].strip():
            raise bad(col, "empty; every row names its run_id, method, dataset and metric")
    for col, required in _INT_COLUMNS.items():
        v = row[col].strip()
        if v or required:
            try:
                int(v)
            except ValueError:
                raise bad(col, "not an integer") from None
    for col, required in _FLOAT_COLUMNS.items():
        v = row[col].strip()
        if v or required:
            try:
                float(v)
            except ValueError:
                raise bad(col, "not a number") from None
    if row["source"] not in SOURCES:
        raise bad("source", f"valid: {', '.join(SOURCES)}")
    if row["protocol"] not in PROTOCOLS:
        raise bad("protocol", f"valid: {', '.join(PROTOCOLS)}")
    if not _known_metric(row["metric"]):
        from . import metrics

        raise bad("metric", f"not a registered metric (zsl-bench ls metrics): {', '.join(metrics.names())}, "
                            "or one of them prefixed by val_ / test_")


def read_rows(path: str | os.PathLike[str], *, validate: bool = False,
              partial_tail: str = "error") -> list[dict[str, str]]:
    """Rows of the results CSV at ``path`` (missing: none), checked line by line.

    Args:
        validate: also check each value against the schema (numbers, seeds, metric names, source,
            protocol); structure (UTF-8, header, field counts, quotes) is always checked.
        partial_tail: a last line without its newline (a writer killed mid-row, a truncated copy):
            ``"error"`` raises, ``"ignore"`` leaves it out (the next :func:`append_rows` cuts it off).

    Raises:
        DataError: naming the file and line of the first malformed row.
    """
    p = Path(path)
    if not p.exists():
        return []
    live_block = None
    if pending_path(p).exists():
        if not _writer_died(p) or partial_tail == "ignore":
            # A writer is appending now, or died mid-block (the next append removes that block): read
            # what was there before its block.
            live_block = _pending_offset(p)
        else:
            raise DataError(f"{p}: its last rows are a block cut short by a killed writer ({pending_path(p).name} "
                            "is left); the next zsl-bench run/ablate into this directory removes them and redoes "
                            "the unit")
    data = _read_bytes(p)
    if live_block is not None:
        data = data[:live_block]
    cut = data.rfind(b"\n") + 1
    # Binary garbage is named as such, before its lack of a final newline.
    text = _decode(p, data[:cut] if partial_tail == "ignore" else data)
    if "\x00" not in text and cut < len(data) and partial_tail != "ignore":
        line = data.count(b"\n") + 1
        raise DataError(f"{p}: line {line}: the last line is cut (no newline at its end): a truncated or "
                        "half-written file; the next zsl-bench run/ablate into this directory moves it "
                        "aside, or delete that line")
    _, rows = _parse(p, text, header=None, first_line=1, validate=validate)
    return [r for _, r in rows]


def _pending_offset(p: Path) -> int | None:
    try:
        return int(pending_path(p).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _writer_died(p: Path) -> bool:
    """Whether ``p``'s ``.pending`` record outlives its writer (it is still there once we get the lock)."""
    import fcntl

    try:
        with open(lock_path(p), "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(fh, fcntl.LOCK_UN)
    except BlockingIOError:
        return False  # a live writer is appending now
    except OSError:
        return True
    return pending_path(p).exists()


class RowIndex:
    """Which run ids an append-only results file holds, reading only the bytes added since last time.

    Keeps ``run_id -> [(start, end)]`` byte ranges of its rows, so checking a unit before and after
    training costs what was appended meanwhile, not the whole file. A file that was rewritten
    (:func:`remove_runs`) or replaced is noticed (inode, size, the bytes before the last offset) and
    read again from the start. A cut last line is left for :func:`append_rows` to repair.
    """

    _TAIL = 64

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._reset()

    def _reset(self) -> None:
        self._ino: int | None = None
        self._offset = 0
        self._lines = 0
        self._tail = b""
        self._header: list[str] | None = None
        self._ranges: dict[str, list[tuple[int, int]]] = {}

    def refresh(self) -> RowIndex:
        p = self.path
        try:
            st = p.stat()
        except FileNotFoundError:
            self._reset()
            return self
        if p.is_dir():
            raise DataError(f"{p} is a directory, not a results file")
        with p.open("rb") as fh:
            if self._ino is not None:
                same = st.st_ino == self._ino and st.st_size >= self._offset
                if same and self._tail:
                    fh.seek(self._offset - len(self._tail))
                    same = fh.read(len(self._tail)) == self._tail
                if not same:
                    self._reset()
            self._ino = st.st_ino
            fh.seek(self._offset)
            new = fh.read(max(0, st.st_size - self._offset))
        cut = new.rfind(b"\n") + 1
        if cut == 0:
            return self
        new = new[:cut]
        header, rows = _parse(p, _decode(p, new, self._lines + 1), header=self._header, first_line=self._lines + 1,
                              validate=False)
        self._header = header
        # Byte offsets of each physical line (rows hold no newlines: _csv_text refuses them).
        starts = [self._offset]
        pos = 0
        while (i := new.find(b"\n", pos)) >= 0:
            pos = i + 1
            starts.append(self._offset + pos)
        for line, row in rows:
            k = line - self._lines - 1
            self._ranges.setdefault(row["run_id"], []).append((starts[k], starts[k + 1]))
        self._lines += new.count(b"\n")
        self._offset += len(new)
        self._tail = new[-self._TAIL:] if len(new) >= self._TAIL else (self._tail + new)[-self._TAIL:]
        return self

    def __contains__(self, run_id: object) -> bool:
        return run_id in self._ranges

    def run_ids(self) -> set[str]:
        return set(self._ranges)

    def rows_of(self, run_id: str) -> list[dict[str, str]]:
        """The rows of ``run_id`` as read now (the index must be fresh: call :meth:`refresh` first)."""
        ranges = self._ranges.get(run_id, [])
        if not ranges:
            return []
        out = []
        with self.path.open("rb") as fh:
            for a, b in ranges:
                fh.seek(a)
                fields = next(csv.reader([fh.read(b - a).decode("utf-8")]))
                out.append(_fill_legacy(dict(zip(self._header or COLUMNS, fields))))
        return out


# ---------------------------------------------------------------- writing


def _legacy_header(head: bytes) -> str | None:
    """The :data:`LEGACY_HEADERS` entry a file starting with ``head`` was written with, else None."""
    return next((h for h in LEGACY_HEADERS if head.startswith(h.encode())), None)


def _repair_tail(p: Path, fd: int, size: int) -> int:
    """Check the header and the last line of the results file open (O_APPEND) as ``fd``; returns the size.

    A last line without its newline is cut off and kept in ``<name>.partial-<UTC time>``. A last
    complete line of the wrong width, or a foreign header, is an error: appending there would mix
    rows into a file that is not (or no longer) a results table.
    """
    head = os.pread(fd, min(size, len(HEADER.encode()) + 1), 0)
    width = len(COLUMNS)
    legacy = _legacy_header(head)
    if legacy is not None:  # written before some ADDED_COLUMNS (migrated by append_rows)
        width = legacy.count(",") + 1
    elif not head.startswith(HEADER.encode()) and not (b"\n" not in head and HEADER.encode().startswith(head)):
        first = head.split(b"\n", 1)[0][:80]
        raise DataError(f"{p}: line 1: not the header of a zsl-bench results file (starts {first!r}); "
                        "move it away or use another --out")
    chunk = 1 << 16
    tail = os.pread(fd, min(size, chunk), size - min(size, chunk))
    if tail.endswith(b"\n"):
        last = tail[:-1].rsplit(b"\n", 1)[-1]
        if size > len(HEADER) and last and len(next(csv.reader([last.decode("utf-8", "replace")]), [])) != width:
            line = _count_lines(fd, size)
            raise DataError(f"{p}: line {line}: the last row has the wrong number of fields (corrupted or cut "
                            f"at a line end): fix or remove that line, then rerun")
        return size
    # Find the start of the cut line (it may be longer than one chunk).
    start = size - len(tail)
    while True:
        i = tail.rfind(b"\n")
        if i >= 0:
            cut = start + i + 1
            break
        if start == 0:
            cut = 0
            break
        step = min(start, chunk)
        start -= step
        tail = os.pread(fd, step, start)
    dropped = os.pread(fd, size - cut, cut)
    line = _count_lines(fd, cut) + 1
    keep = _keep_aside(p, dropped)
    os.ftruncate(fd, cut)
    os.fsync(fd)
    log.warning("%s: line %d was cut (%d bytes without a newline, e.g. a writer killed mid-row): removed before "
                "appending, kept in %s", p, line, len(dropped), keep.name)
    return cut


def _count_lines(fd: int, end: int) -> int:
    n, pos, step = 0, 0, 1 << 20
    while pos < end:
        n += os.pread(fd, min(step, end - pos), pos).count(b"\n")
        pos += step
    return n


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def pending_path(path: str | os.PathLike[str]) -> Path:
    """``<path>.pending``: where an appender records the block it is writing (offset and length)."""
    p = Path(path)
    return p.with_name(p.name + ".pending")


def _recover_pending(p: Path, fd: int, size: int) -> int:
    """Undo the block of a writer killed mid-append (its ``.pending`` record is there; we hold the lock).

    The block's complete lines are rows of one unit, so they go too, not only the cut last line: a
    unit's rows are all there or none. A block that reached its full length is kept. Returns the size.
    """
    rec = pending_path(p)
    try:
        offset, length = (int(x) for x in rec.read_text().split())
    except FileNotFoundError:
        return size
    except ValueError:
        offset, length = size, 0  # a record cut while being written: its block was never started
    if offset < size < offset + length:
        dropped = os.pread(fd, size - offset, offset)
        line = _count_lines(fd, offset) + 1
        keep = _keep_aside(p, dropped)
        os.ftruncate(fd, offset)
        os.fsync(fd)
        log.warning("%s: lines %d-%d are a unit's rows cut short by a killed writer (%d of %d bytes): removed, kept "
                    "in %s; the unit is redone", p, line, line + dropped.count(b"\n"), len(dropped), length, keep.name)
        size = offset
    rec.unlink(missing_ok=True)
    return size


def _keep_aside(p: Path, dropped: bytes) -> Path:
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    keep = p.with_name(f"{p.name}.partial-{stamp}")
    with atomic_path(keep) as tmp, open(tmp, "wb") as fh:
        fh.write(dropped)
        fh.flush()
        os.fsync(fh.fileno())
    return keep


def recover(path: str | os.PathLike[str]) -> None:
    """Repair what a killed appender left in ``path`` (an incomplete block, a cut last line), under the lock."""
    p = Path(path)
    if not p.is_file():
        return
    with results_lock(p):
        fd = os.open(p, os.O_RDWR | os.O_APPEND)
        try:
            size = _recover_pending(p, fd, os.fstat(fd).st_size)
            if size:
                _repair_tail(p, fd, size)
        finally:
            os.close(fd)


def append_rows(path: str | os.PathLike[str], rows: Iterable[dict[str, Any]]) -> None:
    """Append ``rows`` as one block (whole lines, ``O_APPEND`` writes, ``fsync``) under the file's lock.

    Cost is that of the new rows, whatever the file's size. A missing or empty file gets the header
    first. The block's offset and length go to ``<path>.pending`` (synced) before it is written and
    that record is removed after, so the next writer undoes a block cut by ``kill -9`` whole
    (:func:`_recover_pending`); a cut last line of any other origin is moved aside (:func:`_repair_tail`).
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    data = _csv_text(rows, header=False).encode("utf-8")
    if p.is_dir():
        raise DataError(f"{p} is a directory, not a results file; move it away or use another --out")
    with results_lock(p):
        _migrate(p)
        fd = os.open(p, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            size = _recover_pending(p, fd, os.fstat(fd).st_size)
            if size:
                size = _repair_tail(p, fd, size)
            if size == 0:
                data = HEADER.encode() + data
            rec = pending_path(p)
            with open(rec, "w") as fh:
                fh.write(f"{size} {len(data)}\n")
                fh.flush()
                os.fsync(fh.fileno())
            if os.environ.get("ZSL_BENCH_CRASH_AT", "").startswith("rows-mid"):
                half = len(data) // 2
                _write_all(fd, data[:half])
                os.fsync(fd)
                crash_point("rows-mid")
                data = data[half:]
            _write_all(fd, data)
            os.fsync(fd)
            rec.unlink()
        finally:
            os.close(fd)
        if size == 0:
            _fsync_dir(p.parent)


def _migrate(p: Path) -> None:
    """Rewrite a results file written before :data:`ADDED_COLUMNS` with the current header (atomic;
    the caller holds the lock). Its rows keep every value; the added columns get :func:`legacy_value`."""
    try:
        with open(p, "rb") as fh:
            head = fh.read(max(len(h.encode()) for h in LEGACY_HEADERS))
    except FileNotFoundError:
        return
    legacy = _legacy_header(head)
    if legacy is None:
        return
    recover(p)
    rows = read_rows(p, validate=False, partial_tail="ignore")
    write_text_atomic(p, _csv_text(rows, header=True), fsync=True)
    added = [c for c in ADDED_COLUMNS if c not in legacy.rstrip("\n").split(",")]
    log.info("%s: added the columns %s to its header (earlier rows: precision from their versions column, "
             "else fp32; features and semantics source not recorded)", p, ", ".join(added))


def _fsync_dir(d: Path) -> None:
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _csv_text(rows: Iterable[dict[str, Any]], *, header: bool) -> str:
    """``rows`` as CSV over ``COLUMNS``; an unknown column is an error.

    "\n" line ends throughout, and no value may hold a line break: every physical line is one row,
    which is what lets :func:`append_rows` and :class:`RowIndex` find a cut last row cheaply.
    """
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, extrasaction="raise", lineterminator="\n")
    if header:
        writer.writeheader()
    for r in rows:
        row = {k: r.get(k, "") for k in COLUMNS}
        for k, v in row.items():
            if isinstance(v, str) and ("\n" in v or "\r" in v):
                raise DataError(f"result row column {k} = {v[:40]!r}: a line break cannot go into results.csv")
        writer.writerow(row)
    return buf.getvalue()


def remove_runs(path: str | os.PathLike[str], run_ids: set[str], *,
                keep: Callable[[dict[str, str]], bool] | None = None) -> int:
    """Drop the rows of ``run_ids`` from the CSV at ``path`` (atomic rewrite, under the lock).

    Rows for which ``keep`` is true stay (a rerun's rows under the same run id).
    The only rewrite of a results file: ``--rerun-changed`` after a preset, default or generator changed.
    Returns how many rows went.
    """
    p = Path(path)
    with results_lock(p):
        recover(p)
        rows = read_rows(p, validate=False)
        kept = [r for r in rows if r.get("run_id") not in run_ids or (keep is not None and keep(r))]
        if len(kept) == len(rows):
            return 0
        write_text_atomic(p, _csv_text(kept, header=True), fsync=True)
    return len(rows) - len(kept)


def write_curve(path: str | os.PathLike[str], result: Any, **labels: Any) -> Path | None:
    """Write ``result.curve`` (gamma/u/s) and its AUSUC with ``labels`` to ``path`` atomically.

    Written before the unit's rows, so a row implies its curve. Returns the path, or None when the result has no U-S curve (e.g. a selection-only run).
    """
    import numpy as np

    curve = getattr(result, "curve", None) or {}
    if not all(k in curve for k in ("u", "s")):
        return None
    metrics = getattr(result, "metrics", {}) or {}
    with atomic_path(path) as tmp:
        np.savez(tmp, gamma=np.asarray(curve.get("gamma", [])), u=np.asarray(curve["u"]), s=np.asarray(curve["s"]),
                 ausuc=np.asarray(metrics.get("ausuc", math.nan)), **labels)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())  # on disk before the rows that refer to it
        crash_point("curve-mid")
    return Path(path)
