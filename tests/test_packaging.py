"""A non-editable install (``pip install .``) ships the study specs and records the build commit."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _git(*args: str, cwd: Path = REPO) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A fresh clone of this checkout's HEAD, installed with ``pip install --target`` (offline)."""
    if shutil.which("git") is None or subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO,
                                                     capture_output=True).returncode != 0:
        pytest.skip("needs git and a git checkout of the repository (the build records its commit)")
    base = tmp_path_factory.mktemp("pkg")
    clone, target = base / "clone", base / "site"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    head = _git("rev-parse", "--short=12", "HEAD", cwd=clone)
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                           "--no-index", "--target", str(target), str(clone)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return target, head


def _py(target: Path, code: str, cwd: Path) -> str:
    env = {**os.environ, "PYTHONPATH": str(target)}
    env.pop("ZSL_BENCH_BENCHMARKS", None)
    proc = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout.strip()


def test_installed_copy_records_build_commit(installed: tuple[Path, str], tmp_path: Path) -> None:
    target, head = installed
    out = _py(target, "import zsl_bench, zsl_bench.results as r; print(zsl_bench.__file__); print(r.git_commit())",
              tmp_path)
    where, commit = out.splitlines()
    assert Path(where).is_relative_to(target)  # the installed copy, not this checkout
    assert commit == head


def test_installed_copy_ships_specs(installed: tuple[Path, str], tmp_path: Path) -> None:
    target, _ = installed
    shipped = sorted(p.name for p in (REPO / "benchmarks").glob("*.yaml"))
    code = ("from zsl_bench.study import locate_spec, load_spec\n"
            "for name in ('smoke', 'smoke.yaml', 'benchmarks/smoke.yaml', None):\n"
            "    print(locate_spec(name))\n"
            "print(load_spec('smoke').name)")
    lines = _py(target, code, tmp_path).splitlines()  # run outside any checkout: no ./benchmarks
    specs = target / "zsl_bench" / "specs"
    assert sorted(p.name for p in specs.glob("*.yaml")) == shipped
    assert lines[:3] == [str(specs / "smoke.yaml")] * 3
    assert lines[3] == str(specs / "msdnpp_ablation.yaml")
    assert lines[4] == "smoke"
