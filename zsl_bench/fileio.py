"""Atomic file writes: results, tables, figures, curves and checkpoints are never seen half-written.

Every writer goes through :func:`atomic_path`: the content goes to a unique temporary name in the
target's directory (so the rename stays on one filesystem), then ``os.replace`` puts it in place.
On any error, including KeyboardInterrupt, the temporary file is removed and the old target stays.
A ``kill -9`` cannot run that cleanup: the temporary name records host and pid
(``.<name>.<host>~<pid>~<random>.tmp<suffix>``) so :func:`sweep_temp_files` can later remove the
files of dead writers without touching a live writer's.

:func:`crash_point` is the test hook that makes ``kill -9`` deterministic: with
``ZSL_BENCH_CRASH_AT=<point>[:<n>]`` the process SIGKILLs itself at the n-th (default first) pass
through the named point. Tests only; unset, it costs one dictionary lookup.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)

CRASH_ENV = "ZSL_BENCH_CRASH_AT"
_crash_hits: dict[str, int] = {}


def crash_point(name: str) -> None:
    """SIGKILL this process here when ``$ZSL_BENCH_CRASH_AT`` names ``name`` (tests of kill -9 recovery).

    ``name:n`` kills at the n-th pass (counted per process). The points are listed in
    ``CRASH_POINTS`` of the modules that call this (``zsl_bench.results``, ``zsl_bench.study.runner``).
    """
    want = os.environ.get(CRASH_ENV)
    if not want:
        return
    point, _, nth = want.partition(":")
    if point != name:
        return
    _crash_hits[name] = _crash_hits.get(name, 0) + 1
    if _crash_hits[name] >= int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname())[:40] or "host"


_TEMP = re.compile(r"^\.(?P<name>.+)\.(?P<host>[A-Za-z0-9_-]*)~(?P<pid>\d+)~[^/]*\.tmp[^/]*$")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_temp_files(directory: str | os.PathLike[str], *, other_host_age_s: float = 24 * 3600,
                     legacy_age_s: float = 3600) -> list[Path]:
    """Remove temporary files that :func:`atomic_path` writers killed with ``-9`` left in ``directory``.

    A temp file of this host is removed when its writer's pid is gone; one of another host (a shared
    filesystem) or without host/pid in its name (older versions) only when older than the given age,
    since its writer may still be alive. Returns the removed paths.
    """
    d = Path(directory)
    removed: list[Path] = []
    if not d.is_dir():
        return removed
    me, now = _host(), time.time()
    for p in d.iterdir():
        if not p.name.startswith(".") or ".tmp" not in p.name or not p.is_file():
            continue
        m = _TEMP.match(p.name)
        try:
            if m and m["host"] == me:
                stale = not _pid_alive(int(m["pid"]))
            else:
                stale = now - p.stat().st_mtime > (other_host_age_s if m else legacy_age_s)
            if stale:
                p.unlink()
                removed.append(p)
        except FileNotFoundError:
            continue
    if removed:
        log.info("removed %d temporary file(s) left by killed writers in %s", len(removed), d)
    return removed


def _umask() -> int:
    """The process umask, read without changing it (``os.umask`` would, racing other threads)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    return 0o022


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], *, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on a clean exit it replaces ``path``.

    The temporary name ends in ``suffix`` (default: ``path``'s own), so writers that pick a format
    from the extension (matplotlib, ``np.savez``) behave as for the final name. The result gets the
    mode a plain ``open(path, "w")`` would give (an existing file's mode is kept), not mkstemp's 0600.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.{_host()}~{os.getpid()}~", suffix=f".tmp{path.suffix if suffix is None else suffix}",
                                dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        try:
            mode = path.stat().st_mode & 0o777
        except FileNotFoundError:
            mode = 0o666 & ~_umask()
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | os.PathLike[str], text: str, *, fsync: bool = False) -> Path:
    """Write ``text`` to ``path`` atomically; ``fsync`` also flushes it to disk before the rename."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        fh.write(text)
        if fsync:
            fh.flush()
            os.fsync(fh.fileno())
    return Path(path)


_held: dict[str, int] = {}  # lock path -> nesting depth in this process
_held_guard = threading.RLock()


@contextlib.contextmanager
def file_lock(path: str | os.PathLike[str]) -> Iterator[None]:
    """An exclusive advisory lock (``flock``) on ``path``, shared by local processes writing one output dir.

    Re-entrant within a process (a second ``flock`` on a new descriptor of the same file would wait
    for the first forever); threads of one process are serialised by a process-wide lock.
    """
    import fcntl

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    key = str(path.resolve())
    with _held_guard:
        if _held.get(key):
            _held[key] += 1
            try:
                yield
            finally:
                _held[key] -= 1
            return
        with open(path, "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            _held[key] = 1
            try:
                yield
            finally:
                _held.pop(key, None)
                fcntl.flock(fh, fcntl.LOCK_UN)
