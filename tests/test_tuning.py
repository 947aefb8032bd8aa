"""Honest validation tuning of ``tuned_on_val`` hyperparameters by ``runner.run_one`` (CPU, seconds).

A tiny closed-form probe method is registered here. Its scores are clean class compatibilities
when ``method.shrink == 1`` and are buried in a fixed random projection otherwise, so the value
validation must pick is known; ``method.pad`` changes nothing, so it exercises the tie rule. The
probe records every ``fit`` and ``scores`` input so the tests can check what tuning touched.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import torch

from zsl_bench.config import build
from zsl_bench.contract import TaskInfo, ZSLMethod
from zsl_bench.data.store import FeatureStore, StoreWriter
from zsl_bench.data.zsldata import ZSLData
from zsl_bench.errors import ConfigError
from zsl_bench.protocol import tuning_grid
from zsl_bench.registry import METHODS
from zsl_bench.runner import RunSpec, run_one

K, A, F = 12, 6, 10
SEEN, UNSEEN = np.arange(8), np.arange(8, 12)


@dataclass(frozen=True)
class ProbeConfig:
    shrink: float = 0.0  # 1.0: clean scores; anything else: scores buried in noise
    pad: int = 0  # no effect on the scores


@METHODS.register("tuning_probe")
class TuningProbe(ZSLMethod):
    """Least-squares map from features to attributes; scores = compatibility with each class."""

    name = "tuning_probe"
    input = "pooled"
    config_cls = ProbeConfig
    fits_closed_form = True
    tuned_on_val: ClassVar[dict[str, tuple[Any, ...]]] = {"shrink": (0.0, 1.0, 2.0), "pad": (0, 1)}
    tiny: ClassVar[dict[str, Any]] = {}
    fits: ClassVar[list[tuple[np.ndarray, np.ndarray, ProbeConfig]]] = []  # (x, y, cfg) of every fit
    scored: ClassVar[list[np.ndarray]] = []  # x of every scores() call

    def __init__(self, cfg: ProbeConfig, task: TaskInfo) -> None:
        super().__init__(cfg, task)
        self.register_buffer("att", torch.as_tensor(task.att))  # [K, A]
        self.register_buffer("W", torch.zeros(F, A))  # [F, A]
        noise = torch.Generator().manual_seed(7)
        self.register_buffer("R", torch.randn(F, K, generator=noise) * 50.0)  # [F, K]

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        clean = x @ self.W @ self.att.T  # [B, K]
        return {"logits": clean + abs(self.cfg.shrink - 1.0) * (x @ self.R)}

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        type(self).scored.append(x.detach().cpu().numpy().copy())
        return super().scores(x)

    def fit(self, x: torch.Tensor, y: torch.Tensor) -> None:
        type(self).fits.append((x.detach().cpu().numpy().copy(), y.cpu().numpy().copy(), self.cfg))
        target = self.att[y]  # [N, A]
        self.W.copy_(torch.linalg.lstsq(x.double(), target.double()).solution.float())


def make_data(tmp: Path) -> ZSLData:
    """12 classes (8 seen, of which 3 play unseen in validation; 4 unseen) with linear features."""
    rng = np.random.default_rng(0)
    att = rng.random((K, A)).astype(np.float32)
    att /= np.linalg.norm(att, axis=1, keepdims=True)
    proj = rng.normal(size=(A, F)).astype(np.float32)
    labels = np.repeat(np.arange(K), 15).astype(np.int64)
    x = att[labels] @ proj + 0.05 * rng.normal(size=(len(labels), F)).astype(np.float32)
    rows = np.arange(len(labels))
    seen_rows = rows[labels < len(SEEN)]
    pick = np.zeros(len(seen_rows), dtype=bool)
    pick[::5] = True  # 3 test-seen images per seen class
    test_seen, trainval = seen_rows[pick], seen_rows[~pick]
    val_seen_classes, val_unseen_classes = SEEN[:5], SEEN[5:]
    train = trainval[np.isin(labels[trainval], val_seen_classes)]
    val = trainval[np.isin(labels[trainval], val_unseen_classes)]
    vs = np.zeros(len(train), dtype=bool)
    vs[::4] = True
    splits = {"trainval": trainval, "test_seen": test_seen, "test_unseen": rows[labels >= len(SEEN)],
              "train": train, "val": val, "val_train": train[~vs], "val_seen": train[vs], "val_unseen": val}
    path = tmp / "PROBE" / "features.h5"
    with StoreWriter(path, len(labels), F, None, {"source": "simulated"}) as w:
        w.write(0, pooled=x)
    return ZSLData(name="cub", att=att, labels=labels, seen_classes=SEEN, unseen_classes=UNSEEN, splits=splits,
                   val_seen_classes=val_seen_classes, val_unseen_classes=val_unseen_classes, source="simulated",
                   features=FeatureStore(path), provenance={"generator": "probe/1", "root": str(tmp)})


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> ZSLData:
    return make_data(tmp_path_factory.mktemp("probe"))


@pytest.fixture(autouse=True)
def _fresh_records() -> None:
    TuningProbe.fits.clear()
    TuningProbe.scored.clear()


def _run(data: ZSLData, out: Path, protocol: str = "val", method: dict[str, Any] | None = None,
         file_method: dict[str, Any] | None = None) -> Any:
    spec = RunSpec("tuning_probe", "cub", protocol=protocol, sim_preset="probe",
                   overrides={"method": file_method} if file_method else {})
    cli = {"train": {"device": "cpu"}, "method": method or {}}
    return run_one(spec, out_dir=out, cli_overrides=cli, progress=False, data=data)


def _rows_of(data: ZSLData, split: str) -> np.ndarray:
    return data.features.read_pooled(np.sort(data.splits[split]))  # [N, F]


def _contains_any(x: np.ndarray, rows: np.ndarray) -> bool:
    return bool((np.abs(x[:, None, :] - rows[None, :, :]).max(axis=2) == 0).any())


def test_tuning_picks_the_value_best_on_validation_and_records_it(data: ZSLData, tmp_path: Path) -> None:
    res = _run(data, tmp_path)
    # shrink=1 is the only clean setting; pad has no effect, so the tie goes to the first value.
    assert res.selection["tuned.shrink"] == 1.0 and res.selection["tuned.pad"] == 0.0
    assert res.selection["tuned.candidates"] == 6.0
    tune = [h for h in res.history if h["phase"] == "tune"]
    assert [h["candidate"] for h in tune] == list(range(6))
    best_val_h = max(h["val_h"] for h in tune)
    assert res.selection["val_h"] == best_val_h
    assert all(h["val_h"] < best_val_h for h in tune if h["tuned.shrink"] != 1.0)  # the grid discriminates
    assert [h["phase"] for h in res.history][-1] == "final"
    # The run's config and every row's config hold the chosen values (reproducible as given).
    assert (res.config.method.shrink, res.config.method.pad) == (1.0, 0)
    for row in res.rows:
        assert json.loads(row["config"])["method"] == {"shrink": 1.0, "pad": 0}
    # Phase 2 trained the chosen values once on trainval; the clean model is far above chance.
    assert TuningProbe.fits[-1][2] == ProbeConfig(shrink=1.0, pad=0)
    assert len(TuningProbe.fits) == 7
    assert res.metrics["zsl_acc"] > 80.0 and res.metrics["h"] > 50.0


def test_test_data_is_never_touched_while_tuning(data: ZSLData, tmp_path: Path) -> None:
    _run(data, tmp_path)
    test_x = np.concatenate([_rows_of(data, "test_seen"), _rows_of(data, "test_unseen")])
    tune_fits, final_fit = TuningProbe.fits[:-1], TuningProbe.fits[-1]
    for x, y, _ in tune_fits:
        assert not _contains_any(x, test_x)
        assert set(np.unique(y)) <= set(data.val_seen_classes.tolist())  # validation classes held out
        assert len(x) == len(data.splits["val_train"])
    assert not _contains_any(final_fit[0], test_x) and len(final_fit[0]) == len(data.splits["trainval"])
    # Test features are scored exactly once, after every candidate was fitted and chosen.
    touched = [i for i, x in enumerate(TuningProbe.scored) if _contains_any(x, test_x)]
    assert touched == [len(TuningProbe.scored) - 1]


def test_explicit_values_are_not_tuned(data: ZSLData, tmp_path: Path) -> None:
    # --set method.shrink=2 (a bad value) is kept; only pad is tuned.
    res = _run(data, tmp_path / "cli", method={"shrink": 2.0})
    assert "tuned.shrink" not in res.selection and res.selection["tuned.pad"] == 0.0
    assert res.selection["tuned.candidates"] == 2.0
    assert {f[2].shrink for f in TuningProbe.fits} == {2.0}
    assert json.loads(res.rows[0]["config"])["method"]["shrink"] == 2.0
    # A config-file (spec.overrides) value is explicit too; with every key fixed, nothing is tuned.
    TuningProbe.fits.clear()
    res = _run(data, tmp_path / "file", file_method={"shrink": 0.0}, method={"pad": 1})
    assert not any(k.startswith("tuned.") for k in res.selection)
    assert [h["phase"] for h in res.history] == ["val", "final"]
    assert {(f[2].shrink, f[2].pad) for f in TuningProbe.fits} == {(0.0, 1)}
    # The rows' config_hash names the requested config (what a rerun of the command resolves to).
    assert res.rows[0]["config_hash"] == res.config.digest()


def test_test_oracle_keeps_config_values(data: ZSLData, tmp_path: Path) -> None:
    res = _run(data, tmp_path)
    tuned_hash = res.rows[0]["config_hash"]
    TuningProbe.fits.clear()
    oracle = _run(data, tmp_path / "oracle", protocol="test-oracle")
    assert {f[2] for f in TuningProbe.fits} == {ProbeConfig()}  # defaults, not a grid
    assert not any(k.startswith("tuned.") for k in oracle.selection)
    assert oracle.rows[0]["protocol"] == "test-oracle"
    # Tuned rows keep the requested config's hash while their config column holds the tuned values.
    assert tuned_hash != res.config.digest()


def test_tuning_grid_rejects_bad_declarations() -> None:
    class Bad(TuningProbe):
        tuned_on_val: ClassVar[dict[str, tuple[Any, ...]]] = {"shrinkk": (1.0,)}

    with pytest.raises(ConfigError, match="method.shrinkk"):
        tuning_grid(Bad)

    class Empty(TuningProbe):
        tuned_on_val: ClassVar[dict[str, tuple[Any, ...]]] = {"shrink": ()}

    with pytest.raises(ConfigError, match="no candidate values"):
        tuning_grid(Empty)
    assert build(ProbeConfig, {}, "method") == ProbeConfig()


def test_eszsl_declares_its_grid_over_config_keys() -> None:
    cls = METHODS.get("eszsl")
    grid = tuning_grid(cls, {}, {"method": {"gamma": 0.1}})
    assert list(tuning_grid(cls, {"method": {"alpha": 1.0}})) == ["gamma", "normalize_features"]
    assert list(grid) == ["alpha", "normalize_features"] and len(grid["alpha"]) == 7


def test_select_only_run_never_touches_test_and_reports_validation_rows(data: ZSLData, tmp_path: Path) -> None:
    # Search trials run so: phase 1 of `val` (tuning included) and no retraining, no test scoring.
    spec = RunSpec("tuning_probe", "cub", sim_preset="probe", select_only=True)
    res = run_one(spec, out_dir=tmp_path, cli_overrides={"train": {"device": "cpu"}}, progress=False, data=data)
    test_x = np.concatenate([_rows_of(data, "test_seen"), _rows_of(data, "test_unseen")])
    assert len(TuningProbe.fits) == 6 and all(len(x) == len(data.splits["val_train"]) for x, _, _ in TuningProbe.fits)
    assert not any(_contains_any(x, test_x) for x in TuningProbe.scored)
    assert res.metrics == {} and res.curve == {}
    assert {r["metric"] for r in res.rows} == {"val_zsl_acc", "val_u", "val_s", "val_h", "val_ausuc", "gamma"}
    by_metric = {r["metric"]: r["value"] for r in res.rows}
    assert by_metric["val_h"] == res.selection["val_h"] and res.selection["tuned.shrink"] == 1.0
    assert {h["phase"] for h in res.history} == {"tune"}
    with pytest.raises(ConfigError, match="select_only"):
        RunSpec("tuning_probe", "cub", protocol="test-oracle", select_only=True)
