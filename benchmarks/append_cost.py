"""Cost of appending one unit's rows (6) to results.csv of 1k vs 100k rows (append-only: about equal).

    PYTHONPATH=. python benchmarks/append_cost.py
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

from zsl_bench.results import _csv_text, append_rows


def _rows(run_id: str) -> list[dict]:
    return [{"run_id": run_id, "method": "ale", "variant": "default", "dataset": "cub", "source": "simulated",
             "sim_preset": "tiny", "data_seed": 0, "protocol": "val", "seed": 0, "metric": m, "value": 1.0 + i,
             "epoch": 3, "config_hash": "abc", "config": '{"train": {"lr": 0.1, "epochs": 40}}'}
            for i, m in enumerate(["zsl_acc", "u", "s", "h", "gamma", "ausuc"])]


def cost(n_rows: int, repeats: int = 30) -> float:
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "results.csv"
        p.write_text(_csv_text([r for i in range(n_rows // 6) for r in _rows(f"old-{i}")], header=True))
        times = []
        for i in range(repeats):
            t0 = time.perf_counter()
            append_rows(p, _rows(f"new-{i}"))
            times.append(time.perf_counter() - t0)
        return statistics.median(times)


if __name__ == "__main__":
    small, large = cost(1_000), cost(100_000)
    print(f"append 6 rows: 1k-row file {small * 1e3:.2f} ms, 100k-row file {large * 1e3:.2f} ms, "
          f"ratio {large / small:.2f} (median of 30)")
    sys.exit(0)
