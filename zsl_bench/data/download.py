"""Official sources of the four datasets, a resumable verified HTTP fetch, and safe unpacking.

What ``zsl-bench data download`` fetches is written once per dataset, in its spec
(``DatasetSpec.downloads``): per file its official URL, what is known about its size and sha256,
and which archive members land where under the data root; :func:`all_sources` merges them into
one table (one row per file). Where a sha256 is not known, the first download records it in ``<root>/downloads/checksums.json``
and every later download of that file is verified against the recorded value.

Mirrors: ``--mirror URL`` replaces every official host and path with ``URL/<filename>`` (a flat
directory holding the files under the names of the table's ``filename`` column, e.g.
``https://mirror.example/zsl/xlsa17.zip``; ``file://`` URLs work too).

Only ``urllib`` is used (no extra dependency). Archives are unpacked into a temporary directory that
is renamed at the end; members with absolute paths, ``..`` components, or links pointing outside
the target are refused before anything is written.
"""

from __future__ import annotations

import datetime as _dt
import http.client
import json
import logging
import os
import shutil
import stat
import tarfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..errors import DataError
from ..fileio import atomic_path, write_text_atomic
from ..registry import DATASETS
from .datasets import Origin, get_spec
from .loader import sha256_file

log = logging.getLogger(__name__)

DOWNLOAD_DIR = "downloads"
CHECKSUMS_NAME = "checksums.json"
_CHUNK = 1 << 20  # 1 MiB reads: large enough for throughput, small enough for a smooth progress bar


@dataclass(frozen=True)
class Member:
    """One piece of a source that a dataset needs.

    Attributes:
        dataset: registry name of the dataset the piece belongs to.
        suffix: path inside the archive, matched on whole trailing components (the shortest match
            wins) so that a release re-packed under another top-level folder still works; ``""``
            for a plain (non-archive) file.
        dest: destination relative to the data root (a file or a directory).
    """

    dataset: str
    suffix: str
    dest: str


@dataclass(frozen=True)
class Source:
    """One downloadable file from an official source.

    Attributes:
        filename: local name under ``<root>/downloads/`` and the name under a ``--mirror``.
        url: official URL.
        size: exact size in bytes where known, else None (the server's Content-Length is used).
        sha256: expected digest where known, else None (recorded on the first download).
        status: what is verified about the URL and the digest.
        members: what is taken from it.
    """

    filename: str
    url: str
    size: int | None
    sha256: str | None
    status: str
    members: tuple[Member, ...]

    @property
    def is_archive(self) -> bool:
        return archive_kind(self.filename) is not None


def all_sources() -> tuple[Source, ...]:
    """The download table, built from the dataset specs (``DatasetSpec.downloads``).

    Each official file appears once, in registration order of the datasets that first name it,
    with the pieces every dataset takes from it (xlsa17.zip serves CUB, SUN and AWA2).
    """
    table: dict[str, tuple[Origin, list[Member]]] = {}
    for name, spec in DATASETS.items():
        for piece in spec.downloads:
            origin, members = table.setdefault(piece.origin.filename, (piece.origin, []))
            assert origin == piece.origin, f"two different sources named {origin.filename}"
            members.append(Member(name, piece.suffix, piece.dest))
    return tuple(Source(o.filename, o.url, o.size, o.sha256, o.status, tuple(ms)) for o, ms in table.values())


def sources_for(dataset: str) -> list[Source]:
    """Sources holding at least one member of ``dataset`` (a registry name)."""
    get_spec(dataset)  # unknown names raise with suggestions
    return [s for s in all_sources() if any(m.dataset == dataset for m in s.members)]


def source_url(source: Source, mirror: str | None) -> str:
    """The official URL, or ``<mirror>/<filename>`` when a mirror is given."""
    if not mirror:
        return source.url
    return mirror.rstrip("/") + "/" + source.filename


# ------------------------------------------------------------------ checksums record
def _checksums_path(download_dir: Path) -> Path:
    return download_dir / CHECKSUMS_NAME


def read_checksums(download_dir: Path) -> dict[str, dict]:
    """Digests recorded by earlier downloads: ``{filename: {"sha256", "size", "url", "recorded"}}``."""
    path = _checksums_path(download_dir)
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: unreadable checksum record ({exc}); fix or delete it") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object of filename -> record; fix or delete it")
    return data


def _record_checksum(download_dir: Path, filename: str, url: str, sha256: str, size: int) -> None:
    data = read_checksums(download_dir)
    data[filename] = {"sha256": sha256, "size": size, "url": url,
                      "recorded": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    path = _checksums_path(download_dir)
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


# ------------------------------------------------------------------ fetching
class _Interrupted(Exception):
    """The connection ended before the announced length; the .part file is kept."""


def fetch(url: str, dest: Path, *, sha256: str | None = None, retries: int = 3, timeout: float = 60.0,
          progress: bool = True, mirror_hint: bool = True) -> str:
    """Download ``url`` to ``dest`` resumably and verify it.

    Bytes go to ``dest.part``; an existing ``.part`` is continued with an HTTP Range request (a
    server that ignores Range restarts from zero). After an interruption the fetch resumes up to
    ``retries`` times; if it still fails the ``.part`` is kept for the next run. The finished file is
    hashed; a mismatch with ``sha256`` removes the ``.part`` and raises. Only a verified file is
    renamed to ``dest``.

    Returns:
        The sha256 of the downloaded file.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    attempt = 0
    while True:
        try:
            _fetch_once(url, part, timeout=timeout, progress=progress, mirror_hint=mirror_hint)
            break
        except _Interrupted as exc:
            attempt += 1
            if attempt > retries:
                raise DataError(f"download of {url} interrupted ({exc}); {part} is kept: "
                                "run the same command again to resume") from None
            log.warning("download of %s interrupted (%s); resuming (%d/%d)", url, exc, attempt, retries)
    digest = sha256_file(part)
    if sha256 is not None and digest != sha256.lower():
        part.unlink(missing_ok=True)
        raise DataError(f"checksum mismatch for {url}: expected sha256 {sha256}, got {digest}; "
                        f"the partial file was removed, nothing was written to {dest}")
    os.replace(part, dest)
    return digest


def _open(url: str, offset: int, timeout: float, mirror_hint: bool):  # -> HTTPResponse-like
    req = urllib.request.Request(url, headers={"User-Agent": "zsl-bench"})
    if offset:
        req.add_header("Range", f"bytes={offset}-")
    hint = " or pass --mirror URL (files served as <URL>/<filename>)" if mirror_hint else ""
    try:
        return urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:
            return None  # the .part already holds everything the server has
        raise DataError(f"cannot download {url}: HTTP {exc.code} {exc.reason}; check the URL{hint}") from None
    except (OSError, http.client.HTTPException) as exc:  # URLError, refused, timeout, bad status line
        reason = getattr(exc, "reason", exc)
        raise DataError(f"cannot reach {url} ({reason}); check the network{hint}") from None


def _fetch_once(url: str, part: Path, *, timeout: float, progress: bool, mirror_hint: bool) -> None:
    from tqdm import tqdm

    offset = part.stat().st_size if part.exists() else 0
    resp = _open(url, offset, timeout, mirror_hint)
    if resp is None:
        return
    with resp:
        status = getattr(resp, "status", None) or resp.getcode()
        if offset and status != 206:
            log.info("%s does not support resuming (HTTP %s); starting again from zero", url, status)
            offset = 0
        length = resp.headers.get("Content-Length")
        total = offset + int(length) if length is not None else None
        got = offset
        with open(part, "ab" if offset else "wb") as out, tqdm(
                total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
                desc=part.name[:-5], disable=not progress, leave=False) as bar:
            while True:
                try:
                    block = resp.read(_CHUNK)
                except (OSError, http.client.HTTPException) as exc:  # resets, timeouts, IncompleteRead
                    raise _Interrupted(f"{type(exc).__name__} after {got} bytes") from None
                if not block:
                    break
                out.write(block)
                got += len(block)
                bar.update(len(block))
    if total is not None and got < total:
        raise _Interrupted(f"connection closed after {got} of {total} bytes")


# ------------------------------------------------------------------ unpacking
def archive_kind(name: str) -> str | None:
    """``"zip"``, ``"tar"`` or None for a file name."""
    low = name.lower()
    if low.endswith(".zip"):
        return "zip"
    if low.endswith((".tar.gz", ".tgz", ".tar", ".tar.bz2", ".tar.xz")):
        return "tar"
    return None


def _check_name(archive: Path, name: str) -> PurePosixPath:
    p = PurePosixPath(name.replace("\\", "/"))
    if p.is_absolute() or name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise DataError(f"{archive}: refusing member with an absolute path: {name!r}")
    if ".." in p.parts:
        raise DataError(f"{archive}: refusing member with a '..' component: {name!r}")
    return p


def _check_link(archive: Path, name: PurePosixPath, target: str, hard: bool) -> None:
    t = PurePosixPath(target.replace("\\", "/"))
    if t.is_absolute():
        raise DataError(f"{archive}: refusing link {str(name)!r} -> {target!r} (absolute target)")
    # Hard-link targets are archive-relative; symlink targets are relative to the link's folder.
    parts = list(t.parts) if hard else list(name.parent.parts) + list(t.parts)
    depth = 0
    for part in parts:
        depth = depth - 1 if part == ".." else depth + (part not in ("", "."))
        if depth < 0:
            raise DataError(f"{archive}: refusing link {str(name)!r} -> {target!r} (points outside the target)")


def safe_unpack(archive: Path, target: Path) -> Path:
    """Unpack ``archive`` (zip, tar, tar.gz/tgz) into the new directory ``target``.

    Every member is checked before anything is written; the content goes to ``<target>.tmp`` which is
    renamed to ``target`` at the end (on failure it is removed).
    """
    archive, target = Path(archive), Path(target)
    kind = archive_kind(archive.name)
    if kind is None:
        raise DataError(f"{archive}: not an archive this tool unpacks (zip, tar, tar.gz, tgz)")
    if target.exists():
        raise DataError(f"{target} already exists; remove it to unpack {archive.name} again")
    tmp = target.with_name(target.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        if kind == "zip":
            _unpack_zip(archive, tmp)
        else:
            _unpack_tar(archive, tmp)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _unpack_zip(archive: Path, dest: Path) -> None:
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DataError(f"{archive}: not a readable zip archive ({exc})") from None
    with zf:
        infos = zf.infolist()
        for info in infos:
            name = _check_name(archive, info.filename)
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                _check_link(archive, name, zf.read(info).decode("utf-8", "replace"), hard=False)
        for info in infos:
            # zipfile never creates links (a link entry becomes a small text file), and the names
            # were checked above, so a plain extract stays inside ``dest``.
            zf.extract(info, dest)


def _unpack_tar(archive: Path, dest: Path) -> None:
    try:
        tf = tarfile.open(archive, "r:*")
    except (tarfile.TarError, OSError) as exc:
        raise DataError(f"{archive}: not a readable tar archive ({exc})") from None
    with tf:
        members = tf.getmembers()
        for m in members:
            name = _check_name(archive, m.name)
            if m.issym() or m.islnk():
                _check_link(archive, name, m.linkname, hard=m.islnk())
            elif not (m.isfile() or m.isdir()):
                raise DataError(f"{archive}: refusing special member {m.name!r} (device, fifo)")
        try:
            tf.extractall(dest, members=members, filter="data")
        except TypeError:  # Python without extraction filters: our checks above already ran
            tf.extractall(dest, members=members)
        except tarfile.TarError as exc:
            raise DataError(f"{archive}: refused while unpacking ({exc})") from None


def find_member(root: Path, suffix: str) -> Path | None:
    """The unpacked path whose trailing components equal ``suffix`` (shortest match), or None."""
    want = PurePosixPath(suffix).parts
    best: tuple[int, Path] | None = None
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            parts = p.relative_to(root).parts
            if parts[-len(want):] == want and (best is None or len(parts) < best[0]):
                best = (len(parts), p)
        # Never walk into a matched folder (an image folder holds tens of thousands of files).
        dirnames[:] = [d for d in dirnames if best is None or Path(dirpath) / d != best[1]]
    return best[1] if best else None


# ------------------------------------------------------------------ the command's work
def download_dataset(dataset: str, root: Path, *, mirror: str | None = None, keep_archives: bool = False,
                     retries: int = 3, progress: bool = True, sources: Sequence[Source] | None = None) -> list[Path]:
    """Fetch, verify and unpack everything ``dataset`` needs into ``root``; skip what is present.

    Args:
        dataset: registry name (cub, sun, awa2, flo).
        root: the data root; files land in ``<root>/<DIR>/`` and archives in ``<root>/downloads/``.
        mirror: base URL replacing the official hosts (``<mirror>/<filename>``).
        keep_archives: keep downloaded archives after unpacking (they are deleted by default).
        retries: automatic resumptions after an interrupted transfer.
        sources: the table to use (tests pass their own); defaults to :func:`all_sources`.

    Returns:
        The destination paths now present.
    """
    root = Path(root)
    table = [s for s in (sources if sources is not None else sources_for(dataset))
             if any(m.dataset == dataset for m in s.members)]
    ddir = root / DOWNLOAD_DIR
    done: list[Path] = []
    for src in table:
        members = [m for m in src.members if m.dataset == dataset]
        missing = [m for m in members if not (root / m.dest).exists()]
        if not missing:
            log.info("%s: %s already present, skipped", dataset, ", ".join(m.dest for m in members))
            done += [root / m.dest for m in members]
            continue
        local = _fetch_verified(src, ddir, mirror=mirror, retries=retries, progress=progress)
        if src.is_archive:
            _place_members(src, local, root, missing)
            if not keep_archives and not _needed_later(src, root):
                local.unlink(missing_ok=True)
        else:
            for m in missing:
                dest = root / m.dest
                dest.parent.mkdir(parents=True, exist_ok=True)
                with atomic_path(dest) as tmp:
                    shutil.copyfile(local, tmp)
        done += [root / m.dest for m in members]
    return done


def _needed_later(src: Source, root: Path) -> bool:
    """Whether another dataset still needs members of this archive (xlsa17 serves three)."""
    return any(not (root / m.dest).exists() for m in src.members)


def _fetch_verified(src: Source, ddir: Path, *, mirror: str | None, retries: int, progress: bool) -> Path:
    local = ddir / src.filename
    recorded = read_checksums(ddir).get(src.filename, {}).get("sha256")
    expected = src.sha256 or recorded
    if local.is_file():
        if expected is None or sha256_file(local) == expected:
            return local
        log.warning("%s does not match its recorded sha256; downloading again", local)
        local.unlink()
    url = source_url(src, mirror)
    log.info("downloading %s", url)
    digest = fetch(url, local, sha256=expected, retries=retries, progress=progress)
    if expected is None:
        _record_checksum(ddir, src.filename, url, digest, local.stat().st_size)
        log.info("%s: sha256 %s recorded in %s (first download; not verified against a published value)",
                 src.filename, digest, _checksums_path(ddir))
    return local


def _place_members(src: Source, archive: Path, root: Path, members: Sequence[Member]) -> None:
    unpacked = archive.with_name(archive.name + ".unpacked")
    if unpacked.exists():
        shutil.rmtree(unpacked)
    log.info("unpacking %s", archive.name)
    safe_unpack(archive, unpacked)
    try:
        for m in members:
            found = find_member(unpacked, m.suffix)
            if found is None:
                raise DataError(f"{archive}: no member ending in {m.suffix!r} (needed for {m.dest}); "
                                "the release layout may have changed")
            dest = root / m.dest
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(found, dest)  # same filesystem: a rename, cheap even for image folders
    finally:
        shutil.rmtree(unpacked, ignore_errors=True)
