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
is renamed at the end; members with absolute paths, ``..`` components, links (symbolic or hard:
dataset archives hold none, and a link safe inside the archive may point outside the data root once
its member is moved there) and special files are refused before anything is written.

A download counts as complete only when its length is known and matched, or (no length from the
server) when its sha256 is known, or its format reads to the end (zip, tar, mat); only then is its
sha256 recorded.
"""

from __future__ import annotations

import datetime as _dt
import http.client
import json
import logging
import os
import re
import shutil
import stat
import tarfile
import urllib.error
import urllib.request
import zipfile
import zlib
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


class _Incomplete(Exception):
    """The .part cannot be shown complete (no length and its format does not read to the end)."""


_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$", re.IGNORECASE)


def fetch(url: str, dest: Path, *, sha256: str | None = None, size: int | None = None, retries: int = 3,
          timeout: float = 60.0, progress: bool = True, mirror_hint: bool = True) -> str:
    """Download ``url`` to ``dest`` resumably, check that it is complete, and verify it.

    Bytes go to ``dest.part``; an existing ``.part`` is continued with an HTTP Range request. A
    ``206`` answer is appended only when its ``Content-Range`` starts at the requested offset (and
    its total matches what is known); a server that ignores Range, or answers with another range,
    restarts the file from zero. After an interruption the fetch resumes up to ``retries`` times;
    if it still fails the ``.part`` is kept for the next run.

    A file is complete only when its length is known (``size``, the server's ``Content-Length`` or
    ``Content-Range`` total) and matched, or, when the server gives no length, when ``sha256`` is
    known and matches or its format (zip, tar, mat) reads to the end. Only a complete file is
    hashed; a mismatch with ``sha256`` removes the ``.part`` and raises. Only a verified file is
    renamed to ``dest``, so no caller can record the digest of a truncated file.

    Returns:
        The sha256 of the downloaded file.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    attempt = 0
    while True:
        try:
            total = _fetch_once(url, part, size=size, timeout=timeout, progress=progress, mirror_hint=mirror_hint)
            _check_complete(url, part, total, known_digest=sha256 is not None)
            break
        except _Interrupted as exc:
            attempt += 1
            if attempt > retries:
                raise DataError(f"download of {url} interrupted ({exc}); {part} is kept: "
                                "run the same command again to resume") from None
            log.warning("download of %s interrupted (%s); resuming (%d/%d)", url, exc, attempt, retries)
        except _Incomplete as exc:
            part.unlink(missing_ok=True)
            attempt += 1
            if attempt > retries:
                raise DataError(f"download of {url} is incomplete or corrupt ({exc}); the partial file was removed "
                                f"and no checksum recorded: run the same command again") from None
            log.warning("download of %s incomplete (%s); starting again from zero (%d/%d)", url, exc, attempt, retries)
    digest = sha256_file(part)
    if sha256 is not None and digest != sha256.lower():
        part.unlink(missing_ok=True)
        raise DataError(f"checksum mismatch for {url}: expected sha256 {sha256}, got {digest}; "
                        f"the partial file was removed, nothing was written to {dest}")
    os.replace(part, dest)
    return digest


def _open(url: str, offset: int, timeout: float, mirror_hint: bool):  # -> HTTPResponse-like or int | None
    """The response, or (after HTTP 416 to a Range request) the total the server states, or None."""
    req = urllib.request.Request(url, headers={"User-Agent": "zsl-bench"})
    if offset:
        req.add_header("Range", f"bytes={offset}-")
    hint = " or pass --mirror URL (files served as <URL>/<filename>)" if mirror_hint else ""
    try:
        return urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # "bytes */TOTAL": the .part may already hold everything
            m = re.match(r"^\s*bytes\s+\*/(\d+)\s*$", (exc.headers.get("Content-Range", "") if exc.headers else "") or "")
            return _RangeEnd(int(m.group(1)) if m else None)
        raise DataError(f"cannot download {url}: HTTP {exc.code} {exc.reason}; check the URL{hint}") from None
    except (OSError, http.client.HTTPException) as exc:  # URLError, refused, timeout, bad status line
        reason = getattr(exc, "reason", exc)
        raise DataError(f"cannot reach {url} ({reason}); check the network{hint}") from None


@dataclass(frozen=True)
class _RangeEnd:
    """HTTP 416 to a resume request: nothing more to send; ``total`` as the server states it."""

    total: int | None


def _agree(url: str, size: int | None, announced: int | None) -> int | None:
    """The file's full length: the known ``size``, checked against what the server announces."""
    if size is not None and announced is not None and announced != size:
        raise DataError(f"cannot download {url}: the server announces {announced} bytes but the file has "
                        f"{size}; a wrong file or a broken mirror, nothing was recorded")
    return size if size is not None else announced


def _fetch_once(url: str, part: Path, *, size: int | None, timeout: float, progress: bool,
                mirror_hint: bool) -> int | None:
    """Fetch (the rest of) ``url`` into ``part``; return the file's full length where known."""
    from tqdm import tqdm

    offset = part.stat().st_size if part.exists() else 0
    resp = _open(url, offset, timeout, mirror_hint)
    if isinstance(resp, _RangeEnd):
        total = _agree(url, size, resp.total)
        if total is not None and total != offset:  # "nothing more", yet the .part is not the whole file
            log.warning("%s: HTTP 416 at byte %d of %d; starting again from zero", url, offset, total)
            part.unlink(missing_ok=True)
            return _fetch_once(url, part, size=size, timeout=timeout, progress=progress, mirror_hint=mirror_hint)
        return total
    with resp:
        status = getattr(resp, "status", None) or resp.getcode()
        length = resp.headers.get("Content-Length")
        try:
            body_len = int(length) if length is not None else None
        except ValueError:
            body_len = None
        if status == 206:
            m = _CONTENT_RANGE.match(resp.headers.get("Content-Range") or "")
            if m is None or int(m.group(1)) != offset:
                got_range = resp.headers.get("Content-Range")
                if not offset:
                    raise DataError(f"cannot download {url}: HTTP 206 to a plain request with Content-Range "
                                    f"{got_range!r}; the server is broken, try --mirror")
                log.warning("%s answered the resume from byte %d with Content-Range %r; starting again from zero",
                            url, offset, got_range)
                resp.close()
                part.unlink(missing_ok=True)
                return _fetch_once(url, part, size=size, timeout=timeout, progress=progress,
                                   mirror_hint=mirror_hint)
            start, end = int(m.group(1)), int(m.group(2))
            total = _agree(url, size, None if m.group(3) == "*" else int(m.group(3)))
            if body_len is not None and body_len != end - start + 1:
                raise DataError(f"cannot download {url}: Content-Length {body_len} does not match Content-Range "
                                f"{resp.headers.get('Content-Range')!r}; the server is broken, try --mirror")
            stop = end + 1  # where this answer's bytes end
        else:
            if offset:
                log.info("%s does not support resuming (HTTP %s); starting again from zero", url, status)
                offset = 0
            total = _agree(url, size, body_len)
            stop = body_len  # type: ignore[assignment]  # None: no length sent, read to the end
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
    if stop is not None and got < stop:
        raise _Interrupted(f"connection closed after {got} of {stop} bytes")
    return total


def _check_complete(url: str, part: Path, total: int | None, *, known_digest: bool) -> None:
    """Raise unless ``part`` is shown complete: its known length, a digest to come, or its format."""
    have = part.stat().st_size if part.exists() else 0
    if total is not None:
        if have < total:
            raise _Interrupted(f"{have} of {total} bytes")
        if have > total:
            raise _Incomplete(f"{have} bytes but the file has {total}")
        return
    if known_digest:
        return  # the expected sha256 decides
    name = part.name[:-len(".part")]
    if _format_kind(name) is None:
        part.unlink(missing_ok=True)
        raise DataError(f"cannot download {url}: the server sent no Content-Length and {name} is not a zip, tar "
                        "or mat file whose end can be checked; refusing a possibly truncated file (nothing "
                        "recorded): use a server or --mirror that sends Content-Length")
    reason = verify_format(part, name=name)
    if reason is not None:
        raise _Incomplete(f"the server sent no length and {reason}")


def _format_kind(name: str) -> str | None:
    return archive_kind(name) or ("mat" if name.lower().endswith(".mat") else None)


def verify_format(path: Path, *, name: str | None = None) -> str | None:
    """None when ``path`` (named ``name``) reads to its end as a zip, tar or mat file, else why not."""
    name = name or path.name
    kind = _format_kind(name)
    try:
        if kind == "zip":
            with zipfile.ZipFile(path) as zf:
                bad = zf.testzip()  # reads every member, checks its CRC
            return None if bad is None else f"zip member {bad!r} is corrupt"
        if kind == "tar":
            with tarfile.open(path, "r:*") as tf:
                for member in tf:
                    if member.isfile():
                        fh = tf.extractfile(member)
                        while fh is not None and fh.read(_CHUNK):
                            pass
            return None
        if kind == "mat":
            with open(path, "rb") as fh:
                hdf5 = fh.read(8) == b"\x89HDF\r\n\x1a\n" or (fh.seek(512) and fh.read(8) == b"\x89HDF\r\n\x1a\n")
            if hdf5:
                import h5py

                with h5py.File(path, "r") as f:
                    f.visititems(lambda _n, obj: obj[()] if isinstance(obj, h5py.Dataset) else None)
            else:
                import scipy.io

                scipy.io.loadmat(path)
            return None
    except Exception as exc:  # noqa: BLE001 (any failure to read it is the answer)
        return f"{name} does not read to its end as a {kind} file ({type(exc).__name__}: {exc})"
    return f"{name} is not a zip, tar or mat file whose end can be checked"


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


def _refuse_link(archive: Path, name: str, target: str, hard: bool) -> None:
    """Dataset archives hold no links; one would point elsewhere once members are moved into the root."""
    kind = "hard link" if hard else "symbolic link"
    raise DataError(f"{archive}: refusing member {name!r}, a {kind} to {target!r}: dataset archives hold "
                    "no links (a link safe inside the archive can point outside the data root once moved)")


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
        _no_links(archive, tmp)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _no_links(archive: Path, tree: Path) -> None:
    """Whatever the unpacker did, nothing unpacked may be a link (checked where the files landed)."""
    for dirpath, dirnames, filenames in os.walk(tree):
        for n in dirnames + filenames:
            p = Path(dirpath) / n
            if p.is_symlink():
                _refuse_link(archive, str(p.relative_to(tree)), os.readlink(p), hard=False)


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
                _refuse_link(archive, str(name), zf.read(info).decode("utf-8", "replace")[:200], hard=False)
        for info in infos:
            # zipfile never creates links, and the names were checked above, so a plain extract
            # stays inside ``dest``.
            try:
                zf.extract(info, dest)
            except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as exc:
                raise DataError(f"{archive}: cannot unpack member {info.filename!r} ({exc})") from None


def _unpack_tar(archive: Path, dest: Path) -> None:
    try:
        tf = tarfile.open(archive, "r:*")
    except (tarfile.TarError, OSError) as exc:
        raise DataError(f"{archive}: not a readable tar archive ({exc})") from None
    with tf:
        try:
            members = tf.getmembers()  # reads the whole archive: a truncated one fails here
        except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
            raise DataError(f"{archive}: truncated or corrupt tar archive ({exc})") from None
        for m in members:
            name = _check_name(archive, m.name)
            if m.issym() or m.islnk():
                _refuse_link(archive, str(name), m.linkname, hard=m.islnk())
            elif not (m.isfile() or m.isdir()):
                raise DataError(f"{archive}: refusing special member {m.name!r} (device, fifo)")
        try:
            tf.extractall(dest, members=members, filter="data")
        except TypeError:  # Python without extraction filters: our checks above already ran
            tf.extractall(dest, members=members)
        except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
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
    record = read_checksums(ddir).get(src.filename, {})
    recorded = record.get("sha256") if isinstance(record, dict) else None
    expected = src.sha256 or recorded
    if local.is_file():
        if expected is None or sha256_file(local) == expected:
            return local
        log.warning("%s does not match its recorded sha256; downloading again", local)
        local.unlink()
    url = source_url(src, mirror)
    log.info("downloading %s", url)
    try:
        digest = fetch(url, local, sha256=expected, size=src.size, retries=retries, progress=progress)
    except DataError as exc:
        if src.sha256 is None and recorded and "checksum mismatch" in str(exc):
            raise DataError(f"{exc} (the expected value was recorded by an earlier download in "
                            f"{_checksums_path(ddir)}; if that download was wrong, delete its "
                            f"{src.filename!r} entry)") from None
        raise
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
