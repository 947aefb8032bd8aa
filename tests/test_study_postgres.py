"""Two workers of one grid study on PostgreSQL: every grid point runs once, MLflow holds each once.

Needs ``ZSL_BENCH_PG_URL`` (CI: postgresql://zsl:zsl@127.0.0.1:5432/zsl). Unset: skipped. Set but
unreachable: failed, because then the CI setup is broken and the test must say so.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.postgres

REPO = Path(__file__).resolve().parents[1]
PG_URL = os.environ.get("ZSL_BENCH_PG_URL")


def require_pg() -> str:
    """The server URL; skips when unset, fails (in the test itself) when set but unreachable."""
    if not PG_URL:
        pytest.skip("ZSL_BENCH_PG_URL is not set (CI sets it after starting PostgreSQL on 127.0.0.1)")
    import sqlalchemy

    from zsl_bench.study.optuna_adapter import resolve_url

    try:  # the documented plain postgresql:// form, with the driver the postgres extra installs
        with sqlalchemy.create_engine(resolve_url(PG_URL)).connect() as conn:
            conn.execute(sqlalchemy.text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - any connection failure is the same failure here
        pytest.fail(f"ZSL_BENCH_PG_URL={PG_URL} is set but unreachable: {str(exc).splitlines()[0]}")
    return PG_URL


def test_two_workers_run_each_grid_point_once(tmp_path):
    pg_url = require_pg()
    import optuna
    from optuna.trial import TrialState

    from zsl_bench.results import METRIC_NAMES, read_rows
    from zsl_bench.study import grid_units, load_spec
    from zsl_bench.tracking import Tracker

    name = f"pg_{uuid.uuid4().hex[:10]}"  # a fresh study in a database that outlives the test
    spec_path = tmp_path / "pg.yaml"
    spec_path.write_text(f"""name: {name}
methods: [ale]
datasets: [cub]
seeds: [0, 1, 2]
protocol: val
sim: tiny
base: {{train: {{device: cpu, epochs: 20}}}}
grid: {{sweep: {{train.lr: [0.03, 0.3]}}}}
""")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "zsl_bench", "ablate", str(spec_path), "--out", str(out), "--storage", pg_url,
           "--no-progress"]
    workers = [subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for _ in range(2)]
    results = [w.communicate(timeout=150) for w in workers]
    for w, (_, err) in zip(workers, results):
        assert w.returncode == 0, err[-3000:]

    spec = load_spec(spec_path)
    want = {u.key for u in grid_units(spec, "cub")}
    from zsl_bench.study.optuna_adapter import resolve_url

    study = optuna.load_study(study_name=f"{name}.cub", storage=resolve_url(pg_url))
    done = [t.user_attrs["unit_key"] for t in study.trials if t.state == TrialState.COMPLETE]
    assert sorted(done) == sorted(want), "each grid point completed exactly once"
    ran = sum(int(err.split(" units run here")[0].rsplit(" ", 1)[-1]) for _, err in results
              if " units run here" in err)
    assert ran == len(want), "the two workers together ran every unit once"

    rows = read_rows(out / "results.csv")
    per_run: dict[str, int] = {}
    for r in rows:
        per_run[r["run_id"]] = per_run.get(r["run_id"], 0) + 1
    # ZSL/U/S/H and friends, plus context reliance: the default generator (v2) writes the resampled store
    reliance = {"zsl_acc_env", "h_env", "reliance_zsl", "reliance_h"}
    assert {r["metric"] for r in rows} == set(METRIC_NAMES) | reliance
    assert len(per_run) == len(want) and set(per_run.values()) == {len(METRIC_NAMES) + len(reliance)}

    counts = Tracker(out).count_units(name)
    assert set(counts) == want and set(counts.values()) == {1}, "MLflow holds each unit once"
    optuna.delete_study(study_name=f"{name}.cub", storage=resolve_url(pg_url))
