"""``zsl-bench ablate --launcher slurm|submitit-local``: workers started through submitit.

* Two workers through submitit's local executor on one PostgreSQL study: every unit runs once
  (needs ``ZSL_BENCH_PG_URL``, like ``test_study_postgres.py``; skipped without it).
* The Slurm submission itself, against stand-in ``srun``/``sbatch`` executables on ``PATH`` (there is
  no cluster in CI): the job array's ``#SBATCH`` lines and each worker's command line.
* Bad launcher flags fail with one line.
"""

from __future__ import annotations

import os
import pickle
import stat
import uuid
from pathlib import Path

import pytest
from clicase import assert_clean_failure, cli_env, run_cli
from test_study_postgres import require_pg

from zsl_bench.study.optuna_adapter import resolve_url

pytest.importorskip("submitit", reason="submitit is not installed (pip install 'zsl-bench[slurm]')")


def _spec(tmp_path: Path, name: str, more: str = "") -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(f"""name: {name}
methods: [ale]
datasets: [cub]
seeds: [0, 1]
protocol: val
sim: tiny
base: {{train: {{device: cpu, epochs: 3}}}}
grid: {{sweep: {{train.lr: [0.03, 0.3]}}}}
{more}""")
    return path


@pytest.mark.postgres
def test_two_submitit_workers_run_each_unit_once(tmp_path: Path) -> None:
    pg_url = require_pg()
    import optuna
    from optuna.trial import TrialState

    from zsl_bench.results import read_rows
    from zsl_bench.study import grid_units, load_spec

    name = f"launch_{uuid.uuid4().hex[:10]}"
    spec_path = _spec(tmp_path, name)
    out = tmp_path / "out"
    res = run_cli(["ablate", spec_path, "--out", out, "--storage", pg_url, "--workers", "2", "--no-progress",
                   "--no-mlflow", "--launcher", "submitit-local", "--time", "10"], cwd=tmp_path, timeout=400)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "submitted 2 workers (submitit-local" in res.stderr

    want = {u.key for u in grid_units(load_spec(spec_path), "cub")}
    study = optuna.load_study(study_name=f"{name}.cub", storage=resolve_url(pg_url))
    done = [t.user_attrs["unit_key"] for t in study.trials if t.state == TrialState.COMPLETE]
    assert sorted(done) == sorted(want), "each unit completed exactly once"
    # Both array tasks ran the study loop; together they ran every unit once.
    logs = sorted((out / "slurm").glob("*_log.err"))
    assert len(logs) == 2, sorted(p.name for p in (out / "slurm").iterdir())
    ran = [int(t.split(" units run here")[0].rsplit(" ", 1)[-1]) for t in (p.read_text() for p in logs)
           if " units run here" in t]
    assert len(ran) == 2 and sum(ran) == len(want), ran

    per_run: dict[str, int] = {}
    for r in read_rows(out / "results.csv"):
        per_run[r["run_id"]] = per_run.get(r["run_id"], 0) + 1
    assert len(per_run) == len(want) and len(set(per_run.values())) == 1, per_run
    assert (out / "tables" / "ablation_table.md").is_file() or any((out / "tables").glob("*_table.md"))
    optuna.delete_study(study_name=f"{name}.cub", storage=resolve_url(pg_url))


def _stand_in_slurm(bin_dir: Path, record: Path) -> dict[str, str]:
    """``srun`` and ``sbatch`` stand-ins: sbatch copies the script it is given and answers like Slurm."""
    bin_dir.mkdir()
    scripts = {
        "srun": "#!/bin/sh\nexit 0\n",
        "sbatch": f"#!/bin/sh\ncat \"$@\" > {record}\necho 'Submitted batch job 4242'\n",
    }
    for exe, text in scripts.items():
        p = bin_dir / exe
        p.write_text(text)
        p.chmod(p.stat().st_mode | stat.S_IXUSR)
    return cli_env(PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")


def test_slurm_launcher_submits_one_job_array(tmp_path: Path) -> None:
    record = tmp_path / "sbatch_script.sh"
    env = _stand_in_slurm(tmp_path / "bin", record)
    # Resources from the spec's slurm: section, flags over it (--partition wins over the spec's).
    spec_path = _spec(tmp_path, "slurm_case", "slurm: {partition: spec-part, time_min: 90, mem_gb: 120, "
                      "extra: {reservation: week}}\n")
    out = tmp_path / "out"
    res = run_cli(["ablate", spec_path.name, "--out", "out", "--storage", "postgresql://u:p@db.example/zsl",
                   "--workers", "3", "--launcher", "slurm", "--partition", "gpu", "--gpus-per-worker", "2",
                   "--cpus-per-worker", "16", "--account", "acc", "--no-wait", "--no-mlflow"], cwd=tmp_path, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "submitted 3 workers" in res.stdout and "4242_0" in res.stdout
    script = record.read_text()
    for line in ("#SBATCH --array=0-2%3", "#SBATCH --partition=gpu", "#SBATCH --gpus-per-node=2",
                 "#SBATCH --cpus-per-task=16", "#SBATCH --time=90", "#SBATCH --mem=120GB",
                 "#SBATCH --account=acc", "#SBATCH --reservation=week", "#SBATCH --job-name=zsl-slurm_case"):
        assert line in script, f"{line!r} not in the sbatch script:\n{script}"
    # Each array task calls zsl_bench.launcher.run_worker with the worker command, paths made absolute.
    payloads = sorted((out / "slurm").glob("4242_*_submitted.pkl"))
    assert len(payloads) == 3
    with payloads[0].open("rb") as fh:
        delayed = pickle.load(fh)
    assert delayed.function.__qualname__ == "run_worker"
    (argv,) = delayed.args
    assert argv[:2] == ["ablate", str(spec_path.resolve())]
    assert argv[argv.index("--out") + 1] == str(out.resolve())
    assert "--worker-only" in argv and argv[argv.index("--storage") + 1] == "postgresql://u:p@db.example/zsl"
    assert "--launcher" not in argv  # a worker runs its units itself
    assert not (out / "results.csv").exists()  # nothing trained by the submitter


@pytest.mark.parametrize("args, names", [
    (["--partition", "gpu"], ["--partition", "--launcher slurm"]),
    (["--launcher", "slurm", "--time", "0"], ["--time", "integer >= 1"]),
    (["--launcher", "slurm", "--slurm-option", "reservation"], ["--slurm-option", "KEY=VALUE"]),
    (["--launcher", "slurm", "--workers", "2"], ["--workers", "--storage"]),
    (["--launcher", "slurm"], ["--launcher slurm", "srun"]),
    (["--spec-slurm", "slurm: {partitions: gpu}"], ["slurm.partitions", "spec.yaml", "partition"]),
    (["--spec-slurm", "slurm: {time_min: -5}"], ["slurm", "--time", "integer >= 1"]),
])
def test_bad_launcher_flags_fail_in_one_line(tmp_path: Path, args: list[str], names: list[str]) -> None:
    more = args[1] + "\n" if args[:1] == ["--spec-slurm"] else ""
    args = args[2:] if more else args
    spec_path = _spec(tmp_path, "bad_launch", more)
    env = cli_env(PATH=os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep)
                                       if not (Path(p) / "srun").exists()))
    res = run_cli(["ablate", spec_path, "--out", tmp_path / "out", "--no-mlflow", *args], env=env)
    assert_clean_failure(res, names=names, code=2)
    assert not (tmp_path / "out" / "results.csv").exists()
