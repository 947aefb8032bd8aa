"""The equivalence checks (benchmarks/equivalence/*.py) run without the official code for --help,
refuse a wrong --official cleanly, and their comparison helpers fail on a planted difference."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1] / "benchmarks" / "equivalence"
SCRIPTS = ("msdn", "dazle", "transzero")


def load(name: str):
    sys.path.insert(0, str(ROOT))
    spec = importlib.util.spec_from_file_location(f"equivalence_{name}", ROOT / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", SCRIPTS)
def test_help_works(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        load(name).main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "--official" in out and "--steps" in out


@pytest.mark.parametrize("name", SCRIPTS)
def test_wrong_official_dir_is_one_clear_line(name: str, tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        load(name).main(["--official", str(tmp_path)])
    msg = str(exc.value.code)
    assert msg.startswith("error: --official") and str(tmp_path) in msg and "\n" not in msg


def test_bad_dataset_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        load("msdn").main(["--official", str(tmp_path), "--datasets", "imagenet"])
    assert "valid settings are cub, sun, awa2" in str(exc.value.code)


def test_planted_difference_fails() -> None:
    common = load("msdn").common
    a = torch.randn(5, 7, dtype=torch.float64)
    rep = common.Report("same")
    rep.compare("x", a, a.clone())
    assert rep.ok and common.finish([rep]) == 0
    b = a.clone()
    b[2, 3] += 1e-8  # far below float32 noise, far above float64 rounding
    rep = common.Report("planted")
    rep.compare("x", a, a.clone())
    row = rep.compare("y", b, a)
    assert not row.ok and row.abs == pytest.approx(1e-8, rel=1e-6)
    assert not rep.ok and not rep.print() and common.finish([rep]) == 1
    # NaN, shape mismatch and an empty report never pass
    nan = a.clone()
    nan[0, 0] = float("nan")
    assert not common.Report("n").compare("nan", nan, a).ok
    with pytest.raises(ValueError, match="shape mismatch"):
        common.max_diff(a, a[:4])
    assert not common.Report("empty").ok and common.finish([]) == 1
    # a measured (documented) difference is printed but does not decide the verdict
    rep = common.Report("measured")
    rep.compare("x", a, a)
    rep.measure("known", b, a)
    assert rep.ok


def test_planted_weight_difference_shows_in_gradients_and_trajectory() -> None:
    common = load("msdn").common
    torch.manual_seed(0)
    ours = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh(), torch.nn.Linear(3, 2)).double()
    theirs = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh(), torch.nn.Linear(3, 2)).double()
    mapping = {n: n for n, _ in ours.named_parameters()}
    common.copy_params(ours, theirs, mapping)
    x = torch.randn(6, 4, dtype=torch.float64)
    data = [(x, torch.zeros(6))]
    rep = common.Report("copied")
    common.compare_grads(rep, "loss", ours(x).pow(2).sum(), theirs(x).pow(2).sum(), ours, theirs, mapping)
    assert rep.ok
    with torch.no_grad():
        theirs[2].bias[1] += 1e-6  # the planted difference
    rep = common.Report("planted")
    common.compare_grads(rep, "loss", ours(x).pow(2).sum(), theirs(x).pow(2).sum(), ours, theirs, mapping)
    l1, l2 = common.trajectory([(ours, torch.optim.SGD(ours.parameters(), lr=0.1), lambda a, _: ours(a).pow(2).sum()),
                                (theirs, torch.optim.SGD(theirs.parameters(), lr=0.1),
                                 lambda a, _: theirs(a).pow(2).sum())], data * 3)
    rep.compare("trajectory", l1, l2)
    assert not rep.ok
    assert not [r for r in rep.rows if r.name == "trajectory"][0].ok
