"""Feature-store I/O benchmark: write a CUB-sized store, read it in random and sequential batches.

Writes random non-negative fp16 region features (simulated-like: 11,788 × 2048 × 196 by default,
~9.5 GB) in chunks of bounded memory, then reads the same file once in random batches of 50 (as a
shuffled training epoch does) and once sequentially (as scoring does). Before each read pass the
file is fsync'ed and dropped from the page cache (``posix_fadvise DONTNEED``) so both passes start
cold; where the OS ignores the hint, both passes read from memory. Prints peak RSS and throughput
of each pass and, last, ``random_vs_sequential=X.XX`` (random throughput / sequential).

Floors: peak RSS < 2 GB; random ≥ 0.5 × sequential.

    python benchmarks/store_io.py --rows 3000          # ~2.4 GB, a few minutes
    python benchmarks/store_io.py                       # full CUB size, ~9.5 GB of disk
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from zsl_bench.data.store import FeatureStore, StoreWriter

log = logging.getLogger("store_io")

CUB_IMAGES = 11788
FEATURE_DIM = 2048
REGIONS = 196  # 14 × 14
WRITE_ROWS = 32  # rows per write: 32 × 2048 × 196 × 4 B = 51 MB of float32 scratch


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def write_store(path: Path, rows: int, seed: int) -> float:
    """Write ``rows`` random rows in chunks; returns seconds taken."""
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    provenance = {"source": "simulated", "generator": "benchmarks/store_io.py", "seed": seed}
    with StoreWriter(path, rows, FEATURE_DIM, REGIONS, provenance) as writer:
        for s in tqdm(range(0, rows, WRITE_ROWS), desc="write", unit="chunk", leave=False):
            n = min(WRITE_ROWS, rows - s)
            block = rng.random((n, FEATURE_DIM, REGIONS), dtype=np.float32)  # [n, F, R], in [0, 1)
            writer.write(s, regions=block)
    return time.perf_counter() - start


def drop_cache(path: Path) -> bool:
    """Flush the file and ask the kernel to forget its cached pages (no root needed)."""
    if not hasattr(os, "posix_fadvise"):
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    return True


def read_pass(path: Path, order: np.ndarray, batch: int, desc: str) -> tuple[float, int]:
    """Read rows in ``order`` in batches of ``batch``; returns (seconds, bytes of fp16 read)."""
    checksum = 0.0
    with FeatureStore(path) as store:
        start = time.perf_counter()
        for s in tqdm(range(0, len(order), batch), desc=desc, unit="batch", leave=False):
            block = store.read_regions(order[s:s + batch])  # [B, F, R] float32
            checksum += float(block[:, 0, 0].sum())  # touch the data so nothing is optimised away
        seconds = time.perf_counter() - start
    log.debug("%s checksum %.3f", desc, checksum)
    return seconds, len(order) * FEATURE_DIM * REGIONS * 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     epilog="example: python benchmarks/store_io.py --rows 3000")
    parser.add_argument("--rows", type=int, default=CUB_IMAGES, help=f"images (default {CUB_IMAGES}, full CUB)")
    parser.add_argument("--batch", type=int, default=50, help="rows per read batch (default 50)")
    parser.add_argument("--dir", type=Path, default=None, help="where to write (default: a temporary directory)")
    parser.add_argument("--keep", action="store_true", help="keep the store file afterwards")
    parser.add_argument("--warm", action="store_true",
                        help="keep the page cache (measures the reader's CPU cost rather than the disk)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    if args.rows <= 0 or args.batch <= 0:
        parser.error("--rows and --batch must be positive")

    workdir = Path(tempfile.mkdtemp(prefix="store_io-", dir=args.dir))
    path = workdir / "features.h5"
    gb = args.rows * FEATURE_DIM * REGIONS * 2 / 1e9
    print(f"store: {path} ({args.rows} × {FEATURE_DIM} × {REGIONS} fp16, {gb:.2f} GB), simulated random data")
    try:
        secs = write_store(path, args.rows, args.seed)
        print(f"write: {secs:.1f} s, {gb / secs * 1000:.0f} MB/s, peak RSS {peak_rss_mb():.0f} MB")
        rng = np.random.default_rng(args.seed)
        results = {}
        for name, order in (("random", rng.permutation(args.rows)), ("sequential", np.arange(args.rows))):
            cold = False if args.warm else drop_cache(path)
            secs, nbytes = read_pass(path, order, args.batch, name)
            results[name] = nbytes / secs
            print(f"read {name:<10}: {secs:.1f} s, {nbytes / secs / 1e6:.0f} MB/s, "
                  f"{len(order) / secs:.0f} img/s, batch {args.batch}, cache {'dropped' if cold else 'warm'}, "
                  f"peak RSS {peak_rss_mb():.0f} MB")
    finally:
        if not args.keep:
            path.unlink(missing_ok=True)
            path.with_name(path.name + ".tmp").unlink(missing_ok=True)
            workdir.rmdir()
    rss = peak_rss_mb()
    ratio = results["random"] / results["sequential"]
    print(f"peak_rss_mb={rss:.0f} (floor < 2048: {'ok' if rss < 2048 else 'FAIL'}); "
          f"random >= 0.5 x sequential: {'ok' if ratio >= 0.5 else 'FAIL'}")
    print(f"random_vs_sequential={ratio:.2f}")
    return 0 if rss < 2048 and ratio >= 0.5 else 1


if __name__ == "__main__":
    sys.exit(main())
