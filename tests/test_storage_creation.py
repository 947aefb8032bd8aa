"""Creating Optuna storage safely: the documented ``postgresql://`` form, and workers starting together.

Processes are real (``python -m zsl_bench`` or a small script), started behind a barrier: each
imports everything first, then waits for a common instant, so that they do race on the empty
database. The PostgreSQL cases need ``ZSL_BENCH_PG_URL`` (CI starts a server and sets it).
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from clicase import REPO, cli_env

from zsl_bench.errors import ConfigError
from zsl_bench.study import optuna_adapter as oa

PG_URL = os.environ.get("ZSL_BENCH_PG_URL")

# Every process signs in (a file in the folder argv[1]) once its imports are done, then waits for all.
_BARRIER = """
import os, pathlib, time
_gate = pathlib.Path(sys.argv[1])
(_gate / str(os.getpid())).touch()
_deadline = time.time() + 300
while len(list(_gate.iterdir())) < int(os.environ["BARRIER_N"]) and time.time() < _deadline:
    time.sleep(0.005)
"""

# Imports first, then the barrier, then the CLI with argv[2:].
_BARRIER_CLI = """
import sys, time
import optuna, sqlalchemy, torch  # noqa: F401 (loaded before the barrier)
from zsl_bench.cli.main import main
import zsl_bench.study.optuna_adapter, zsl_bench.study.runner  # noqa: F401
BARRIER
sys.exit(main(sys.argv[2:]))
"""

# Imports first, then wait, then open the storage and create (or load) one study.
_BARRIER_STORAGE = """
import sys, time
import optuna
from zsl_bench.study import optuna_adapter as oa
BARRIER
storage = oa.make_storage(sys.argv[2], heartbeat_s=5, grace_s=10)
optuna.create_study(study_name="race", storage=storage, direction="maximize", load_if_exists=True)
print("ok")
"""


def _together(code: str, argvs: list[list[str]], gate: Path, timeout: float = 600) -> list[tuple[int, str, str]]:
    """Run ``python -c code GATE *argv`` for each argv; all pass the barrier together after their imports."""
    gate.mkdir()
    code = code.replace("BARRIER", _BARRIER)
    env = cli_env(BARRIER_N=str(len(argvs)))
    procs = [subprocess.Popen([sys.executable, "-c", code, str(gate), *argv], cwd=REPO, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for argv in argvs]
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=timeout)
        out.append((p.returncode, stdout, stderr))
    return out


# ------------------------------------------------------------------ the URL
def test_plain_postgresql_url_gets_an_installed_driver() -> None:
    import sqlalchemy

    url = oa.resolve_url("postgresql://u:pw@127.0.0.1:1/db")
    assert url.startswith("postgresql+") and url.endswith("://u:pw@127.0.0.1:1/db")
    engine = sqlalchemy.create_engine(url)  # imports the driver; connects to nothing
    assert url.startswith(f"postgresql+{engine.dialect.driver}://")
    assert oa.resolve_url("postgres://u@h/db").startswith("postgresql+")


def test_other_urls_are_left_alone() -> None:
    for url in ("sqlite:///x/optuna.db", "postgresql+psycopg2://u@h/db", "postgresql+psycopg://u@h/db",
                "mysql+pymysql://u@h/db"):
        assert oa.resolve_url(url) == url


def test_unreachable_postgresql_is_one_line_without_password() -> None:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with pytest.raises(ConfigError, match=rf"cannot open --storage postgresql://u:\*\*\*@127\.0\.0\.1:{port}/db") as err:
        oa.make_storage(f"postgresql://u:secret@127.0.0.1:{port}/db", heartbeat_s=5, grace_s=10)
    assert "secret" not in str(err.value) and "\n" not in str(err.value)


# ------------------------------------------------------------------ SQLite, three at once
def test_three_processes_create_one_fresh_sqlite_storage(tmp_path: Path) -> None:
    for attempt in range(2):
        url = f"sqlite:///{tmp_path / f'optuna{attempt}.db'}"
        results = _together(_BARRIER_STORAGE, [[url]] * 3, tmp_path / f"gate{attempt}")
        for rc, stdout, stderr in results:
            assert rc == 0 and stdout.strip() == "ok", stderr[-2000:]


def test_three_ablate_processes_on_a_fresh_sqlite_file(tmp_path: Path) -> None:
    import optuna
    from optuna.trial import TrialState

    spec = tmp_path / "race.yaml"
    spec.write_text("""name: race
methods: [ale]
datasets: [cub]
seeds: [0]
protocol: val
sim: tiny
base: {train: {device: cpu, epochs: 2}}
grid: {sweep: {train.lr: [0.03, 0.1, 0.3]}}
""")
    out = tmp_path / "out"
    argv = ["ablate", str(spec), "--out", str(out), "--no-mlflow", "--no-progress"]
    results = _together(_BARRIER_CLI, [argv] * 3, tmp_path / "gate")
    for rc, _, stderr in results:
        assert rc == 0, stderr[-3000:]
        assert "UNIQUE constraint" not in stderr and "Traceback" not in stderr, stderr[-3000:]
    storage = oa.make_storage(f"sqlite:///{out / 'optuna.db'}", heartbeat_s=5, grace_s=10)
    study = optuna.load_study(study_name="race.cub", storage=storage)
    done = [t.user_attrs["unit_key"] for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(done) == 3 and len(set(done)) == 3, "each grid point completed exactly once"


# ------------------------------------------------------------------ PostgreSQL
@pytest.fixture
def pg_schema_url() -> str:
    """A fresh, empty schema on the CI server (dropped afterwards): Optuna's tables do not exist yet."""
    if not PG_URL:
        pytest.skip("ZSL_BENCH_PG_URL is not set (CI sets it after starting PostgreSQL on 127.0.0.1)")
    import sqlalchemy

    schema = f"race_{uuid.uuid4().hex[:10]}"
    engine = sqlalchemy.create_engine(oa.resolve_url(PG_URL))
    try:
        with engine.begin() as conn:
            conn.execute(sqlalchemy.text(f"CREATE SCHEMA {schema}"))
    except Exception as exc:  # noqa: BLE001
        pytest.fail(f"ZSL_BENCH_PG_URL={PG_URL} is set but unusable: {str(exc).splitlines()[0]}")
    sep = "&" if "?" in PG_URL else "?"
    yield f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    with engine.begin() as conn:
        conn.execute(sqlalchemy.text(f"DROP SCHEMA {schema} CASCADE"))
    engine.dispose()


@pytest.mark.postgres
def test_three_processes_create_one_fresh_postgresql_storage(pg_schema_url: str, tmp_path: Path) -> None:
    """The documented plain ``postgresql://`` form, three processes on an empty schema; then plot it."""
    import optuna

    assert pg_schema_url.startswith("postgresql://")
    results = _together(_BARRIER_STORAGE, [[pg_schema_url]] * 3, tmp_path / "gate")
    for rc, stdout, stderr in results:
        assert rc == 0 and stdout.strip() == "ok", stderr[-2000:]
    study = optuna.load_study(study_name="race", storage=oa.make_storage(pg_schema_url, heartbeat_s=5, grace_s=10))
    for x in (0.1, 0.5, 0.9):
        trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
        study.tell(trial, x * x)
    res = subprocess.run([sys.executable, "-m", "zsl_bench", "plot", "--kind", "optuna", "--storage", pg_schema_url,
                          "--study", "race", "--out", str(tmp_path / "figs")], cwd=REPO, env=cli_env(),
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert any(p.suffix == ".png" for p in (tmp_path / "figs").iterdir())
