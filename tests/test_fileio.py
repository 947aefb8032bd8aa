"""Atomic writes: a failed write leaves the old file and no debris; modes follow the umask."""

from __future__ import annotations

import os

import numpy as np
import pytest

from zsl_bench.fileio import atomic_path, write_text_atomic
from zsl_bench.results import append_rows, read_rows


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "table.tex"
    write_text_atomic(target, "old\n")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half of the new")
        raise RuntimeError("killed mid-write")
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table.tex"]


def test_new_files_get_the_umask_mode_and_existing_ones_keep_theirs(tmp_path):
    old = os.umask(0o027)
    try:
        fresh = write_text_atomic(tmp_path / "a.md", "x")
    finally:
        os.umask(old)
    assert fresh.stat().st_mode & 0o777 == 0o640  # not mkstemp's 0600
    kept = tmp_path / "b.md"
    kept.write_text("x")
    kept.chmod(0o604)
    write_text_atomic(kept, "y")
    assert kept.stat().st_mode & 0o777 == 0o604 and kept.read_text() == "y"


def test_temporary_name_keeps_the_extension_for_format_sniffing_writers(tmp_path):
    target = tmp_path / "curve.npz"
    with atomic_path(target) as tmp:
        assert tmp.suffix == ".npz" and tmp.parent == tmp_path
        np.savez(tmp, u=np.arange(3))  # would write tmp + ".npz" if the suffix were missing
    assert np.load(target)["u"].tolist() == [0, 1, 2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curve.npz"]


def test_result_rows_are_readable_by_others(tmp_path):
    csv = tmp_path / "results.csv"
    append_rows(csv, [{"method": "ale", "dataset": "cub", "metric": "h", "value": 1.0}])
    assert csv.stat().st_mode & 0o044  # group/other can read, as with any file a run writes
    assert read_rows(csv)[0]["method"] == "ale"


def test_appended_rows_keep_one_line_ending(tmp_path):
    csv = tmp_path / "results.csv"
    for m in ("ale", "sje", "sae"):
        append_rows(csv, [{"method": m, "dataset": "cub", "metric": "h", "value": 1.0}])
    data = csv.read_bytes()
    assert b"\r" not in data and data.count(b"\n") == 4  # header + 3 rows; mixed endings before
    assert [r["method"] for r in read_rows(csv)] == ["ale", "sje", "sae"]
