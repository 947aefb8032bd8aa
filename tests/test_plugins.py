"""Third-party methods through the ``zsl_bench.methods`` entry point, end to end.

A toy plug-in package is pip-installed (offline, no build isolation) into a temporary ``--target``
directory and run through the real CLI in a subprocess whose ``PYTHONPATH`` includes that directory:
the registry must find it without any change to this repository. A broken plug-in must fail only
when it is asked for, with a one-line error naming it, and be listed by ``zsl-bench ls methods``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from zsl_bench.registry import ENTRY_POINT_GROUP

REPO = Path(__file__).resolve().parents[1]

# A complete method in one file: ridge regression from features to class semantics (ESZSL-like,
# closed form), scored by the dot product with every class's semantics.
TOY_METHOD = '''
"""A toy plug-in method: ridge regression features -> semantics, solved in closed form."""

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from zsl_bench.config import check
from zsl_bench.contract import TaskInfo, ZSLMethod
from zsl_bench.registry import METHODS


@dataclass(frozen=True)
class ToyConfig:
    ridge: float = 1.0

    def __post_init__(self) -> None:
        check(self.ridge > 0, "method.ridge", self.ridge, "a float > 0")


@METHODS.register("toyridge")
class ToyRidge(ZSLMethod):
    name = "toyridge"
    family = "embedding"
    input = "pooled"
    description = "toy plug-in: ridge regression to class semantics"
    config_cls = ToyConfig
    fits_closed_form = True

    def __init__(self, cfg: ToyConfig, task: TaskInfo) -> None:
        super().__init__(cfg, task)
        self.register_buffer("att", torch.as_tensor(task.att))  # [K, A]
        self.register_buffer("W", torch.zeros(task.feature_dim, task.num_attributes))  # [F, A]

    def fit(self, x: torch.Tensor, y: torch.Tensor) -> None:
        x = x.double()  # [N, F]
        target = self.att[y].double()  # [N, A]
        gram = x.T @ x + self.cfg.ridge * torch.eye(x.shape[1], dtype=torch.float64)
        self.W = torch.linalg.solve(gram, x.T @ target).float()

    def forward(self, x: torch.Tensor) -> dict[str, Any]:
        return {"logits": (x @ self.W) @ self.att.T}  # [B, K]
'''

BROKEN_MODULE = '''
import zsl_bench_no_such_dependency  # noqa: F401  (the plug-in's missing dependency)
'''


def _env(*paths: Path, cache: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([*map(str, paths), str(REPO)])
    env["ZSL_BENCH_CACHE"] = str(cache)
    env["OMP_NUM_THREADS"] = "1"
    return env


def _zsl_bench(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "zsl_bench", *args], env=env, cwd=cwd, text=True,
                          capture_output=True, timeout=600)


@pytest.fixture(scope="module")
def toy_target(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The toy package, pip-installed into a fresh ``--target`` directory."""
    src = tmp_path_factory.mktemp("toy-src")
    (src / "zsl_toy").mkdir()
    (src / "zsl_toy" / "__init__.py").write_text(textwrap.dedent(TOY_METHOD))
    (src / "pyproject.toml").write_text(textwrap.dedent(f'''
        [build-system]
        requires = ["setuptools"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "zsl-toy"
        version = "0.1"

        [project.entry-points."{ENTRY_POINT_GROUP}"]
        toyridge = "zsl_toy"
    '''))
    target = tmp_path_factory.mktemp("toy-target")
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation",
                           "--no-index", "--quiet", "--target", str(target), str(src)],
                          text=True, capture_output=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert (target / "zsl_toy" / "__init__.py").is_file()
    assert list(target.glob("zsl_toy-0.1.dist-info/entry_points.txt"))
    return target


def test_installed_plugin_runs_end_to_end(toy_target: Path, tmp_path: Path) -> None:
    env = _env(toy_target, cache=tmp_path / "cache")
    listed = _zsl_bench(["ls", "methods"], env, tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert any(line.split()[:3] == ["toyridge", "embedding", "pooled"] for line in listed.stdout.splitlines())

    out = tmp_path / "out"
    proc = _zsl_bench(["run", "toyridge", "--datasets", "cub", "--sim", "tiny", "--seeds", "0", "--no-mlflow",
                       "--out", str(out)], env, tmp_path)
    assert proc.returncode == 0, proc.stderr

    from zsl_bench.results import METRIC_NAMES, read_rows

    rows = read_rows(out / "results.csv")
    # the default generator (v2) writes an environment-resampled store: context reliance comes too
    reliance = {"zsl_acc_env", "h_env", "reliance_zsl", "reliance_h"}
    assert {r["metric"] for r in rows} == set(METRIC_NAMES) | reliance
    assert {(r["method"], r["dataset"], r["source"], r["seed"]) for r in rows} == {("toyridge", "cub", "simulated", "0")}
    values = {r["metric"]: float(r["value"]) for r in rows}
    # The tiny preset is near chance for pooled features (test_run_cli), so only the range is
    # asserted: the point here is that an installed package is found, configured, trained and judged.
    assert all(0.0 <= values[m] <= 100.0 for m in ("zsl_acc", "u", "s", "h", "ausuc")), values
    assert values["zsl_acc"] > 0, values
    assert "toyridge" in proc.stdout.splitlines()[0]  # the printed table's title names the method


@pytest.fixture()
def broken_target(tmp_path: Path) -> Path:
    """A plug-in whose import fails: a real ``.dist-info`` (as pip writes it) naming a module that
    imports a missing dependency."""
    target = tmp_path / "broken-target"
    (target / "zsl_broken").mkdir(parents=True)
    (target / "zsl_broken" / "__init__.py").write_text(BROKEN_MODULE)
    info = target / "zsl_broken-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: zsl-broken\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\nbrokenmethod = zsl_broken\n")
    return target


def test_broken_plugin_errors_when_asked_for_and_is_listed(broken_target: Path, tmp_path: Path) -> None:
    env = _env(broken_target, cache=tmp_path / "cache")
    proc = _zsl_bench(["run", "brokenmethod", "--datasets", "cub", "--sim", "tiny", "--seeds", "0",
                       "--no-mlflow", "--out", str(tmp_path / "o")], env, tmp_path)
    assert proc.returncode == 2
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1, proc.stderr  # one line, no traceback
    for expect in ("brokenmethod", "zsl_broken", "zsl-broken", "ModuleNotFoundError",
                   "zsl_bench_no_such_dependency"):
        assert expect in err[0], err[0]
    assert not (tmp_path / "o").exists()

    listed = _zsl_bench(["ls", "methods"], env, tmp_path)
    assert listed.returncode == 0, listed.stderr
    lines = {line.split()[0]: line for line in listed.stdout.splitlines()[1:]}
    assert "BROKEN" in lines["brokenmethod"] and "zsl_bench_no_such_dependency" in lines["brokenmethod"]
    assert "eszsl" in lines and "BROKEN" not in lines["eszsl"]  # the zoo is unaffected

    # Every other method still resolves and runs.
    ok = _zsl_bench(["run", "eszsl", "--datasets", "cub", "--sim", "tiny", "--seeds", "0", "--no-mlflow",
                     "--out", str(tmp_path / "ok")], env, tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "ok" / "results.csv").is_file()


def test_registry_records_broken_entry_points_without_raising(monkeypatch: pytest.MonkeyPatch) -> None:
    """In process: the loader records the failure; only ``get`` of that name raises."""
    from importlib.metadata import EntryPoint

    from zsl_bench import registry
    from zsl_bench.errors import ZSLError

    eps = [EntryPoint("brokenmethod", "zsl_bench_no_such_module_xyz", ENTRY_POINT_GROUP)]
    monkeypatch.setattr("importlib.metadata.entry_points", lambda group: eps if group == ENTRY_POINT_GROUP else [])
    reg: registry.Registry[object] = registry.Registry("method", registry._load_methods)
    assert "brokenmethod" not in reg and reg.names() == []  # built-ins register into METHODS, not here
    assert list(reg.broken()) == ["brokenmethod"]
    with pytest.raises(ZSLError, match=r"method plug-in 'brokenmethod' is broken \(entry point brokenmethod = "
                                        r"zsl_bench_no_such_module_xyz.*ModuleNotFoundError"):
        reg.get("brokenmethod")
    with pytest.raises(ZSLError, match="unknown method 'nosuch'"):
        reg.get("nosuch")
