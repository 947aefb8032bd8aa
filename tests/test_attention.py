"""Attention hit rate against simulated ground truth: hand-computed cases, loader, runner hook."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from zsl_bench.attention import (
    PartTruth,
    attention_hit_rate,
    extras,
    hit_counts,
    load_ground_truth,
    score_run,
)
from zsl_bench.errors import DataError


def _peaked(n: int, a: int, side: int, cells: list[list[tuple[int, int]]]) -> np.ndarray:
    """Maps [n, a, side²] that peak at cells[image][attribute] = (row, col)."""
    m = np.full((n, a, side * side), 0.1, dtype=np.float32)
    for i in range(n):
        for j in range(a):
            r, c = cells[i][j]
            m[i, j, r * side + c] = 1.0
    return m


def test_hit_rate_hand_computed() -> None:
    side = 5
    # Two parts; attribute 0, 1 -> part 0, attribute 2 -> part 1.
    groups = np.array([0, 0, 1])
    centres = np.array([[[2.0, 2.0], [0.2, 3.9]],  # image 0: part 0 at cell (2,2), part 1 at (0,4)
                        [[4.0, 0.0], [1.0, 1.0]]])  # image 1
    visible = np.array([[True, True], [True, False]])
    maps = _peaked(2, 3, side, [
        [(3, 3), (2, 4), (1, 3)],  # diag neighbour: hit; 2 columns away: miss; (1,3) vs (0,4): hit
        [(4, 1), (2, 0), (4, 4)],  # hit; 2 rows away: miss; part 1 hidden: not counted
    ])
    parts = PartTruth(centres, visible)
    assert hit_counts(maps, parts, groups, side) == (3, 5)
    assert attention_hit_rate(maps, parts, groups, side) == pytest.approx(3 / 5)
    assert attention_hit_rate(torch.from_numpy(maps), parts, groups, side) == pytest.approx(3 / 5)


def test_hit_rate_skips_attributes_without_part_and_nan_when_nothing_visible() -> None:
    side = 3
    parts = PartTruth(np.ones((1, 1, 2)), np.array([[True]]))
    maps = _peaked(1, 2, side, [[(1, 1), (1, 1)]])
    assert hit_counts(maps, parts, np.array([0, -1]), side) == (1, 1)
    hidden = PartTruth(parts.centres, np.array([[False]]))
    assert np.isnan(attention_hit_rate(maps, hidden, np.array([0, -1]), side))


@pytest.mark.parametrize("maps, msg", [
    (np.zeros((1, 2, 8), np.float32), "expected"),  # R is not side²
    (np.zeros((1, 3, 9), np.float32), "expected"),  # A does not match attr_to_group
    (np.full((1, 2, 9), np.nan, np.float32), "NaN"),
])
def test_hit_rate_bad_input(maps: np.ndarray, msg: str) -> None:
    parts = PartTruth(np.ones((1, 1, 2)), np.ones((1, 1), bool))
    with pytest.raises(DataError, match=msg):
        attention_hit_rate(maps, parts, np.array([0, 0]), 3)


def _write_gt(path: Path, **arrays: np.ndarray) -> Path:
    base = dict(centres=np.ones((2, 1, 2), np.float32), visible=np.ones((2, 1), bool),
                att_group=np.zeros(3, np.int64), grid_side=np.int64(3))
    base.update(arrays)
    np.savez(path, **{k: v for k, v in base.items() if v is not None})
    return path


def test_load_ground_truth(tmp_path: Path) -> None:
    gt = load_ground_truth(_write_gt(tmp_path / "gt.npz"))
    assert gt.side == 3 and gt.centres.shape == (2, 1, 2) and gt.attr_to_group.tolist() == [0, 0, 0]
    assert gt.parts(np.array([1])).visible.shape == (1, 1)
    with pytest.raises(DataError, match="not found"):
        load_ground_truth(tmp_path / "missing.npz")
    with pytest.raises(DataError, match="missing array.*visible"):
        load_ground_truth(_write_gt(tmp_path / "a.npz", visible=None))
    with pytest.raises(DataError, match="att_group"):
        load_ground_truth(_write_gt(tmp_path / "b.npz", att_group=np.array([0, 5])))
    (tmp_path / "junk.npz").write_text("not a zip")
    with pytest.raises(DataError, match="junk.npz"):
        load_ground_truth(tmp_path / "junk.npz")


@pytest.fixture(scope="module")
def tiny_sim():
    from zsl_bench.data.loader import load_dataset

    return load_dataset("cub", sim_preset="tiny", sim_seed=0)


class _Oracle(torch.nn.Module):
    """Maps that peak exactly on (or two cells away from) each attribute's part: rate 1 (or 0)."""

    input = "regions"

    def __init__(self, data, shift: int = 0) -> None:
        super().__init__()
        self.gt = load_ground_truth(data.ground_truth)
        self.shift = shift
        self.rows: np.ndarray | None = None
        self.w = torch.nn.Parameter(torch.zeros(1))

    def attention_maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        side, groups = self.gt.side, self.gt.attr_to_group
        cell = np.rint(self.gt.centres[self.rows][:, groups]).astype(int)  # [N, A, 2]
        row = cell[..., 0]
        col = np.where(cell[..., 1] + self.shift < side, cell[..., 1] + self.shift, cell[..., 1] - self.shift)
        maps = np.zeros((len(self.rows), len(groups), side * side), np.float32)
        np.put_along_axis(maps, (row * side + col)[..., None], 1.0, axis=2)
        return {"avca": torch.from_numpy(maps)}


def test_score_run_oracle_and_real(tiny_sim) -> None:
    idx = np.sort(tiny_sim.splits["test_unseen"])
    oracle = _Oracle(tiny_sim)
    oracle.rows = idx
    assert score_run(oracle, tiny_sim, idx) == {"attention_hit_rate_avca": 1.0}
    far = _Oracle(tiny_sim, shift=2)
    far.rows = idx
    assert score_run(far, tiny_sim, idx) == {"attention_hit_rate_avca": 0.0}
    assert score_run(oracle, replace(tiny_sim, source="real"), idx) == {}


def test_extras_with_msdn(tiny_sim) -> None:
    import methods  # noqa: F401  (registers msdn)
    from methods.msdn import MSDN, MSDNConfig
    from zsl_bench.contract import TaskInfo

    task = TaskInfo("cub", tiny_sim.att.astype(np.float32), tiny_sim.seen_classes, tiny_sim.unseen_classes,
                    tiny_sim.features.feature_dim, tiny_sim.features.num_regions, tiny_sim.w2v)
    torch.manual_seed(0)
    out = extras(MSDN(MSDNConfig(), task), tiny_sim)
    assert set(out) == {"attention_hit_rate_avca", "attention_hit_rate_vaca"}
    assert all(0.0 <= v <= 100.0 for v in out.values())  # percent
    assert extras(torch.nn.Linear(2, 2), tiny_sim) == {}
