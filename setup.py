"""Build hooks (the metadata is in setup.cfg).

- The study specs ``benchmarks/*.yaml`` are copied into the package as ``zsl_bench/specs/`` so that
  ``zsl-bench ablate SPEC`` finds them after a non-editable install (a checkout keeps reading
  ``benchmarks/`` directly).
- ``zsl_bench/_build.json`` records the commit the package was built from (``git rev-parse``; with
  ``-dirty`` when tracked files differ), so rows from an installed copy name it in ``git_commit``.
  An sdist carries the file, so a wheel built from the sdist (no ``.git``) keeps the commit.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

HERE = Path(__file__).resolve().parent
BUILD_INFO = "_build.json"


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=HERE, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def build_info() -> dict[str, str] | None:
    """``{"git_commit": ...}`` when building from a git checkout whose top level is this directory."""
    top = _git("rev-parse", "--show-toplevel")
    commit = _git("rev-parse", "--short=12", "HEAD")
    if not top or not commit or Path(top).resolve() != HERE:
        return None
    dirty = _git("status", "--porcelain", "--untracked-files=no")
    return {"git_commit": commit + ("-dirty" if dirty else "")}


def _write_build_info(pkg_dir: Path) -> None:
    info = build_info()
    if info is None:  # not a checkout: keep the file an sdist brought along, if any
        src = HERE / "zsl_bench" / BUILD_INFO
        if src.is_file() and not (pkg_dir / BUILD_INFO).is_file():
            shutil.copyfile(src, pkg_dir / BUILD_INFO)
        return
    pkg_dir.mkdir(parents=True, exist_ok=True)
    (pkg_dir / BUILD_INFO).write_text(json.dumps(info, sort_keys=True) + "\n")


class BuildPy(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install reads git and benchmarks/ from the checkout itself
        pkg = Path(self.build_lib) / "zsl_bench"
        _write_build_info(pkg)
        specs = pkg / "specs"
        specs.mkdir(parents=True, exist_ok=True)
        for f in sorted((HERE / "benchmarks").glob("*.yaml")):
            shutil.copyfile(f, specs / f.name)


class SDist(sdist):
    def make_release_tree(self, base_dir: str, files: list[str]) -> None:
        super().make_release_tree(base_dir, files)
        _write_build_info(Path(base_dir) / "zsl_bench")


setup(cmdclass={"build_py": BuildPy, "sdist": SDist})
