"""Speed and honesty about work: thread choice, start-up without torch, the plan / dry run,
progress off a terminal, and resuming an interrupted unit from its last epoch checkpoint."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.clicase import REPO, cli_env, run_cli
from zsl_bench.errors import ConfigError
from zsl_bench.results import read_rows
from zsl_bench.threads import MAX_AUTO_THREADS, auto_threads, cgroup_quota, choose_threads

# ---------------------------------------------------------------- threads


@pytest.mark.parametrize("cpus,quota,load,want", [
    (2, None, 0.0, 2),      # quiet 2-core box: both cores
    (2, None, 13.5, 1),     # loaded 2-core box (as measured): one thread, not 2 fighting 13 others
    (2, None, 1.2, 1),      # one core busy elsewhere
    (64, None, 0.0, MAX_AUTO_THREADS),
    (64, 4.0, 0.0, 4),      # container: the cgroup quota, not the host's cores
    (64, 0.5, 0.0, 1),      # half a CPU still gets one thread
    (3, 2.5, None, 3),      # quota rounds up; no load average available
])
def test_auto_thread_rule(cpus, quota, load, want):
    assert auto_threads(cpus, quota, load).n == want


def test_cgroup_quota_v2_and_v1(tmp_path):
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "cpu.max").write_text("150000 100000\n")
    assert cgroup_quota(v2) == 1.5
    (v2 / "cpu.max").write_text("max 100000\n")
    assert cgroup_quota(v2) is None
    v1 = tmp_path / "v1" / "cpu,cpuacct"
    v1.mkdir(parents=True)
    (v1 / "cpu.cfs_quota_us").write_text("200000\n")
    (v1 / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_quota(tmp_path / "v1") == 2.0
    (v1 / "cpu.cfs_quota_us").write_text("-1\n")
    assert cgroup_quota(tmp_path / "v1") is None
    assert cgroup_quota(tmp_path / "none") is None


def test_thread_precedence_and_bad_values():
    assert choose_threads(3, {"ZSL_BENCH_THREADS": "2"}).n == 3
    assert choose_threads(None, {"ZSL_BENCH_THREADS": "2", "OMP_NUM_THREADS": "1"}).n == 2
    assert choose_threads(None, {"OMP_NUM_THREADS": "1"}).n == 1
    assert choose_threads(None, {}).reason.startswith("auto")
    with pytest.raises(ConfigError, match=r"\$ZSL_BENCH_THREADS: bad thread count 'many'"):
        choose_threads(None, {"ZSL_BENCH_THREADS": "many"})
    with pytest.raises(ConfigError, match="--threads: bad thread count 0"):
        choose_threads(0, {})


def test_bad_threads_is_one_line_error_before_anything(tmp_path):
    out = tmp_path / "o"
    res = run_cli(["run", "ale", "--datasets", "cub", "--sim", "tiny", "--out", out],
                  env=cli_env(ZSL_BENCH_THREADS="lots"))
    assert res.returncode == 2 and res.error_lines == [
        "zsl-bench: error: $ZSL_BENCH_THREADS: bad thread count 'lots'; valid: an integer >= 1"]
    assert not out.exists()


def _values(csv: Path) -> dict[tuple[str, str], str]:
    return {(r["variant"], r["dataset"], r["seed"], r["metric"]): r["value"] for r in read_rows(csv)}


def test_thread_count_does_not_change_results(tmp_path):
    got = {}
    for n in (1, 2):
        out = tmp_path / f"t{n}"
        res = run_cli(["run", "msdnpp", "--datasets", "cub", "--sim", "tiny", "--seeds", "0", "--epochs", "2",
                       "--no-mlflow", "--threads", str(n), "--out", out])
        assert res.returncode == 0, res.stderr[-2000:]
        assert f"threads: {n} (--threads" in res.stderr
        got[n] = _values(out / "results.csv")
    assert got[1] and got[1] == got[2]


# ---------------------------------------------------------------- start-up without torch

_PROBE = """
import sys
from zsl_bench.cli.main import main
try:
    rc = main(sys.argv[1:])
except SystemExit as exc:
    rc = exc.code
print("TORCH_IMPORTED" if "torch" in sys.modules else "NO_TORCH", rc, file=sys.stderr)
"""


@pytest.mark.parametrize("args", [
    ["--help"], ["ls", "methods"], ["ls", "datasets"], ["ls", "metrics"], ["run", "--help"], ["ablate", "--help"],
    ["data", "info", "cub", "--sim", "tiny"],
    ["run", "ale", "--datasets", "cub", "--data-root", "{missing}"],  # the no-data error
    ["table", "{missing}"], ["plot", "{missing}", "--out", "{missing}"], ["evaluate", "{missing}"],
    ["power", "{missing}"],
])
def test_commands_that_need_no_torch_do_not_import_it(args, tmp_path):
    args = [a.format(missing=tmp_path / "missing") for a in args]
    proc = subprocess.run([sys.executable, "-c", _PROBE, *args], cwd=tmp_path, env=cli_env(),
                          capture_output=True, text=True, timeout=120)
    assert "NO_TORCH" in proc.stderr, proc.stderr[-2000:]
    if args[0] == "run" and "--help" not in args:
        assert "att_splits.mat" in proc.stderr and not (tmp_path / "runs").exists()
    if args[:2] == ["ls", "methods"]:
        listed = {line.split()[0]: line.split()[1:3] for line in proc.stdout.splitlines()[1:]}
        assert listed["msdnpp"] == ["attention", "regions"] and listed["eszsl"] == ["embedding", "pooled"]


def test_ls_methods_without_torch_lists_what_the_classes_declare(monkeypatch, capsys):
    """The listing read from source (no import) equals the imported classes' attributes, and the
    import fallback prints the same table: the class attributes are the one source of both."""
    from zsl_bench import methodinfo
    from zsl_bench.cli.ls import method_rows
    from zsl_bench.registry import METHODS

    static = {i.key: (i.name, i.family, i.input, i.paper, i.description, i.module)
              for i in methodinfo.builtin_methods()}
    imported = {k: (c.name, c.family, c.input, c.paper, c.description, c.__module__)
                for k, c in METHODS.items() if c.__module__.startswith("methods.")}
    assert static == imported and len(static) >= 12
    rows = method_rows()
    assert [r[0] for r in rows] == sorted(static) and rows[0][3]

    def unreadable() -> list:
        raise methodinfo.StaticReadError("test")

    monkeypatch.setattr(methodinfo, "builtin_methods", unreadable)
    assert [r for r in method_rows() if r[0] in static] == rows  # other tests register toy methods


def test_static_method_reader_follows_bases_and_refuses_what_it_cannot_read(tmp_path, monkeypatch):
    from zsl_bench import methodinfo

    pkg = tmp_path / "methods"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("from . import a, b\n")
    (pkg / "a.py").write_text(
        "from zsl_bench.contract import ZSLMethod\nfrom zsl_bench.registry import METHODS\n"
        "class Base(ZSLMethod):\n    family = 'embedding'\n    paper = 'P'\n"
        "@METHODS.register('aa')\nclass A(Base):\n    name = 'aa'\n")
    (pkg / "b.py").write_text(
        "from .a import Base\nfrom zsl_bench.registry import METHODS\n"
        "class B(Base):\n    name = 'bb'\n    input = 'regions'\n    description = 'D'\n"
        "METHODS.register('bb')(B)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "methods", raising=False)  # else find_spec answers the zoo's spec
    monkeypatch.setattr(methodinfo, "_parse", methodinfo._parse.__wrapped__)  # no cache across trees
    got = {i.key: (i.family, i.input, i.summary, i.module) for i in methodinfo.builtin_methods()}
    assert got == {"aa": ("embedding", "pooled", "P", "methods.a"), "bb": ("embedding", "regions", "P", "methods.b")}
    (pkg / "b.py").write_text("from .a import Base\nfrom zsl_bench.registry import METHODS\n"
                              "class B(Base):\n    name = 'b' + 'b'\nMETHODS.register('bb')(B)\n")
    with pytest.raises(methodinfo.StaticReadError, match="B.name is not a literal"):
        methodinfo.builtin_methods()


# ---------------------------------------------------------------- plan, dry run, progress off a terminal


def test_dry_run_lists_units_and_writes_nothing(tmp_path):
    out = tmp_path / "study"
    res = run_cli(["ablate", "smoke.yaml", "--out", out, "--dry-run", "--no-mlflow"], cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "smoke: 4 units: 2 variants × 1 dataset × 2 seeds; 0 already done" in res.stdout
    assert "ale/train.lr=0.03/cub/seed 0" in res.stdout and "to run" in res.stdout
    assert not out.exists() and list(tmp_path.iterdir()) == []
    res = run_cli(["run", "ale", "--datasets", "cub,sun", "--sim", "tiny", "--seeds", "0,1", "--dry-run"],
                  cwd=tmp_path)
    assert res.returncode == 0 and "run-ale: 4 units: 1 variant × 2 datasets × 2 seeds" in res.stdout
    assert list(tmp_path.iterdir()) == []


def test_default_ablation_is_the_cpu_budget_and_full_is_one_flag_away(tmp_path):
    res = run_cli(["ablate", "--sim", "--dry-run"], cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "msdnpp_ablation_cpu: 48 units: 12 variants × 4 datasets × 1 seed" in res.stdout
    assert "CPU budget" in res.stderr and "--full" in res.stderr
    res = run_cli(["ablate", "--sim", "--full", "--dry-run"], cwd=tmp_path)
    assert "msdnpp_ablation: 144 units: 12 variants × 4 datasets × 3 seeds" in res.stdout
    res = run_cli(["ablate", "smoke.yaml", "--full", "--dry-run"], cwd=tmp_path)
    assert res.returncode == 2 and "--full" in res.error_lines[0]
    assert list(tmp_path.iterdir()) == []


def _ablate(out: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "zsl_bench", "ablate", "smoke.yaml", "--out", str(out),
                           "--no-mlflow", "--seeds", "0", "--set", "train.epochs=6"], cwd=REPO, capture_output=True, text=True,
                          timeout=600, env=cli_env(ZSL_BENCH_HEARTBEAT_S="1", ZSL_BENCH_GRACE_S="2", **env))


def test_killed_unit_resumes_first_from_its_epoch_and_matches_uninterrupted(tmp_path):
    # Deterministic kill point: right after the checkpoint of epoch 3 of the first unit's val phase.
    killed = _ablate(tmp_path / "k", ZSL_BENCH_TEST_KILL_AT="val:3")
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert not (tmp_path / "k" / "results.csv").exists()
    # Off a terminal (stderr is a pipe): the plan and unit lines, no bar escape codes.
    assert "smoke: 2 units: 2 variants × 1 dataset × 1 seed; 0 already done" in killed.stderr
    assert "\r" not in killed.stderr and "\x1b[" not in killed.stderr

    resumed = _ablate(tmp_path / "k")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    err = resumed.stderr
    assert "\r" not in err and "\x1b[" not in err
    assert "1 to resume from a checkpoint" in err
    assert "resuming ale/train.lr=0.03/cub/seed 0 from its checkpoint (phase val, epoch 3 done)" in err
    assert "resuming phase val from" in err and "at epoch 3" in err  # the engine did resume, not restart
    unit_lines = [ln for ln in err.splitlines() if ln.startswith("[")]
    assert len(unit_lines) == 2 and unit_lines[0].startswith("[1/2] ale/train.lr=0.03/cub/seed 0: H ")
    assert "ETA" in unit_lines[0] and "ETA" not in unit_lines[-1]

    ref = _ablate(tmp_path / "ref")
    assert ref.returncode == 0, ref.stderr[-2000:]
    assert _values(tmp_path / "k" / "results.csv") == _values(tmp_path / "ref" / "results.csv")

    again = _ablate(tmp_path / "k")  # everything done: reused, nothing run
    assert "2 already done" in again.stderr and "reusing 2 finished unit(s)" in again.stderr
    assert "0 units run here" in again.stderr


def test_plan_summary_and_progress_switch(monkeypatch):
    import io

    from zsl_bench.progress import Plan, PlannedUnit, fmt_duration, progress_enabled

    units = [PlannedUnit(f"m/v/cub/seed {i}", f"r{i}", s) for i, s in enumerate(["done", "done", "resume", "todo"])]
    plan = Plan("study", units, "1 variant × 1 dataset × 4 seeds", done_walls=[60.0, 120.0])
    assert plan.summary() == ("study: 4 units: 1 variant × 1 dataset × 4 seeds; 2 already done, "
                              "1 to resume from a checkpoint, ~3 min left at the rate of the finished units")
    assert [fmt_duration(s) for s in (42, 600, 3 * 3600 + 300)] == ["42 s", "10 min", "3 h 05 min"]

    class Tty(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.delenv("ZSL_BENCH_NO_PROGRESS", raising=False)
    assert progress_enabled(False, Tty()) and not progress_enabled(True, Tty())
    assert not progress_enabled(False, io.StringIO())  # a log file or pipe: no bars
    monkeypatch.setenv("ZSL_BENCH_NO_PROGRESS", "1")
    assert not progress_enabled(False, Tty())
