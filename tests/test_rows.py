"""Result rows: every column filled, extras reported beside accuracy, atomic appends."""

from __future__ import annotations

import numpy as np

from zsl_bench.config import resolve
from zsl_bench.data.loader import load_dataset
from zsl_bench.registry import METHODS
from zsl_bench.results import COLUMNS, METRIC_NAMES, append_rows, read_rows
from zsl_bench.runner import RunSpec, make_rows


def test_rows_carry_extras_and_provenance(tmp_path) -> None:
    data = load_dataset("cub", sim_preset="tiny")
    spec = RunSpec(method="msdnpp", dataset="cub", seed=3, sim_preset="tiny")
    cfg = resolve(METHODS.get("msdnpp"), "cub")
    metrics = {m: float(i) for i, m in enumerate(METRIC_NAMES)}
    rows = make_rows(spec, cfg, data, metrics, epoch=2, wall_time_s=1.5,
                     extras={"attention_hit_rate_avca": 42.0, "not_a_number": "x", "nan": float("nan")})
    by_metric = {r["metric"]: r for r in rows}
    assert set(by_metric) == set(METRIC_NAMES) | {"attention_hit_rate_avca"}
    assert by_metric["attention_hit_rate_avca"]["value"] == 42.0
    row = by_metric["h"]
    assert row["source"] == "simulated" and row["sim_preset"] == "tiny" and row["generator_version"]
    assert row["seed"] == 3 and row["protocol"] == "val" and row["config_hash"] == cfg.digest()
    append_rows(tmp_path / "results.csv", rows)
    append_rows(tmp_path / "results.csv", rows)
    back = read_rows(tmp_path / "results.csv")
    assert len(back) == 2 * len(rows) and list(back[0]) == list(COLUMNS)
    assert np.isclose(float(back[-1]["value"]), rows[-1]["value"])
    assert not list(tmp_path.glob("*.tmp"))
