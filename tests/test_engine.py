"""The engine and runner on a tiny synthetic task built here from random arrays (CPU, seconds)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from toys import NaNMethod  # noqa: F401  (registers nan_test: NaN at step 2 = epoch 2 here)

from zsl_bench import engine as E
from zsl_bench.config import TrainConfig, resolve
from zsl_bench.contract import TaskInfo
from zsl_bench.data.store import FeatureStore, StoreWriter
from zsl_bench.data.zsldata import ZSLData
from zsl_bench.errors import TrainingError
from zsl_bench.registry import METHODS
from zsl_bench.results import COLUMNS
from zsl_bench.runner import RunSpec, run_one

K, A, F = 20, 8, 16
SEEN, UNSEEN = np.arange(14), np.arange(14, 20)


def make_data(tmp: Path, seed: int = 0, noise: float = 0.3) -> ZSLData:
    """20 classes (14 seen, 6 unseen) whose pooled features are a linear map of their attributes."""
    rng = np.random.default_rng(seed)
    att = rng.random((K, A)).astype(np.float32)
    att /= np.linalg.norm(att, axis=1, keepdims=True)
    proj = rng.normal(size=(A, F)).astype(np.float32)
    per_class = 20
    labels = np.repeat(np.arange(K), per_class).astype(np.int64)
    x = att[labels] @ proj + noise * rng.normal(size=(len(labels), F)).astype(np.float32)
    rows = np.arange(len(labels))
    seen_rows = rows[labels < len(SEEN)]
    pick = rng.random(len(seen_rows)) < 0.2
    test_seen, trainval = seen_rows[pick], seen_rows[~pick]
    val_seen_classes, val_unseen_classes = SEEN[:10], SEEN[10:]
    train = trainval[np.isin(labels[trainval], val_seen_classes)]
    val = trainval[np.isin(labels[trainval], val_unseen_classes)]
    vs = rng.random(len(train)) < 0.2
    splits = {"trainval": trainval, "test_seen": test_seen, "test_unseen": rows[labels >= len(SEEN)],
              "train": train, "val": val, "val_train": train[~vs], "val_seen": train[vs], "val_unseen": val}
    path = tmp / "TOY" / "features.h5"
    with StoreWriter(path, len(labels), F, None, {"source": "simulated"}) as w:
        w.write(0, pooled=x)
    return ZSLData(name="cub", att=att, labels=labels, seen_classes=SEEN, unseen_classes=UNSEEN, splits=splits,
                   val_seen_classes=val_seen_classes, val_unseen_classes=val_unseen_classes, source="simulated",
                   features=FeatureStore(path), provenance={"generator": "toy/1", "root": str(tmp), "semantics": "generated"})


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> ZSLData:
    return make_data(tmp_path_factory.mktemp("toy"))


def _run(data: ZSLData, out: Path, method: str = "ale", protocol: str = "val", epochs: int = 3, seed: int = 0,
         method_cfg: dict | None = None, **train: object) -> Any:
    cli = {"train": {"epochs": epochs, "device": "cpu", **train}, "method": method_cfg or {}}
    return run_one(RunSpec(method, "cub", seed=seed, protocol=protocol, sim_preset="toy"), out_dir=out,
                   cli_overrides=cli, progress=False, data=data)


# ---------------------------------------------------------------- determinism and resume


def test_same_seed_same_numbers_to_the_last_digit(data: ZSLData, tmp_path: Path) -> None:
    a = _run(data, tmp_path / "a")
    b = _run(data, tmp_path / "b")
    c = _run(data, tmp_path / "c", seed=1)
    assert a.metrics == b.metrics and a.history == b.history
    assert a.history != c.history  # the seed reaches initialisation and sampling
    assert [h["phase"] for h in a.history] == ["val"] * 3 + ["final"] * a.selection["best_epoch"]
    assert a.selection["val_h"] == max(h["val_h"] for h in a.history if h["phase"] == "val")


def test_streamed_features_equal_in_memory(data: ZSLData, tmp_path: Path) -> None:
    cfg = resolve(METHODS.get("ale"), "cub", None, {"train": {"epochs": 2, "device": "cpu"}})
    mem = E.Engine(METHODS.get("ale"), cfg, data)
    stream = E.Engine(METHODS.get("ale"), cfg, data, budget=0)
    rows = data.splits["trainval"]
    assert mem.rows(rows).in_memory and not stream.rows(rows).in_memory
    kw = dict(phase="final", train_rows=rows, seen=SEEN, unseen=UNSEEN, epochs=2, seed=0, progress=False)
    sa, sb = mem.train(**kw), stream.train(**kw)  # type: ignore[arg-type]
    assert sa.history == sb.history
    assert np.array_equal(mem.score(sa.model, data.splits["test_unseen"]),
                          stream.score(sb.model, data.splits["test_unseen"]))


def test_resume_equals_uninterrupted(data: ZSLData, tmp_path: Path) -> None:
    cfg2 = resolve(METHODS.get("ale"), "cub", None, {"train": {"epochs": 2, "device": "cpu"}})
    cfg4 = resolve(METHODS.get("ale"), "cub", None, {"train": {"epochs": 4, "device": "cpu"}})
    split = E.EvalSplit("val", data.splits["val_seen"], data.splits["val_unseen"], data.val_seen_classes,
                        data.val_unseen_classes)
    kw = dict(phase="val", train_rows=data.splits["val_train"], seen=data.val_seen_classes,
              unseen=data.val_unseen_classes, seed=3, evaluation=split, progress=False)
    ckpt = tmp_path / "ckpt" / "val.pt"
    first = E.Engine(METHODS.get("ale"), cfg2, data).train(epochs=2, ckpt_path=ckpt, **kw)  # type: ignore[arg-type]
    assert first.resumed_from == 0 and ckpt.is_file() and not ckpt.with_name("val.pt.tmp").exists()
    resumed = E.Engine(METHODS.get("ale"), cfg4, data).train(epochs=4, ckpt_path=ckpt, **kw)  # type: ignore[arg-type]
    straight = E.Engine(METHODS.get("ale"), cfg4, data).train(epochs=4, **kw)  # type: ignore[arg-type]
    assert resumed.resumed_from == 2
    assert resumed.history == straight.history and len(straight.history) == 4
    for k, v in straight.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k

    # The same through the runner: 2 epochs, then the same run directory to 4 epochs.
    _run(data, tmp_path / "run", epochs=2, seed=5)
    r_resumed = _run(data, tmp_path / "run", epochs=4, seed=5)
    r_straight = _run(data, tmp_path / "straight", epochs=4, seed=5)
    assert r_resumed.metrics == r_straight.metrics and r_resumed.history == r_straight.history


# ---------------------------------------------------------------- hooks and in-memory data


class Recorder(E.Hook):
    """Records what a hook sees at each point of the loop."""

    def __init__(self) -> None:
        self.events: list[tuple[str, int, int]] = []
        self.entries: list[dict[str, Any]] = []

    def before_train(self, t: E.Trainer) -> None:
        self.events.append(("before", t.start, len(t.history)))

    def after_step(self, t: E.Trainer) -> None:
        self.events.append(("step", t.epoch, t.step))

    def after_epoch(self, t: E.Trainer) -> None:
        self.events.append(("epoch", t.epoch, len(t.history)))
        self.entries.append(dict(t.entry))

    def after_train(self, t: E.Trainer) -> None:
        self.events.append(("after", t.epoch, len(t.history)))


class ListReporter:
    def __init__(self) -> None:
        self.calls: list[tuple[str, int, dict[str, float]]] = []

    def on_epoch(self, phase: str, epoch: int, metrics: dict[str, float]) -> None:
        self.calls.append((phase, epoch, metrics))


def test_hooks_see_each_step_and_epoch_after_evaluation_and_resume(data: ZSLData, tmp_path: Path) -> None:
    cfg = resolve(METHODS.get("ale"), "cub", None, {"train": {"epochs": 3, "device": "cpu", "batch_size": 100,
                                                              "eval_every": 2}})
    split = E.EvalSplit("val", data.splits["val_seen"], data.splits["val_unseen"], data.val_seen_classes,
                        data.val_unseen_classes)
    kw = dict(phase="val", train_rows=data.splits["val_train"], seen=data.val_seen_classes,
              unseen=data.val_unseen_classes, seed=0, evaluation=split, progress=False,
              ckpt_path=tmp_path / "val.pt")
    steps = -(-len(data.splits["val_train"]) // 100)
    rec, rep = Recorder(), ListReporter()
    out = E.Engine(METHODS.get("ale"), cfg, data).train(epochs=2, hooks=[rec], reporter=rep, **kw)  # type: ignore[arg-type]
    assert rec.events == [("before", 0, 0), *[("step", 1, i) for i in range(1, steps + 1)], ("epoch", 1, 1),
                          *[("step", 2, i) for i in range(1, steps + 1)], ("epoch", 2, 2), ("after", 2, 2)]
    # Built-in hooks run first: a user hook sees the epoch's evaluation (every 2nd epoch and the last).
    assert "val_h" not in rec.entries[0] and "val_h" in rec.entries[1] and rec.entries == out.history
    assert [(p, e) for p, e, _ in rep.calls] == [("val", 1), ("val", 2)]
    assert rep.calls[1][2]["val_h"] == out.best["h"] and "phase" not in rep.calls[1][2]

    # Resumed to 3 epochs: hooks and reporter see only the epoch that runs; epoch 3 is the last, so evaluated.
    rec, rep = Recorder(), ListReporter()
    out = E.Engine(METHODS.get("ale"), cfg, data).train(epochs=3, hooks=[rec], reporter=rep, **kw)  # type: ignore[arg-type]
    assert out.resumed_from == 2 and rec.events[0] == ("before", 2, 2) and rec.events[-1] == ("after", 3, 3)
    assert [(p, e) for p, e, _ in rep.calls] == [("val", 3)] and "val_h" in out.history[2]


def test_each_evaluation_scores_and_judges_its_split_once(data: ZSLData, monkeypatch: pytest.MonkeyPatch,
                                                          tmp_path: Path) -> None:
    calls: list[float | None] = []
    judge = E.evaluate_scores

    def counting(*args: Any, gamma: float | None = 0.0) -> dict[str, Any]:
        calls.append(gamma)
        return judge(*args, gamma=gamma)

    monkeypatch.setattr(E, "evaluate_scores", counting)
    r = _run(data, tmp_path, epochs=3)  # val: 3 evaluations at the best γ, then one test at the chosen γ
    assert calls == [None, None, None, r.metrics["gamma"]]


def test_in_memory_engine_equals_the_store_backed_one(data: ZSLData) -> None:
    cls = METHODS.get("ale")
    cfg = resolve(cls, "cub", None, {"train": {"epochs": 2, "device": "cpu"}})
    x = data.features.read_pooled(np.arange(data.num_images))  # [N, F]
    split = E.EvalSplit("test", data.splits["test_seen"], data.splits["test_unseen"], SEEN, UNSEEN)
    kw = dict(phase="oracle", train_rows=data.splits["trainval"], seen=SEEN, unseen=UNSEEN, epochs=2, seed=0,
              evaluation=split, progress=False)
    ref = E.Engine(cls, cfg, data).train(**kw)  # type: ignore[arg-type]
    for feats in (x, torch.from_numpy(x), np.stack([x, x], axis=2)):  # regions [N, F, 2]: pooled = their mean
        eng = E.Engine.from_arrays(cls, cfg, feats, data.labels, data.att, SEEN, UNSEEN, splits=data.splits,
                                   name="cub")
        out = eng.train(**kw)  # type: ignore[arg-type]
        assert out.history == ref.history and out.best is not None and out.best["h"] == ref.best["h"]
    default = E.Engine.from_arrays(cls, cfg, x, data.labels, data.att, SEEN, UNSEEN).data.splits
    assert set(default) == {"trainval", "test_unseen"}
    assert np.array_equal(default["test_unseen"], np.flatnonzero(data.labels >= len(SEEN)))


def test_rows_take_the_spec_run_id(data: ZSLData, tmp_path: Path) -> None:
    spec = RunSpec("eszsl", "cub", protocol="test-oracle", sim_preset="toy", run_id="study-unit-7")
    r = run_one(spec, out_dir=tmp_path, cli_overrides={"train": {"device": "cpu"}}, progress=False, data=data)
    assert {row["run_id"] for row in r.rows} == {"study-unit-7"}
    fresh = run_one(RunSpec("eszsl", "cub", protocol="test-oracle", sim_preset="toy"), out_dir=tmp_path,
                    cli_overrides={"train": {"device": "cpu"}}, progress=False, data=data)
    assert len({row["run_id"] for row in fresh.rows}) == 1 and fresh.rows[0]["run_id"].startswith("eszsl-cub-seed0-")


# ---------------------------------------------------------------- NaN guard


def test_nan_loss_stops_with_epoch_step_and_term(data: ZSLData, tmp_path: Path) -> None:
    with pytest.raises(TrainingError, match=r"epoch 2, step 1: term 'bad' = nan"):
        _run(data, tmp_path, method="nan_test", protocol="test-oracle", epochs=3, batch_size=10_000)


# ---------------------------------------------------------------- samplers and optimizers


def test_class_balanced_sampler_draws_classes_uniformly() -> None:
    labels = np.concatenate([np.zeros(900, np.int64), np.repeat(np.arange(1, 10), 10)])  # 90% class 0
    rng = np.random.default_rng(0)
    batches = [b for _ in range(20) for b in E.class_balanced_batches(labels, 5, rng)]
    pos = np.concatenate(batches)
    assert len(batches[0]) == 5 and len(batches) == 20 * 198
    counts = np.bincount(labels[pos], minlength=10)
    expected = len(pos) / 10
    assert np.all(np.abs(counts - expected) < 0.05 * expected), counts
    # no class twice within a batch (5 <= 10 classes), and every image of a rare class is used
    assert all(len(set(labels[b])) == 5 for b in batches[:200])
    rare = np.bincount(pos[labels[pos] == 3] - 920, minlength=10)  # class 3: rows 920..929
    assert rare.min() > 0.6 * rare.mean()
    # the uniform sampler is a permutation
    u = E.uniform_batches(37, 10, np.random.default_rng(0))
    assert sorted(np.concatenate(u).tolist()) == list(range(37)) and len(u) == 4


@pytest.mark.parametrize("name,cls", [("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW),
                                      ("rmsprop", torch.optim.RMSprop), ("sgd", torch.optim.SGD)])
def test_optimizers_from_config(name: str, cls: type) -> None:
    opt = E.build_optimizer([torch.nn.Parameter(torch.zeros(2))], TrainConfig(optimizer=name, lr=0.5, momentum=0.3))
    assert isinstance(opt, cls) and opt.param_groups[0]["lr"] == 0.5
    if name in ("rmsprop", "sgd"):
        assert opt.param_groups[0]["momentum"] == 0.3


# ---------------------------------------------------------------- methods beat chance, rows


# ESZSL's presets are for ResNet-101 features; the toy features need less ridge.
@pytest.mark.parametrize("method,cfg", [("ale", {}), ("eszsl", {"alpha": 1.0, "gamma": 0.01})])
def test_baselines_beat_chance(data: ZSLData, tmp_path: Path, method: str, cfg: dict) -> None:
    r = _run(data, tmp_path, method=method, epochs=15, lr=0.3, method_cfg=cfg)
    chance = 100 / len(UNSEEN)
    assert r.metrics["zsl_acc"] > chance + 30, r.metrics
    assert r.metrics["h"] > 20, r.metrics


def test_eszsl_equals_numpy_solve(data: ZSLData) -> None:
    cls = METHODS.get("eszsl")
    cfg = cls.config_cls(alpha=2.0, gamma=0.5)
    task = TaskInfo(dataset="cub", att=data.att, seen=SEEN, unseen=UNSEEN, feature_dim=F)
    model = cls(cfg, task)
    rows = data.splits["trainval"]
    x, y = data.features.read_pooled(rows).astype(np.float64), data.labels[rows]
    model.fit(torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y))
    X = x.T  # [F, m]
    Y = np.where(y[:, None] == SEEN[None, :], 1.0, 0.0)  # [m, z] one-hot (targets: zero_one)
    S = data.att[SEEN].astype(np.float64).T  # [A, z]
    V = np.linalg.inv(X @ X.T + 2.0 * np.eye(F)) @ X @ Y @ S.T @ np.linalg.inv(S @ S.T + 0.5 * np.eye(A))
    np.testing.assert_allclose(model.V.numpy(), V, rtol=1e-4, atol=1e-6)
    scores = model.scores(torch.as_tensor(x[:5], dtype=torch.float32)).numpy()
    np.testing.assert_allclose(scores, x[:5] @ V @ data.att.T.astype(np.float64), rtol=1e-4, atol=1e-5)


def test_test_oracle_reports_best_epoch_and_rows_are_complete(data: ZSLData, tmp_path: Path) -> None:
    r = _run(data, tmp_path, protocol="test-oracle", epochs=4)
    hs = [h["test_h"] for h in r.history]
    assert r.selection["best_epoch"] == int(np.argmax(hs)) + 1 and r.metrics["h"] == max(hs)
    assert {row["metric"] for row in r.rows} == {"zsl_acc", "u", "s", "h", "gamma", "ausuc"}
    for row in r.rows:
        assert set(COLUMNS) <= set(row) and all(row[c] != "" for c in COLUMNS), row
        assert row["protocol"] == "test-oracle" and row["source"] == "simulated"
    assert set(r.curve) == {"gamma", "u", "s"}
