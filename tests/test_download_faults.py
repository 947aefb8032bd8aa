"""Downloads that must not install a wrong file, against a scripted loopback server (127.0.0.1).

Each request to a path takes the next behaviour from its script (then behaves well): a body cut
without a Content-Length, a 206 whose Content-Range starts elsewhere or is missing, a 416, a length
that disagrees with the known size. Archives with links, and a ``--data-root`` that is a file or
unreadable, go through the CLI in a subprocess (``tests/clicase.py``). Offline; the server stops
by itself after a minute even if a test forgets it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from archives import tgz_bytes, zip_bytes
from clicase import Outcome, assert_clean_failure, cli_env, digest_tree, run_cli

from zsl_bench.data.download import (
    CHECKSUMS_NAME,
    DOWNLOAD_DIR,
    Member,
    Source,
    download_dataset,
    fetch,
    read_checksums,
    safe_unpack,
    verify_format,
)
from zsl_bench.errors import DataError


class ScriptedServer:
    """Serves ``files[path]``; ``script[path]`` lists behaviours for the next requests, in order.

    Behaviours: ``ok`` (Range honoured, Content-Length sent), ``nolen`` (200, whole body, no
    Content-Length, connection closed), ``nolen_cut:K`` (200, first K bytes, no length, closed),
    ``cut:K`` (Content-Length sent, closed after K bytes), ``wrong_start`` (206 to a Range request
    with the body and Content-Range from byte 0), ``no_range`` (206 with the requested bytes but no
    Content-Range), ``plain_206`` (206 to a plain request, Content-Range from byte 5),
    ``len_mismatch`` (206 whose Content-Length is one less than its Content-Range), ``416`` and
    ``416_bare`` (416 with and without ``bytes */TOTAL``).
    """

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.script: dict[str, list[str]] = {}
        self.requests: list[tuple[str, str | None]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                rng = self.headers.get("Range")
                server.requests.append((self.path, rng))
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                steps = server.script.get(self.path) or []
                mode = steps.pop(0) if steps else "ok"
                start = int(rng.removeprefix("bytes=").split("-")[0]) if rng else 0
                n = len(body)
                if mode.startswith("nolen"):
                    cut = int(mode.split(":")[1]) if ":" in mode else n
                    self.send_response(200)
                    self.end_headers()
                    self.wfile.write(body[:cut])
                    self.close_connection = True
                    return
                if mode in ("416", "416_bare"):
                    self.send_response(416)
                    if mode == "416":
                        self.send_header("Content-Range", f"bytes */{n}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if mode == "wrong_start" and rng:
                    self._send(206, body, {"Content-Range": f"bytes 0-{n - 1}/{n}"})
                    return
                if mode == "no_range" and rng:
                    self._send(206, body[start:], {})
                    return
                if mode == "plain_206":
                    self._send(206, body[5:], {"Content-Range": f"bytes 5-{n - 1}/{n}"})
                    return
                if mode == "len_mismatch" and rng:
                    payload = body[start:-1]
                    self._send(206, payload, {"Content-Range": f"bytes {start}-{n - 1}/{n}"})
                    return
                if rng:
                    if start >= n:
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{n}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    status, payload, extra = 206, body[start:], {"Content-Range": f"bytes {start}-{n - 1}/{n}"}
                else:
                    status, payload, extra = 200, body, {}
                if mode.startswith("cut:"):
                    self.send_response(status)
                    for k, v in extra.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload[:int(mode.split(":")[1])])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self._send(status, payload, extra)

            def _send(self, status: int, payload: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.watchdog = threading.Timer(60.0, self.httpd.shutdown)  # stops by itself
        self.watchdog.daemon = True

    def __enter__(self) -> ScriptedServer:
        self.thread.start()
        self.watchdog.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.watchdog.cancel()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with ScriptedServer() as s:
        yield s


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def _noise(n: int, seed: int = 0) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


def _mat(seed: int = 0) -> bytes:
    buf = io.BytesIO()
    scipy.io.savemat(buf, {"labels": np.random.default_rng(seed).integers(1, 103, (1, 40_000)).astype(np.float64)})
    return buf.getvalue()


ZIP = zip_bytes({"pack/a.bin": _noise(200_000, 1), "pack/b.bin": _noise(100_000, 2)})
TGZ = tgz_bytes({"pack/a.bin": _noise(200_000, 3)})
MAT = _mat()


def _get(server: ScriptedServer, tmp_path: Path, name: str, body: bytes, script: list[str], **kw) -> Path:
    server.files["/" + name] = body
    server.script["/" + name] = list(script)
    dest = tmp_path / name
    fetch(server.url + "/" + name, dest, progress=False, **kw)
    return dest


# ------------------------------------------------------------------ no Content-Length
@pytest.mark.parametrize("name,body", [("t.zip", ZIP), ("t.tgz", TGZ), ("t.mat", MAT)], ids=["zip", "tgz", "mat"])
def test_truncated_without_length_is_never_accepted(server: ScriptedServer, tmp_path: Path, name: str,
                                                    body: bytes) -> None:
    with pytest.raises(DataError, match=rf"download of .*/{name} is incomplete or corrupt .*no checksum recorded"):
        _get(server, tmp_path, name, body, [f"nolen_cut:{len(body) // 2}"] * 4, retries=3)
    assert list(tmp_path.iterdir()) == []  # no file, no .part
    assert len(server.requests) == 4  # tried again from zero each time, never with Range
    assert all(r is None for _, r in server.requests)


def test_truncated_once_without_length_restarts_from_zero(server: ScriptedServer, tmp_path: Path) -> None:
    dest = _get(server, tmp_path, "t.zip", ZIP, [f"nolen_cut:{len(ZIP) - 100}"], retries=1)
    assert dest.read_bytes() == ZIP


@pytest.mark.parametrize("name,body", [("t.zip", ZIP), ("t.tgz", TGZ), ("t.mat", MAT)], ids=["zip", "tgz", "mat"])
def test_whole_file_without_length_is_accepted_once_its_format_reads(server: ScriptedServer, tmp_path: Path,
                                                                      name: str, body: bytes) -> None:
    dest = _get(server, tmp_path, name, body, ["nolen"], retries=0)
    assert dest.read_bytes() == body


def test_unverifiable_format_without_length_is_refused(server: ScriptedServer, tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"no Content-Length and t\.bin is not a zip, tar or mat file") as err:
        _get(server, tmp_path, "t.bin", b"whole but unverifiable", ["nolen"], retries=3)
    assert "\n" not in str(err.value) and list(tmp_path.iterdir()) == []
    assert len(server.requests) == 1  # no pointless retries


def test_without_length_a_known_digest_decides(server: ScriptedServer, tmp_path: Path) -> None:
    dest = _get(server, tmp_path, "t.bin", b"payload", ["nolen"], sha256=_sha(b"payload"), retries=0)
    assert dest.read_bytes() == b"payload"
    with pytest.raises(DataError, match="checksum mismatch"):
        _get(server, tmp_path, "u.bin", b"payload", ["nolen_cut:3"], sha256=_sha(b"payload"), retries=0)
    assert not (tmp_path / "u.bin").exists() and not (tmp_path / "u.bin.part").exists()


# ------------------------------------------------------------------ 206 / 416
def _resume(server: ScriptedServer, tmp_path: Path, name: str, body: bytes, have: int, script: list[str],
            **kw) -> Path:
    """A .part holding the first ``have`` bytes of ``body``, then fetch."""
    (tmp_path / (name + ".part")).write_bytes(body[:have])
    return _get(server, tmp_path, name, body, script, **kw)


def test_206_from_the_wrong_offset_restarts_from_zero(server: ScriptedServer, tmp_path: Path) -> None:
    dest = _resume(server, tmp_path, "t.zip", ZIP, 1000, ["wrong_start"], retries=0)
    assert dest.read_bytes() == ZIP  # not the part plus the whole body again
    assert server.requests == [("/t.zip", "bytes=1000-"), ("/t.zip", None)]


def test_206_without_content_range_restarts_from_zero(server: ScriptedServer, tmp_path: Path) -> None:
    dest = _resume(server, tmp_path, "t.bin", ZIP, 1000, ["no_range"], retries=0)
    assert dest.read_bytes() == ZIP
    assert server.requests[-1] == ("/t.bin", None)


def test_good_206_appends(server: ScriptedServer, tmp_path: Path) -> None:
    dest = _resume(server, tmp_path, "t.bin", ZIP, 1000, [], retries=0, sha256=_sha(ZIP))
    assert dest.read_bytes() == ZIP and server.requests == [("/t.bin", "bytes=1000-")]


def test_206_to_a_plain_request_is_refused(server: ScriptedServer, tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"HTTP 206 to a plain request with Content-Range 'bytes 5-"):
        _get(server, tmp_path, "t.zip", ZIP, ["plain_206"], retries=3)
    assert not (tmp_path / "t.zip").exists()


def test_206_length_disagreeing_with_its_range_is_refused(server: ScriptedServer, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="Content-Length .* does not match Content-Range"):
        _resume(server, tmp_path, "t.zip", ZIP, 1000, ["len_mismatch"], retries=3)
    assert not (tmp_path / "t.zip").exists()


def test_total_disagreeing_with_the_known_size_is_refused(server: ScriptedServer, tmp_path: Path) -> None:
    with pytest.raises(DataError, match=rf"announces {len(ZIP)} bytes but the file has {len(ZIP) + 1}"):
        _get(server, tmp_path, "t.zip", ZIP, [], size=len(ZIP) + 1)
    with pytest.raises(DataError, match=rf"announces {len(ZIP)} bytes but the file has 10"):
        _resume(server, tmp_path, "u.zip", ZIP, 5, [], size=10)  # the Content-Range total


def test_416_with_total_accepts_a_complete_part(server: ScriptedServer, tmp_path: Path) -> None:
    dest = _resume(server, tmp_path, "t.bin", ZIP, len(ZIP), ["416"], retries=0)
    assert dest.read_bytes() == ZIP and len(server.requests) == 1


def test_416_with_a_larger_total_starts_again(server: ScriptedServer, tmp_path: Path) -> None:
    dest = _resume(server, tmp_path, "t.bin", ZIP, 100, ["416"], retries=0)
    assert dest.read_bytes() == ZIP
    assert server.requests == [("/t.bin", "bytes=100-"), ("/t.bin", None)]


def test_416_bare_on_a_truncated_part_starts_again(server: ScriptedServer, tmp_path: Path) -> None:
    dest = _resume(server, tmp_path, "t.zip", ZIP, len(ZIP) - 10, ["416_bare"], retries=1)
    assert dest.read_bytes() == ZIP
    assert server.requests == [("/t.zip", f"bytes={len(ZIP) - 10}-"), ("/t.zip", None)]


def test_verify_format_reads_to_the_end(tmp_path: Path) -> None:
    for name, body in (("a.zip", ZIP), ("a.tgz", TGZ), ("a.mat", MAT)):
        (tmp_path / name).write_bytes(body)
        assert verify_format(tmp_path / name) is None
        (tmp_path / name).write_bytes(body[:-len(body) // 3])
        assert "does not read to its end" in verify_format(tmp_path / name)
    bad = bytearray(ZIP)
    bad[200] ^= 0xFF  # inside the first member's data: the CRC check finds it
    (tmp_path / "c.zip").write_bytes(bytes(bad))
    assert verify_format(tmp_path / "c.zip") is not None


# ------------------------------------------------------------------ nothing recorded for a bad file
def test_good_file_fetched_after_a_truncated_attempt(server: ScriptedServer, tmp_path: Path) -> None:
    table = [Source("imgs.tgz", "http://unused.invalid/imgs.tgz", None, None, "test",
                    (Member("cub", "images", "CUB/images"),))]
    body = tgz_bytes({"x/images/001/a.jpg": _noise(150_000, 5)})
    server.files["/imgs.tgz"] = body
    server.script["/imgs.tgz"] = [f"nolen_cut:{len(body) // 2}"] * 2
    root = tmp_path / "root"
    with pytest.raises(DataError, match="incomplete or corrupt"):
        download_dataset("cub", root, mirror=server.url, sources=table, progress=False, retries=1)
    assert read_checksums(root / DOWNLOAD_DIR) == {}
    assert not (root / "CUB").exists()
    download_dataset("cub", root, mirror=server.url, sources=table, progress=False, retries=1)
    assert read_checksums(root / DOWNLOAD_DIR)["imgs.tgz"]["sha256"] == _sha(body)
    assert (root / "CUB/images/001/a.jpg").stat().st_size == 150_000


def test_wrong_recorded_checksum_says_how_to_recover(server: ScriptedServer, tmp_path: Path) -> None:
    table = [Source("f.mat", "http://unused.invalid/f.mat", None, None, "test", (Member("sun", "", "SUN/f.mat"),))]
    root = tmp_path / "root"
    (root / DOWNLOAD_DIR).mkdir(parents=True)
    (root / DOWNLOAD_DIR / CHECKSUMS_NAME).write_text(json.dumps({"f.mat": {"sha256": "0" * 64, "size": 3}}))
    server.files["/f.mat"] = MAT
    with pytest.raises(DataError, match=r"checksum mismatch.*recorded by an earlier download.*delete its 'f\.mat'"):
        download_dataset("sun", root, mirror=server.url, sources=table, progress=False)


# ------------------------------------------------------------------ archives: links
def test_link_safe_in_the_archive_but_outside_once_placed_is_refused(server: ScriptedServer,
                                                                      tmp_path: Path) -> None:
    """``deep/1/.../8/attributes.txt -> ../../../../../../../etc/hostname`` stays inside the archive, but
    moved to ``<root>/CUB/attributes.txt`` it would read ``/etc/hostname``."""
    up = "../" * 7 + "etc/hostname"
    body = tgz_bytes({"CUB_200_2011/images/001/a.jpg": b"img"},
                {"d1/d2/d3/d4/d5/d6/d7/d8/attributes.txt": (up, tarfile.SYMTYPE)})
    table = [Source("c.tgz", "http://unused.invalid/c.tgz", None, None, "test",
                    (Member("cub", "CUB_200_2011/images", "CUB/images"), Member("cub", "attributes.txt",
                                                                              "CUB/attributes.txt")))]
    server.files["/c.tgz"] = body
    root = tmp_path / "root"
    with pytest.raises(DataError, match=r"c\.tgz: refusing member 'd1/.*/attributes\.txt', a symbolic link"):
        download_dataset("cub", root, mirror=server.url, sources=table, progress=False)
    assert not (root / "CUB").exists()
    assert not any(p.is_symlink() for p in root.rglob("*"))


def test_hard_link_in_archive_refused(tmp_path: Path) -> None:
    path = tmp_path / "h.tgz"
    path.write_bytes(tgz_bytes({"a/data.txt": b"d"}, {"a/attributes.txt": ("a/data.txt", tarfile.LNKTYPE)}))
    with pytest.raises(DataError, match=r"h\.tgz: refusing member 'a/attributes\.txt', a hard link to 'a/data\.txt'"):
        safe_unpack(path, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.tmp").exists()


def test_hard_link_to_an_outside_file_refused(tmp_path: Path) -> None:
    path = tmp_path / "h.tar"
    with tarfile.open(path, "w") as tf:
        info = tarfile.TarInfo("attributes.txt")
        info.type = tarfile.LNKTYPE
        info.linkname = "/etc/hostname"
        tf.addfile(info)
    with pytest.raises(DataError, match="a hard link to '/etc/hostname'"):
        safe_unpack(path, tmp_path / "out")


def test_fifo_in_archive_refused(tmp_path: Path) -> None:
    path = tmp_path / "f.tar"
    with tarfile.open(path, "w") as tf:
        info = tarfile.TarInfo("pipe")
        info.type = tarfile.FIFOTYPE
        tf.addfile(info)
    with pytest.raises(DataError, match="refusing special member 'pipe'"):
        safe_unpack(path, tmp_path / "out")


def test_truncated_archive_on_disk_is_one_error(tmp_path: Path) -> None:
    path = tmp_path / "t.tgz"
    path.write_bytes(TGZ[:len(TGZ) // 2])
    with pytest.raises(DataError, match=r"t\.tgz"):
        safe_unpack(path, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.tmp").exists()


# ------------------------------------------------------------------ through the CLI
def _flo_files(labels: bytes) -> dict[str, bytes]:
    return {"/cvpr18xian.zip": zip_bytes({"data/FLO/att_splits.mat": b"a", "data/FLO/res101.mat": b"r"}),
            "/102flowers.tgz": tgz_bytes({"jpg/image_00001.jpg": b"j"}),
            "/imagelabels.mat": labels, "/setid.mat": _mat(9)}


def test_cli_truncated_download_then_good_one(server: ScriptedServer, tmp_path: Path) -> None:
    server.files.update(_flo_files(MAT))
    server.script["/imagelabels.mat"] = [f"nolen_cut:{len(MAT) // 2}"] * 4
    root = tmp_path / "root"
    res = run_cli(["data", "download", "flo", "--data-root", root, "--mirror", server.url], env=_env())
    assert_clean_failure(res, names=["imagelabels.mat", "incomplete", "no checksum recorded"])
    assert "imagelabels.mat" not in read_checksums(root / DOWNLOAD_DIR)
    assert not (root / "FLO/oxford/imagelabels.mat").exists()
    res = run_cli(["data", "download", "flo", "--data-root", root, "--mirror", server.url], env=_env())
    assert res.returncode == 0, res.stderr
    assert read_checksums(root / DOWNLOAD_DIR)["imagelabels.mat"]["sha256"] == _sha(MAT)
    assert (root / "FLO/oxford/imagelabels.mat").read_bytes() == MAT


def test_cli_relocated_link_refused(server: ScriptedServer, tmp_path: Path) -> None:
    server.files["/xlsa17.zip"] = zip_bytes({"xlsa17/data/CUB/att_splits.mat": b"a", "xlsa17/data/CUB/res101.mat": b"r"})
    server.files["/CUB_200_2011.tgz"] = tgz_bytes(
        {"CUB_200_2011/images/001/a.jpg": b"img"},
        {"CUB_200_2011/x/y/z/w/attributes.txt": ("../../../../../../etc/hostname", tarfile.SYMTYPE)})
    root = tmp_path / "root"
    res = run_cli(["data", "download", "cub", "--data-root", root, "--mirror", server.url], env=_env())
    assert_clean_failure(res, names=["CUB_200_2011.tgz", "attributes.txt", "symbolic link"])
    assert not (root / "CUB/attributes.txt").exists() and not (root / "CUB/images").exists()
    assert not any(p.is_symlink() for p in root.rglob("*"))


def _env() -> dict[str, str]:
    return cli_env(no_proxy="127.0.0.1,localhost", NO_PROXY="127.0.0.1,localhost")


# ------------------------------------------------------------------ --data-root that is not a directory
DATA_ROOT_COMMANDS = [
    ["data", "info", "cub"], ["data", "verify", "cub"], ["data", "download", "cub", "--mirror", "http://127.0.0.1:9"],
    ["data", "extract", "cub"], ["data", "import", "cub", "x.hdf5"], ["data", "sim", "cub", "--out", "simout"],
    ["run", "ale", "--datasets", "cub"], ["ablate", "--sim", "tiny"],
]


@pytest.mark.parametrize("args", DATA_ROOT_COMMANDS, ids=lambda a: "-".join(a[:2]))
def test_data_root_that_is_a_file(tmp_path: Path, args: list[str]) -> None:
    root = tmp_path / "root.txt"
    root.write_text("not a directory\n")
    out = tmp_path / "out"
    res = run_cli([*args, "--data-root", root, *(["--out", out] if args[0] in ("run", "ablate") else [])],
                  cwd=tmp_path)
    assert_clean_failure(res, names=["--data-root", str(root), "not a directory"])
    assert root.read_text() == "not a directory\n"
    assert not out.exists() and not (tmp_path / "simout").exists()


def test_env_data_root_that_is_a_file(tmp_path: Path) -> None:
    root = tmp_path / "root.txt"
    root.write_text("x")
    res = run_cli(["data", "info", "cub"], env=cli_env(ZSL_BENCH_DATA=str(root)))
    assert_clean_failure(res, names=["$ZSL_BENCH_DATA", str(root), "not a directory"])


def _unprivileged() -> list[str]:
    """A prefix under which permission bits apply: as root, drop the capabilities that bypass them."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.fail("running as root without setpriv: cannot test an unreadable directory")
    return [setpriv, "--bounding-set=-dac_override,-dac_read_search"]


@pytest.mark.parametrize("what", ["dataset directory", "data root"])
def test_unreadable_dataset_directory(tmp_path: Path, what: str) -> None:
    shared = Path(os.environ.get("ZSL_BENCH_SHARED_DATA", ""))
    root = tmp_path / "root"
    (root / "CUB").mkdir(parents=True)
    if (shared / "CUB/att_splits.mat").is_file():
        shutil.copy(shared / "CUB/att_splits.mat", root / "CUB/att_splits.mat")
    else:
        (root / "CUB/att_splits.mat").write_bytes(b"x")
    locked = root / "CUB" if what == "dataset directory" else root
    before = digest_tree([root])
    locked.chmod(0)
    try:
        for args in (["data", "info", "cub"], ["data", "verify", "cub"], ["run", "ale", "--datasets", "cub",
                                                                          "--out", str(tmp_path / "out")]):
            cmd = [*_unprivileged(), sys.executable, "-m", "zsl_bench", *args, "--data-root", str(root)]
            p = subprocess.run(cmd, env=cli_env(), capture_output=True, text=True, timeout=120)
            res = Outcome(args, p.returncode, p.stdout, p.stderr)
            assert_clean_failure(res, names=[str(locked), "permission denied"])
            assert not (tmp_path / "out" / "results.csv").exists()
    finally:
        locked.chmod(0o755)
    assert digest_tree([root]) == before
