"""``benchmarks/gpu_suite.sh --cpu-smoke``: every section of the GPU suite runs (toy sizes, CPU).

Slow (minutes on a busy CPU): ``pytest -m slow tests/test_gpu_suite.py``. It proves the script a GPU
session runs as is has no broken section; the numbers it prints on CPU say nothing about a GPU.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from clicase import cli_env

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_suite_cpu_smoke_runs_every_section(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    if "slow" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("slow (minutes): run with -m slow")
    env = cli_env(OUT=str(tmp_path), ZSL_BENCH_CACHE=str(tmp_path / "cache"))
    res = subprocess.run(["bash", "benchmarks/gpu_suite.sh", "--cpu-smoke"], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=1200)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    out = res.stdout
    for key in ("train msdn R=4 fp32", "score msdnpp R=9 fp32", "schedule msdnpp cub fp32",
                "agree max |cpu deferred-check path - cpu|: 0.000", "extract backbone ResNet-101",
                "extract end-to-end", "section extract took", "total wall time"):
        assert key in out, f"{key!r} missing from the suite's output:\n{out[-3000:]}"
    assert (tmp_path / "gpu_suite.log").is_file()
