"""Downloads against a local HTTP server (127.0.0.1, Range support) and safe unpacking. Offline."""

from __future__ import annotations

import hashlib
import io
import json
import socket
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from archives import tgz_bytes

from zsl_bench.cli.main import main
from zsl_bench.data.datasets import dataset_names
from zsl_bench.data.download import (
    CHECKSUMS_NAME,
    DOWNLOAD_DIR,
    Member,
    Source,
    all_sources,
    download_dataset,
    fetch,
    read_checksums,
    safe_unpack,
    source_url,
)
from zsl_bench.errors import DataError


class FileServer:
    """Serves ``files`` (path -> bytes) with Range support; ``cut_once[path] = K`` closes after K bytes once."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.cut_once: dict[str, int] = {}
        self.requests: list[tuple[str, str | None]] = []  # (path, Range header)
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # keep test output quiet
                pass

            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                rng = self.headers.get("Range")
                server.requests.append((self.path, rng))
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                start = 0
                if rng:
                    start = int(rng.removeprefix("bytes=").split("-")[0])
                    if start >= len(body):
                        self.send_response(416)
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                payload = body[start:]
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                cut = server.cut_once.pop(self.path, None)
                if cut is not None:
                    self.wfile.write(payload[:cut])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.wfile.write(payload)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> FileServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def server() -> Iterator[FileServer]:
    with FileServer() as s:
        yield s


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def _payload(n: int = 300_000) -> bytes:
    return bytes((i * 7919) % 251 for i in range(n))


# ------------------------------------------------------------------ fetch
def test_full_download_verifies(server: FileServer, tmp_path: Path) -> None:
    body = _payload()
    server.files["/a.bin"] = body
    dest = tmp_path / "a.bin"
    digest = fetch(server.url + "/a.bin", dest, sha256=_sha(body), progress=False)
    assert digest == _sha(body)
    assert dest.read_bytes() == body
    assert not dest.with_name("a.bin.part").exists()
    assert server.requests == [("/a.bin", None)]


def test_interrupted_download_resumes_with_range(server: FileServer, tmp_path: Path) -> None:
    body = _payload()
    server.files["/a.bin"] = body
    server.cut_once["/a.bin"] = 100_000
    dest = tmp_path / "a.bin"
    with pytest.raises(DataError, match="interrupted.*run the same command again"):
        fetch(server.url + "/a.bin", dest, sha256=_sha(body), retries=0, progress=False)
    part = dest.with_name("a.bin.part")
    assert not dest.exists()
    assert 0 < part.stat().st_size <= 100_000
    kept = part.stat().st_size
    fetch(server.url + "/a.bin", dest, sha256=_sha(body), retries=0, progress=False)
    assert server.requests[-1] == ("/a.bin", f"bytes={kept}-")
    assert dest.read_bytes() == body and not part.exists()


def test_interruption_resumed_automatically(server: FileServer, tmp_path: Path) -> None:
    body = _payload()
    server.files["/a.bin"] = body
    server.cut_once["/a.bin"] = 50_000
    dest = tmp_path / "a.bin"
    fetch(server.url + "/a.bin", dest, sha256=_sha(body), retries=2, progress=False)
    assert dest.read_bytes() == body
    assert len(server.requests) == 2 and server.requests[1][1] is not None


def test_checksum_mismatch_leaves_nothing(server: FileServer, tmp_path: Path) -> None:
    server.files["/a.bin"] = _payload(10_000)
    dest = tmp_path / "a.bin"
    with pytest.raises(DataError, match=r"checksum mismatch for http://127\.0\.0\.1:\d+/a\.bin"):
        fetch(server.url + "/a.bin", dest, sha256="0" * 64, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_unreachable_source_names_url_and_mirror(tmp_path: Path) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    url = f"http://127.0.0.1:{port}/x.zip"
    with pytest.raises(DataError, match=r"cannot reach .*x\.zip.*--mirror") as err:
        fetch(url, tmp_path / "x.zip", progress=False, timeout=5)
    assert "\n" not in str(err.value)


def test_http_404_is_clear(server: FileServer, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="HTTP 404"):
        fetch(server.url + "/missing.zip", tmp_path / "m.zip", progress=False)


# ------------------------------------------------------------------ the table and the command
def test_table_is_consistent() -> None:
    table = all_sources()
    names = [s.filename for s in table]
    assert len(names) == len(set(names)), "mirror layout <URL>/<filename> needs unique names"
    covered = {m.dataset for s in table for m in s.members}
    assert covered == set(dataset_names()) == {"cub", "sun", "awa2", "flo"}
    for ds in covered:  # every dataset gets its split file and its images
        dests = {m.dest for s in table for m in s.members if m.dataset == ds}
        assert any(d.endswith("att_splits.mat") for d in dests) and any(d.endswith("/images") for d in dests)
    assert source_url(table[0], "https://m.example/zsl/") == "https://m.example/zsl/xlsa17.zip"


def test_download_dataset_unpacks_records_and_skips(server: FileServer, tmp_path: Path) -> None:
    archive = tgz_bytes({"CUB_200_2011/images/001.A/a.jpg": b"img-a", "CUB_200_2011/images/002.B/b.jpg": b"img-b",
                      "attributes.txt": b"1 has_bill_shape::dagger\n", "CUB_200_2011/README": b"r"})
    server.files["/mirror/imgs.tgz"] = archive
    server.files["/mirror/labels.mat"] = b"labels"
    table = [
        Source("imgs.tgz", "http://unused.invalid/imgs.tgz", None, None, "test",
               (Member("cub", "CUB_200_2011/images", "CUB/images"), Member("cub", "attributes.txt", "CUB/attributes.txt"))),
        Source("labels.mat", "http://unused.invalid/labels.mat", None, None, "test",
               (Member("cub", "", "CUB/labels.mat"),)),
    ]
    root = tmp_path / "root"
    download_dataset("cub", root, mirror=server.url + "/mirror", sources=table, progress=False)
    assert (root / "CUB/images/001.A/a.jpg").read_bytes() == b"img-a"
    assert (root / "CUB/images/002.B/b.jpg").read_bytes() == b"img-b"
    assert (root / "CUB/attributes.txt").read_text().startswith("1 has_bill")
    assert (root / "CUB/labels.mat").read_bytes() == b"labels"
    record = read_checksums(root / DOWNLOAD_DIR)
    assert record["imgs.tgz"]["sha256"] == _sha(archive)
    assert json.loads((root / DOWNLOAD_DIR / CHECKSUMS_NAME).read_text())["labels.mat"]["size"] == 6
    assert not (root / DOWNLOAD_DIR / "imgs.tgz").exists()  # archives are removed once unpacked
    assert not any(p.name.endswith((".tmp", ".unpacked", ".part")) for p in root.rglob("*"))
    n = len(server.requests)
    download_dataset("cub", root, mirror=server.url + "/mirror", sources=table, progress=False)
    assert len(server.requests) == n  # everything present: nothing fetched again


def test_recorded_checksum_is_enforced(server: FileServer, tmp_path: Path) -> None:
    table = [Source("f.mat", "http://unused.invalid/f.mat", None, None, "test", (Member("sun", "", "SUN/f.mat"),))]
    server.files["/f.mat"] = b"first"
    root = tmp_path / "root"
    download_dataset("sun", root, mirror=server.url, sources=table, progress=False)
    (root / "SUN/f.mat").unlink()
    (root / DOWNLOAD_DIR / "f.mat").unlink()
    server.files["/f.mat"] = b"tampered"
    with pytest.raises(DataError, match="checksum mismatch"):
        download_dataset("sun", root, mirror=server.url, sources=table, progress=False)
    assert not (root / "SUN/f.mat").exists() and not (root / DOWNLOAD_DIR / "f.mat.part").exists()


def test_cli_download_unreachable_mirror_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    rc = main(["data", "download", "flo", "--data-root", str(tmp_path), "--mirror", f"http://127.0.0.1:{port}"])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert err.startswith("zsl-bench: error: cannot reach") and "--mirror" in err and "\n" not in err
    assert not any(p.is_file() for p in tmp_path.rglob("*"))


# ------------------------------------------------------------------ safe unpacking
def _tar_with(tmp_path: Path, info: tarfile.TarInfo, data: bytes = b"x") -> Path:
    path = tmp_path / "bad.tar.gz"
    with tarfile.open(path, "w:gz") as tf:
        ok = tarfile.TarInfo("fine/ok.txt")
        ok.size = 2
        tf.addfile(ok, io.BytesIO(b"ok"))
        if info.isfile():
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        else:
            tf.addfile(info)
    return path


def _assert_refused(archive: Path, target: Path, match: str) -> None:
    with pytest.raises(DataError, match=match):
        safe_unpack(archive, target)
    assert not target.exists()
    assert not target.with_name(target.name + ".tmp").exists()
    assert not (target.parent / "evil.txt").exists()


def test_tar_dotdot_member_refused(tmp_path: Path) -> None:
    _assert_refused(_tar_with(tmp_path, tarfile.TarInfo("fine/../../evil.txt")), tmp_path / "out", r"'\.\.'")


def test_tar_absolute_member_refused(tmp_path: Path) -> None:
    evil = tmp_path / "evil.txt"
    _assert_refused(_tar_with(tmp_path, tarfile.TarInfo(str(evil))), tmp_path / "out", "absolute path")
    assert not evil.exists()


def test_tar_links_refused(tmp_path: Path) -> None:
    for target in ("../../evil.txt", "/etc/passwd", "../ok.txt"):  # outside, absolute, and even inside
        link = tarfile.TarInfo("fine/sub/link")
        link.type = tarfile.SYMTYPE
        link.linkname = target
        _assert_refused(_tar_with(tmp_path, link), tmp_path / "out", r"'fine/sub/link', a symbolic link")
    hard = tarfile.TarInfo("fine/hard")
    hard.type = tarfile.LNKTYPE
    hard.linkname = "fine/ok.txt"
    _assert_refused(_tar_with(tmp_path, hard), tmp_path / "out", r"'fine/hard', a hard link")


def test_zip_bad_members_refused(tmp_path: Path) -> None:
    for name, match in (("../evil.txt", r"'\.\.'"), ("/abs/evil.txt", "absolute path")):
        path = tmp_path / "bad.zip"
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("fine/ok.txt", b"ok")
            zf.writestr(zipfile.ZipInfo(name), b"x")
        _assert_refused(path, tmp_path / "out", match)
    path = tmp_path / "link.zip"
    with zipfile.ZipFile(path, "w") as zf:
        info = zipfile.ZipInfo("fine/link")
        info.external_attr = (0o120777 << 16)  # a symlink entry; its content is the target
        zf.writestr(info, b"../../evil.txt")
    _assert_refused(path, tmp_path / "out", "a symbolic link to '../../evil.txt'")


def test_zip_unpacks_and_renames(tmp_path: Path) -> None:
    path = tmp_path / "good.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("top/a/b.txt", b"b")
    out = safe_unpack(path, tmp_path / "out")
    assert (out / "top/a/b.txt").read_bytes() == b"b"
    with pytest.raises(DataError, match="already exists"):
        safe_unpack(path, out)
