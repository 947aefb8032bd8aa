"""Results integrity under faults: append-only rows, concurrent writers, kill -9, corrupt inputs.

- ``append_rows`` appends (never rewrites), repairs a cut last line (kept aside) and refuses a
  corrupted one; concurrent writers from ``run`` and ``ablate`` keep every unit's rows exactly once.
- ``kill -9`` at every write point of a unit (``ZSL_BENCH_CRASH_AT``): a rerun gives the rows of an
  uninterrupted run and leaves no temporary files or checkpoints.
- ``table`` / ``plot`` refuse corrupt CSVs and curve files with one line naming file and line,
  leaving every file as it was (the corpus calls ``main()`` in-process, ``clicase.run_main``; the
  good-file, directory and missing-curve cases run the real CLI in a subprocess).
"""

from __future__ import annotations

import csv
import io
import logging
import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from clicase import REPO, assert_clean_failure, cli_env, digest_tree, run_cli, run_main

from zsl_bench.errors import DataError
from zsl_bench.fileio import atomic_path, file_lock, sweep_temp_files
from zsl_bench.results import COLUMNS, HEADER, RowIndex, _csv_text, append_rows, read_rows, remove_runs

FAST = {"ZSL_BENCH_HEARTBEAT_S": "1", "ZSL_BENCH_GRACE_S": "2", "ZSL_BENCH_POLL_S": "0.2"}


def _rows(run_id: str, n_metrics: int = 6, **over: object) -> list[dict]:
    metrics = ["zsl_acc", "u", "s", "h", "gamma", "ausuc"][:n_metrics]
    return [{"run_id": run_id, "method": "ale", "variant": "default", "dataset": "cub", "source": "simulated",
             "sim_preset": "tiny", "data_seed": 0, "protocol": "val", "seed": 0, "metric": m,
             "value": 10.0 + i, "epoch": 3, "config_hash": "abc", "config": "{}", **over}
            for i, m in enumerate(metrics)]


def _fill(path: Path, n_runs: int, prefix: str = "old") -> None:
    """A results file of ``n_runs`` x 6 rows written in one go (fast pre-filling of LARGE files)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(_csv_text([r for i in range(n_runs) for r in _rows(f"{prefix}-{i}")], header=True))


def _leftovers(out: Path) -> list[str]:
    tmp = [str(p) for p in out.rglob(".*.tmp*")] + [str(p) for p in out.glob("*.pending")]
    ckpt = [str(p) for p in out.glob("runs/*/ckpt")]
    return tmp + ckpt


# ---------------------------------------------------------------- append-only writes


def test_append_is_append_only(tmp_path):
    csv_path = tmp_path / "results.csv"
    _fill(csv_path, 100)
    before, ino = csv_path.read_bytes(), csv_path.stat().st_ino
    append_rows(csv_path, _rows("new"))
    after = csv_path.read_bytes()
    assert csv_path.stat().st_ino == ino  # not replaced by a rename
    assert after.startswith(before) and after[len(before):].count(b"\n") == 6
    assert len(read_rows(csv_path, validate=True)) == 606
    assert not list(tmp_path.glob(".*tmp*"))


def test_cut_last_line_is_moved_aside_not_glued(tmp_path, caplog):
    csv_path = tmp_path / "results.csv"
    _fill(csv_path, 3)
    data = csv_path.read_bytes()
    csv_path.write_bytes(data[:-25])  # the last row cut: a killed writer, a full disk
    with pytest.raises(DataError, match=r"results.csv: line 19: the last line is cut"):
        read_rows(csv_path)
    with caplog.at_level(logging.WARNING, logger="zsl_bench.results"):
        append_rows(csv_path, _rows("new"))
    warned = [r.getMessage() for r in caplog.records if "was cut" in r.getMessage()]
    assert len(warned) == 1 and "line 19" in warned[0]
    (kept,) = tmp_path.glob("results.csv.partial-*")
    assert kept.read_bytes() == data[:-25][data[:-25].rfind(b"\n") + 1:]
    rows = read_rows(csv_path, validate=True)
    assert [r["run_id"] for r in rows].count("old-2") == 5 and [r["run_id"] for r in rows].count("new") == 6


def test_cut_header_is_repaired(tmp_path):
    csv_path = tmp_path / "results.csv"
    csv_path.write_text(HEADER[:30])
    append_rows(csv_path, _rows("new"))
    assert csv_path.read_text().startswith(HEADER) and len(read_rows(csv_path, validate=True)) == 6


@pytest.mark.parametrize("content, match", [
    (HEADER + "a,b,c\n", "line 2: the last row has the wrong number of fields"),
    ("name,score\nx,1\n", "line 1: not the header of a zsl-bench results file"),
])
def test_append_refuses_a_corrupt_file_and_leaves_it(tmp_path, content, match):
    csv_path = tmp_path / "results.csv"
    csv_path.write_text(content)
    with pytest.raises(DataError, match=match):
        append_rows(csv_path, _rows("new"))
    assert csv_path.read_text() == content


def test_append_into_a_directory_is_an_error(tmp_path):
    (tmp_path / "results.csv").mkdir()
    with pytest.raises(DataError, match="is a directory"):
        append_rows(tmp_path / "results.csv", _rows("x"))


def test_line_breaks_cannot_enter_a_row(tmp_path):
    with pytest.raises(DataError, match="column variant"):
        append_rows(tmp_path / "results.csv", _rows("x", variant="a\nb"))


def test_row_index_reads_only_new_bytes_and_notices_a_rewrite(tmp_path):
    csv_path = tmp_path / "results.csv"
    _fill(csv_path, 5)
    idx = RowIndex(csv_path).refresh()
    assert idx.run_ids() == {f"old-{i}" for i in range(5)}
    append_rows(csv_path, _rows("new", value=99.5))
    assert "new" in idx.refresh() and [r["value"] for r in idx.rows_of("new")][0] == "99.5"
    with open(csv_path, "ab") as fh:
        fh.write(b"cut-row,al")  # a writer killed mid-row: not a row yet
    assert "cut-row" not in idx.refresh()
    remove_runs(csv_path, {"old-0"})  # the one rewrite: repairs the tail, rewrites, renames
    idx.refresh()
    assert "old-0" not in idx and "new" in idx and len(idx.rows_of("old-1")) == 6
    assert len(read_rows(csv_path, validate=True)) == 30


def test_a_block_cut_by_a_killed_writer_goes_whole(tmp_path, caplog):
    csv_path = tmp_path / "results.csv"
    append_rows(csv_path, _rows("a"))
    good = csv_path.read_bytes()
    block = _csv_text(_rows("b"), header=False).encode()
    (tmp_path / "results.csv.pending").write_text(f"{len(good)} {len(block)}\n")
    with open(csv_path, "ab") as fh:
        fh.write(block[: len(block) // 2])  # 3 whole rows of unit b and a cut one
    with pytest.raises(DataError, match="cut short by a killed writer"):
        read_rows(csv_path)
    with caplog.at_level(logging.WARNING, logger="zsl_bench.results"):
        append_rows(csv_path, _rows("c"))
    assert any("lines 8-" in r.getMessage() for r in caplog.records)
    rows = read_rows(csv_path, validate=True)
    assert [r["run_id"] for r in rows] == ["a"] * 6 + ["c"] * 6  # none of b: its rows are all there or none
    (kept,) = tmp_path.glob("results.csv.partial-*")
    assert kept.read_bytes() == block[: len(block) // 2]
    assert not (tmp_path / "results.csv.pending").exists()


def test_file_lock_is_reentrant(tmp_path):
    with file_lock(tmp_path / "x.lock"), file_lock(tmp_path / "x.lock"):
        append_rows(tmp_path / "results.csv", _rows("a"))  # takes results.csv.lock inside
    assert len(read_rows(tmp_path / "results.csv")) == 6


def _append_many(path: str, worker: int, n: int) -> None:
    for i in range(n):
        append_rows(path, _rows(f"w{worker}-{i}"))


def test_concurrent_appenders_keep_every_row_once(tmp_path):
    csv_path = tmp_path / "results.csv"
    _fill(csv_path, 2000)
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_append_many, args=(str(csv_path), w, 40)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    rows = read_rows(csv_path, validate=True)
    ids = [r["run_id"] for r in rows]
    assert len(rows) == (2000 + 160) * 6
    assert all(ids.count(f"w{w}-{i}") == 6 for w in range(4) for i in (0, 17, 39))
    assert len(set(ids)) == 2160


def test_sweep_removes_temp_files_of_dead_writers_only(tmp_path):
    import socket

    host = "".join(c if c.isalnum() or c in "_-" else "_" for c in socket.gethostname())[:40]
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    mine = tmp_path / f".results.csv.{host}~{os.getpid()}~abc.tmp.csv"
    gone = tmp_path / f".curve.npz.{host}~{dead}~abc.tmp.npz"
    legacy_new, legacy_old = tmp_path / ".t.md.x1.tmp.md", tmp_path / ".t.tex.x2.tmp.tex"
    for p in (mine, gone, legacy_new, legacy_old):
        p.write_text("x")
    os.utime(legacy_old, (time.time() - 7200, time.time() - 7200))
    assert sorted(sweep_temp_files(tmp_path)) == sorted([gone, legacy_old])
    assert mine.exists() and legacy_new.exists()
    with atomic_path(tmp_path / "a.csv") as tmp:  # the name carries host and pid
        assert f"{host}~{os.getpid()}~" in tmp.name


# ---------------------------------------------------------------- reading: schema checks


GOOD = _rows("r1") + _rows("r2", seed=1)


def _csv(rows: list[dict], edit=None) -> str:
    text = _csv_text(rows, header=True)
    return edit(text) if edit else text


def _set(line: int, col: str, value: str):
    def edit(text: str) -> str:
        lines = text.splitlines(keepends=True)
        fields = next(csv.reader([lines[line - 1]]))
        fields[COLUMNS.index(col)] = value
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow(fields)
        lines[line - 1] = buf.getvalue()
        return "".join(lines)
    return edit


def _line(line: int, new: str):
    def edit(text: str) -> str:
        lines = text.splitlines(keepends=True)
        lines[line - 1] = new
        return "".join(lines)
    return edit


# (name, file bytes, strings the one error line must name)
CSV_CASES = [
    ("cut_row", _csv(GOOD, _line(4, "r1,ale,default,cub,simulated,tiny\n")), ["line 4", "field"]),
    ("cut_last_line", _csv(GOOD)[:-40], ["line 13", "cut"]),
    ("broken_quote", _csv(GOOD, _line(5, '"r1,ale,default,cub,simulated,tiny,,0,val,0,u,1,,3,abc,{},,,,\n')),
     ["line 5"]),
    ("stray_quote_mid", _csv(GOOD, _set(6, "variant", "x")).replace(",x,", ',"x"y,', 1), ["line 6", "malformed"]),
    ("value_abc", _csv(GOOD, _set(3, "value", "abc")), ["line 3", "value", "not a number"]),
    ("value_empty", _csv(GOOD, _set(8, "value", "")), ["line 8", "value"]),
    ("seed_text", _csv(GOOD, _set(2, "seed", "zero")), ["line 2", "seed", "integer"]),
    ("seed_float", _csv(GOOD, _set(9, "seed", "1.5")), ["line 9", "seed"]),
    ("seed_empty", _csv(GOOD, _set(10, "seed", "")), ["line 10", "seed"]),
    ("epoch_text", _csv(GOOD, _set(2, "epoch", "last")), ["line 2", "epoch"]),
    ("data_seed_text", _csv(GOOD, _set(2, "data_seed", "x")), ["line 2", "data_seed"]),
    ("gamma_text", _csv(GOOD, _set(7, "gamma", "g")), ["line 7", "gamma"]),
    ("wall_time_text", _csv(GOOD, _set(7, "wall_time_s", "fast")), ["line 7", "wall_time_s"]),
    ("unknown_metric", _csv(GOOD, _set(4, "metric", "hh")), ["line 4", "metric", "registered"]),
    ("empty_metric", _csv(GOOD, _set(4, "metric", "")), ["line 4", "metric"]),
    ("unknown_source", _csv(GOOD, _set(5, "source", "synthetic")), ["line 5", "source", "simulated"]),
    ("unknown_protocol", _csv(GOOD, _set(5, "protocol", "oracle")), ["line 5", "protocol", "test-oracle"]),
    ("empty_run_id", _csv(GOOD, _set(11, "run_id", "")), ["line 11", "run_id"]),
    ("empty_method", _csv(GOOD, _set(11, "method", "")), ["line 11", "method"]),
    ("too_many_fields", _csv(GOOD, lambda t: t.replace("\n", ",extra\n", 3).replace(",extra", "", 2)),
     ["line 3", "field"]),
    ("header_missing_column", _csv(GOOD, lambda t: t.replace("run_id,", "", 1)), ["line 1", "run_id"]),
    ("header_duplicate_column", _csv(GOOD, lambda t: t.replace("variant", "method", 1)), ["line 1"]),
    ("not_csv_yaml", "name: smoke\nmethods: [ale]\n", ["line 1", "header"]),
    ("blank_line_inside", _csv(GOOD, lambda t: t.replace("\n", "\n\n", 3).replace("\n\n", "\n", 2)),
     ["line 4", "empty line"]),
    ("nul_byte", _csv(GOOD, _set(6, "variant", "de\x00fault")), ["line 6", "NUL"]),
]
BINARY_CASES = [
    ("random_bytes", bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8)), ["not UTF-8"]),
    ("latin1_value", _csv(GOOD, _set(12, "variant", "caf\u00e9")).encode("latin-1"), ["line 12", "UTF-8"]),
    ("gzip", b"\x1f\x8b\x08\x00" + bytes(range(200)), ["line 1", "UTF-8"]),
]


def _results_dir(tmp_path: Path, content: str | bytes) -> Path:
    d = tmp_path / "study"
    d.mkdir()
    p = d / "results.csv"
    p.write_bytes(content if isinstance(content, bytes) else content.encode())
    return p


@pytest.mark.parametrize("name, content, names", CSV_CASES + BINARY_CASES, ids=[c[0] for c in CSV_CASES + BINARY_CASES])
def test_table_refuses_a_corrupt_results_csv(tmp_path, name, content, names):
    p = _results_dir(tmp_path, content)
    before = digest_tree([p.parent])
    line = assert_clean_failure(run_main(["table", p, "--out", tmp_path / "t"]), names=[str(p), *names])
    assert line.count("\n") == 0
    assert digest_tree([p.parent]) == before and not (tmp_path / "t").exists()


@pytest.mark.parametrize("name", ["value_abc", "cut_last_line", "unknown_metric", "seed_text"])
def test_plot_refuses_a_corrupt_results_csv(tmp_path, name):
    content, names = next((c, n) for k, c, n in CSV_CASES if k == name)
    p = _results_dir(tmp_path, content)
    before = digest_tree([p.parent])
    assert_clean_failure(run_main(["plot", p, "--out", tmp_path / "figs"]), names=[str(p), *names])
    assert digest_tree([p.parent]) == before
    assert not (tmp_path / "figs").exists() or not list((tmp_path / "figs").iterdir())


def test_table_accepts_the_good_file(tmp_path):
    p = _results_dir(tmp_path, _csv(GOOD))
    res = run_cli(["table", p])
    assert res.returncode == 0, res.stderr
    assert "CUB" in res.stdout.upper()


def test_table_of_a_directory_names_it(tmp_path):
    assert_clean_failure(run_cli(["table", tmp_path]), names=[str(tmp_path), "directory"])


def _curve(path: Path, **over: object) -> None:
    fields = dict(gamma=np.linspace(-1, 1, 5), u=np.linspace(0, 60, 5), s=np.linspace(70, 0, 5),
                  ausuc=np.asarray(21.0), method="ale", variant="default", dataset="cub", seed=0, protocol="val",
                  source="simulated")
    fields.update(over)
    np.savez(path, **{k: v for k, v in fields.items() if v is not None})


def _truncated(p: Path) -> None:
    _curve(p)
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


NPZ_CASES = [
    ("truncated", _truncated, ["truncated or corrupted"]),
    ("garbage", lambda p: p.write_bytes(b"PK\x03\x04" + bytes(300)), ["curve file"]),
    ("empty", lambda p: p.write_bytes(b""), ["not an .npz"]),
    ("text", lambda p: p.write_text("u,s\n1,2\n"), ["not an .npz"]),
    ("no_u", lambda p: _curve(p, u=None), ["'u'"]),
    ("string_s", lambda p: _curve(p, s=np.array(["a", "b", "c", "d", "e"])), ["'s'", "numeric"]),
    ("lengths_differ", lambda p: _curve(p, s=np.linspace(70, 0, 4)), ["differ"]),
    ("object_array", lambda p: _curve(p, u=np.array([1, "x"], dtype=object)), ["curve file"]),
]


@pytest.mark.parametrize("name, make, names", NPZ_CASES, ids=[c[0] for c in NPZ_CASES])
def test_plot_refuses_a_corrupt_curve_file(tmp_path, name, make, names):
    curves = tmp_path / "curves"
    curves.mkdir()
    _curve(curves / "ok.npz")
    make(curves / "bad.npz")
    before = digest_tree([curves])
    assert_clean_failure(run_main(["plot", "--curves", curves, "--kind", "curves", "--out", tmp_path / "f"]),
                         names=[str(curves / "bad.npz"), *names])
    assert digest_tree([curves]) == before and not (tmp_path / "f").exists()


def test_plot_curves_refuses_when_a_runs_curve_is_missing(tmp_path):
    p = _results_dir(tmp_path, _csv(_rows("r0") + _rows("r1", seed=1) + _rows("r2", seed=2)))
    curves = p.parent / "curves"
    curves.mkdir()
    for i in (0, 1):  # the curve of r2 never written: 2 of 3 seeds
        _curve(curves / f"r{i}.npz", seed=i)
    assert_clean_failure(run_cli(["plot", p, "--curves", curves, "--kind", "curves", "--out", tmp_path / "f"]),
                         names=[str(curves), "r2.npz", "1 of the 3"])
    _curve(curves / "r2.npz", seed=2)
    res = run_cli(["plot", p, "--curves", curves, "--kind", "curves", "--out", tmp_path / "f"])
    assert res.returncode == 0, res.stderr


def test_plot_curves_reads_several_curve_folders(tmp_path):
    # Rows of two studies (results/make_results.sh: main_table and transzero_cpu): each study's
    # curves live in its own folder; --curves twice covers both, one folder alone does not.
    p = _results_dir(tmp_path, _csv(_rows("r0") + _rows("r1", seed=1)))
    first, second = tmp_path / "a" / "curves", tmp_path / "b" / "curves"
    first.mkdir(parents=True)
    second.mkdir(parents=True)
    _curve(first / "r0.npz", seed=0)
    _curve(second / "r1.npz", seed=1)
    assert_clean_failure(run_main(["plot", p, "--curves", first, "--kind", "curves", "--out", tmp_path / "f"]),
                         names=["r1.npz", "1 of the 2"])
    res = run_main(["plot", p, "--curves", first, "--curves", second, "--kind", "curves", "--out", tmp_path / "f"])
    assert res.returncode == 0, res.stderr
    assert any(tmp_path.joinpath("f").glob("*.png"))


# ---------------------------------------------------------------- kill -9 at each write point of `run`

RUN = ["run", "ale", "--datasets", "cub", "--sim", "tiny", "--seeds", "0,1", "--epochs", "3", "--no-mlflow"]
VOLATILE = {"timestamp", "wall_time_s", "git_commit"}  # git_commit: "-dirty" while a checkout is edited


def _stable(rows: list[dict]) -> list[tuple]:
    return sorted(tuple((k, v) for k, v in r.items() if k not in VOLATILE) for r in rows)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "out"
    res = run_cli([*RUN, "--out", out], env=cli_env(**FAST))
    assert res.returncode == 0, res.stderr[-2000:]
    return read_rows(out / "results.csv", validate=True), out


# Two points by default (a cut temporary curve file; a cut block of rows), every point with -m slow.
@pytest.mark.parametrize("point", [pytest.param("unit-trained", marks=pytest.mark.slow), "curve-mid",
                                   pytest.param("curve-written", marks=pytest.mark.slow), "rows-mid",
                                   pytest.param("rows-written", marks=pytest.mark.slow),
                                   pytest.param("unit-finished", marks=pytest.mark.slow)])
def test_kill_9_at_each_write_point_then_rerun_matches_uninterrupted(tmp_path, reference, point):
    ref_rows, ref_out = reference
    out = tmp_path / "out"
    killed = run_cli([*RUN, "--out", out], env=cli_env(**FAST, ZSL_BENCH_CRASH_AT=f"{point}:2"))
    assert killed.returncode == -9, f"{point}: not killed (rc {killed.returncode})\n{killed.stderr[-2000:]}"
    assert not (out / "config.yaml").exists()  # written only once the run ends with rows
    if point in ("unit-trained", "curve-mid", "curve-written"):
        assert len({r["run_id"] for r in read_rows(out / "results.csv")}) == 1
    if point == "curve-mid":
        assert list((out / "curves").glob(".*.tmp*"))  # what kill -9 leaves; the rerun sweeps it
    if point == "rows-mid":  # half of unit 2's block: some whole rows, one cut row, and the block's record
        assert (out / "results.csv.pending").is_file()
        # A reader that ignores the cut tail leaves the whole dead block out: unit 2 is not done.
        assert len({r["run_id"] for r in read_rows(out / "results.csv", partial_tail="ignore")}) == 1
        with pytest.raises(DataError, match="cut short by a killed writer"):
            read_rows(out / "results.csv")

    rerun = run_cli([*RUN, "--out", out], env=cli_env(**FAST))
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    rows = read_rows(out / "results.csv", validate=True)
    assert _stable(rows) == _stable(ref_rows)  # every row once, the same numbers
    assert _leftovers(out) == []
    partial = list(out.glob("results.csv.partial-*"))
    assert len(partial) == (point == "rows-mid")
    if partial:  # the whole cut block went aside, not just its last line
        assert "cut short by a killed writer" in rerun.stderr and partial[0].read_bytes().count(b"\n") >= 1
    assert not (out / "results.csv.pending").exists()
    # Rows imply curves: one per run, each readable.
    assert {p.stem for p in (out / "curves").glob("*.npz")} == {r["run_id"] for r in rows}
    assert (out / "config.yaml").read_text() == (ref_out / "config.yaml").read_text()


# ---------------------------------------------------------------- config.yaml describes the rows


def test_failing_rerun_keeps_config_yaml(tmp_path, reference):
    ref_rows, ref_out = reference
    out = tmp_path / "out"
    assert run_cli([*RUN, "--seeds", "0", "--out", out]).returncode == 0
    before = digest_tree([out / "config.yaml", out / "results.csv"])
    # Resolves and starts, then fails at the drift check / data: nothing of it may replace config.yaml.
    bad = run_main(["run", "ale", "--datasets", "cub", "--sim", "tiny", "--seeds", "0", "--no-mlflow", "--out", out,
                    "--set", "train.lr=abc"])
    assert bad.returncode != 0
    # Another config, killed after training its unit (before rows): config.yaml still the old one.
    killed = run_cli([*RUN, "--seeds", "0", "--out", out, "--set", "train.lr=0.05"],
                     env=cli_env(ZSL_BENCH_CRASH_AT="unit-trained"))
    assert killed.returncode == -9
    assert digest_tree([out / "config.yaml", out / "results.csv"]) == before
    # A different config that finishes: the old file is kept beside the new one.
    assert run_cli([*RUN, "--seeds", "0", "--out", out, "--set", "train.lr=0.05"]).returncode == 0
    assert (out / "config.previous-1.yaml").read_bytes() == (ref_out / "config.yaml").read_bytes().replace(
        b"- 0\n- 1\n", b"- 0\n")
    assert b"0.05" in (out / "config.yaml").read_bytes()


# ---------------------------------------------------------------- concurrent run + run + ablate


def test_two_runs_and_an_ablate_into_one_out_over_a_large_results_csv(tmp_path):
    out = tmp_path / "out"
    _fill(out / "results.csv", 50_000 // 6 + 1, prefix="earlier")
    pre = read_rows(out / "results.csv")
    import optuna

    # The storage exists before the writers start: creating one SQLite file from three processes at the
    # same instant is the storage-creation race of issue 11 (its own fix and test), not what this tests.
    optuna.storages.RDBStorage(f"sqlite:///{(out / 'optuna.db').resolve()}")
    env = cli_env(**FAST)
    cmds = [[*RUN[:2], "--datasets", "cub", "--sim", "tiny", "--seeds", "0,1,2", "--epochs", "3", "--no-mlflow"],
            ["run", "eszsl", "--datasets", "cub", "--sim", "tiny", "--seeds", "0,1,2", "--no-mlflow"],
            ["ablate", "smoke.yaml", "--set", "train.epochs=3", "--no-mlflow", "--no-progress"]]
    procs = [subprocess.Popen([sys.executable, "-m", "zsl_bench", *c, "--out", str(out)], cwd=REPO, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for c in cmds]
    errs = [p.communicate(timeout=600)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], "\n".join(e[-1500:] for e in errs)
    rows = read_rows(out / "results.csv", validate=True)  # well-formed: every line a full row
    assert rows[: len(pre)] == pre  # nothing before was touched
    new = rows[len(pre):]
    by_run: dict[str, list[str]] = {}
    for r in new:
        by_run.setdefault(r["run_id"], []).append(r["metric"])
    # 3 (ale) + 3 (eszsl) + 4 (smoke) units, each with its 6 rows exactly once (10 with the context
    # reliance rows, where the simulated data carry an environment-resampled store: generator v2)
    assert len(by_run) == 10, sorted(by_run)
    six = ["zsl_acc", "u", "s", "h", "gamma", "ausuc"]
    ten = six + ["zsl_acc_env", "h_env", "reliance_zsl", "reliance_h"]
    assert all(sorted(m) in (sorted(six), sorted(ten)) for m in by_run.values())
    assert {r["method"] for r in new} == {"ale", "eszsl"}
    assert not list(out.rglob(".*.tmp*"))
    # `run` removes checkpoints of finished units; `ablate` keeps them (attention figures use them).
    assert {p.parent.name for p in out.glob("runs/*/ckpt")} <= {r["run_id"] for r in new if r["variant"] != "default"}
