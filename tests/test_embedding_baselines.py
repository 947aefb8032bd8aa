"""The classic embedding baselines follow the re-implementation whose hyper-parameters they copy
(issue 12): per-image SGD schedules with early stopping, SAE's row-normalised W and λ tuned on
validation, ESZSL's one-hot targets, SJE's standardised violator, DeViSE's single violator, LATEM's
one sampled wrong class and K tuned on validation. Tiny shapes; each test well under a second.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

from methods.ale import ALE, ALEConfig
from methods.devise import DeViSE, DeViSEConfig
from methods.eszsl import ESZSL, ESZSLConfig
from methods.latem import LATEM, LATEMConfig
from methods.sae import LAMBDAS, SAE, SAEConfig
from methods.sje import SJE, SJEConfig
from zsl_bench.config import build
from zsl_bench.contract import TaskInfo
from zsl_bench.engine import EarlyStopHook
from zsl_bench.errors import ConfigError
from zsl_bench.protocol import tuning_grid

K, A, F = 12, 6, 10
SEEN, UNSEEN = np.arange(8), np.arange(8, 12)


def _task(seed: int = 0) -> TaskInfo:
    rng = np.random.default_rng(seed)
    att = rng.random((K, A)).astype(np.float32)
    att /= np.linalg.norm(att, axis=1, keepdims=True)
    return TaskInfo(dataset="cub", att=att, seen=SEEN, unseen=UNSEEN, feature_dim=F)


def _batch(n: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    return torch.as_tensor(rng.random((n, F)), dtype=torch.float32), torch.as_tensor(rng.choice(SEEN, n))


# ---------------------------------------------------------------- schedules


@pytest.mark.parametrize("cls", [ALE, SJE, DeViSE, LATEM])
def test_per_image_sgd_schedule_with_early_stopping(cls: Any) -> None:
    # mvp18: one update per image, at most 100 epochs, stop 10 epochs after the best (-e 100, -es 10).
    assert cls.early_stop == 10
    for ds in ("cub", "sun", "awa2", "flo"):
        train = cls.presets[ds]["train"]
        assert (train["batch_size"], train["epochs"], train["optimizer"]) == (1, 100, "sgd")
        assert train["momentum"] == 0.0 and train["weight_decay"] == 0.0


def test_ale_learning_rates_are_mvp18_per_image_values() -> None:
    assert {ds: ALE.presets[ds]["train"]["lr"] for ds in ("cub", "sun", "awa2")} == {"cub": 0.3, "sun": 0.1,
                                                                                       "awa2": 0.01}


def test_early_stop_hook_stops_more_than_patience_epochs_after_the_best() -> None:
    hook = EarlyStopHook(10)
    hist = [{"epoch": e} for e in range(1, 15)]
    assert not hook.should_stop(SimpleNamespace(best=None, history=hist))
    assert not hook.should_stop(SimpleNamespace(best={"epoch": 4}, history=hist))  # 14 - 4 = 10: go on
    assert hook.should_stop(SimpleNamespace(best={"epoch": 3}, history=hist))  # 11 > 10: stop
    assert not hook.should_stop(SimpleNamespace(best={"epoch": 3}, history=[]))


def _toy_data(tmp: Path) -> Any:
    """K classes (8 seen, of which 3 play unseen in validation; 4 unseen), linear features."""
    from zsl_bench.data.store import FeatureStore, StoreWriter
    from zsl_bench.data.zsldata import ZSLData

    rng = np.random.default_rng(0)
    att = _task().att
    labels = np.repeat(np.arange(K), 15).astype(np.int64)
    x = (att[labels] @ rng.normal(size=(A, F)) + 0.05 * rng.normal(size=(len(labels), F))).astype(np.float32)
    rows = np.arange(len(labels))
    seen_rows = rows[labels < len(SEEN)]
    pick = np.zeros(len(seen_rows), dtype=bool)
    pick[::5] = True
    test_seen, trainval = seen_rows[pick], seen_rows[~pick]
    vsc, vuc = SEEN[:5], SEEN[5:]
    train, val = trainval[np.isin(labels[trainval], vsc)], trainval[np.isin(labels[trainval], vuc)]
    vs = np.zeros(len(train), dtype=bool)
    vs[::4] = True
    splits = {"trainval": trainval, "test_seen": test_seen, "test_unseen": rows[labels >= len(SEEN)],
              "train": train, "val": val, "val_train": train[~vs], "val_seen": train[vs], "val_unseen": val}
    path = tmp / "TOY" / "features.h5"
    with StoreWriter(path, len(labels), F, None, {"source": "simulated"}) as w:
        w.write(0, pooled=x)
    return ZSLData(name="cub", att=att, labels=labels, seen_classes=SEEN, unseen_classes=UNSEEN, splits=splits,
                   val_seen_classes=vsc, val_unseen_classes=vuc, source="simulated", features=FeatureStore(path),
                   provenance={"generator": "toy/1", "root": str(tmp)})


def test_engine_counts_one_step_per_image_and_stops_early(tmp_path: Path) -> None:
    from zsl_bench.config import resolve
    from zsl_bench.engine import Engine, EvalSplit, Hook

    data = _toy_data(tmp_path)

    class Count(Hook):
        steps: list[int] = []

        def after_epoch(self, t: Any) -> None:
            Count.steps.append(t.step)

    cfg = resolve(ALE, "cub", None, {"train": {"epochs": 40, "device": "cpu", "lr": 1e-9}})
    rows = data.splits["val_train"]
    val = EvalSplit("val", data.splits["val_seen"], data.splits["val_unseen"], data.val_seen_classes,
                    data.val_unseen_classes)
    out = Engine(ALE, cfg, data).train(phase="val", train_rows=rows, seen=data.val_seen_classes,
                                       unseen=data.val_unseen_classes, epochs=40, seed=0, evaluation=val,
                                       progress=False, hooks=[Count()])
    assert set(Count.steps) == {len(rows)}  # one optimizer step per training image, every epoch
    # lr 1e-9 barely moves W, so validation H stops improving early: the phase ends 11 epochs later.
    last = out.history[-1]["epoch"]
    assert last < 40 and last - out.best["epoch"] == ALE.early_stop + 1


# ---------------------------------------------------------------- SAE


def test_sae_fit_stores_row_normalised_w() -> None:
    m = SAE(SAEConfig(lam=0.2), _task())
    x, y = _batch(60)
    m.fit(x, y)
    np.testing.assert_allclose(torch.linalg.norm(m.W, dim=1).numpy(), 1.0, atol=1e-6)


def test_sae_lambda_is_tuned_on_validation_over_the_published_values() -> None:
    assert tuning_grid(SAE) == {"lam": LAMBDAS}
    for lam in (0.6, 0.2, 100.0, 0.32, 0.16):  # mvp18 sae.py:25-29, AWA2 / CUB / SUN, both directions
        assert lam in LAMBDAS
    assert tuning_grid(SAE, {"method": {"lam": 3.0}}) == {}  # a λ the user gives is kept
    assert {ds: SAE.presets[ds]["method"]["lam"] for ds in ("cub", "sun", "awa2")} == {"cub": 100.0, "sun": 0.32,
                                                                                        "awa2": 0.6}


def test_sae_val_run_picks_lambda_from_the_grid_by_validation_h(tmp_path: Path) -> None:
    from zsl_bench.runner import RunSpec, run_one

    data = _toy_data(tmp_path / "d")
    res = run_one(RunSpec("sae", "cub", protocol="val", sim_preset="probe"), out_dir=tmp_path / "o",
                  cli_overrides={"train": {"device": "cpu"}}, progress=False, data=data)
    tune = [h for h in res.history if h["phase"] == "tune"]
    assert sorted(h["tuned.lam"] for h in tune) == sorted(LAMBDAS)
    best = max(tune, key=lambda h: (h["val_h"], -h["candidate"]))
    assert res.selection["tuned.lam"] == best["tuned.lam"] == res.config.method.lam


# ---------------------------------------------------------------- ESZSL


def test_eszsl_default_targets_are_one_hot() -> None:
    task = _task()
    x, y = _batch(50)
    m = ESZSL(ESZSLConfig(alpha=1.0, gamma=1.0), task)
    m.fit(x, y)
    X = x.double().numpy().T
    Y = (y.numpy()[:, None] == SEEN[None, :]).astype(np.float64)  # {0, 1}
    S = task.att[SEEN].astype(np.float64).T
    V = np.linalg.inv(X @ X.T + np.eye(F)) @ X @ Y @ S.T @ np.linalg.inv(S @ S.T + np.eye(A))
    np.testing.assert_allclose(m.V.numpy(), V, rtol=1e-4, atol=1e-6)
    pm = ESZSL(ESZSLConfig(alpha=1.0, gamma=1.0, targets="plus_minus_one"), task)
    pm.fit(x, y)
    V_pm = np.linalg.inv(X @ X.T + np.eye(F)) @ X @ (2 * Y - 1) @ S.T @ np.linalg.inv(S @ S.T + np.eye(A))
    np.testing.assert_allclose(pm.V.numpy(), V_pm, rtol=1e-4, atol=1e-6)
    with pytest.raises(ConfigError, match="method.targets"):
        build(ESZSLConfig, {"targets": "onehot"}, "method")


# ---------------------------------------------------------------- SJE and DeViSE


def _grad(m: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    m.zero_grad()
    m.loss(m(x), y)["loss"].backward()
    return m.W.grad.detach().clone()


def test_devise_steps_on_the_first_violating_class_only() -> None:
    task = _task()
    m = DeViSE(DeViSEConfig(margin=5.0, normalize_input=False), task)  # margin 5: every class violates
    x, y = _batch(1)
    g = _grad(m, x, y)
    k = int(next(c for c in SEEN if c != int(y)))  # the lowest wrong seen id
    att = torch.as_tensor(task.att)
    expected = x[0][:, None] * (att[k] - att[int(y)])[None, :]  # ∇ of margin + s_k − s_y
    torch.testing.assert_close(g, expected)


@pytest.mark.parametrize("cls,cfg_cls", [(SJE, SJEConfig), (DeViSE, DeViSEConfig)])
def test_std_input_is_mvp18s_standard_scaler_fitted_on_the_training_features(cls: Any, cfg_cls: Any) -> None:
    x, _ = _batch(30)
    x[:, 3] = 2.5  # a constant dimension: sklearn keeps its scale at 1
    m = cls(cfg_cls(**STD), _task())
    assert m.wants_training_features and not cls(cfg_cls(), _task()).wants_training_features
    m.observe_training_features(x)
    z = m.prepare_input(x)
    mean, std = x.double().mean(0), x.double().std(0, unbiased=False)
    std[3] = 1.0
    torch.testing.assert_close(z, ((x.double() - mean) / std).float())
    assert "feat_mean" in m.state_dict()  # saved with the weights: a checkpoint or best state keeps it
    torch.testing.assert_close(m.embed(x[:4]), z[:4] @ m.W)  # scoring sees what training saw
    with pytest.raises(ConfigError, match="method.standardize_input.*normalize_input"):
        cfg_cls(standardize_input=True)  # L2 is the default: mvp18's -norm is one of std, L2, None


def test_presets_follow_mvp18s_norm_per_dataset() -> None:
    def norm(cls: Any, ds: str) -> str:
        c = cls.config_cls(**cls.presets[ds]["method"])
        return "std" if c.standardize_input else "L2" if c.normalize_input else "None"

    # SJE/sje.py:24-28, DeViSE/devise.py:22-28 (FLO: no published setting).
    assert {ds: norm(SJE, ds) for ds in ("cub", "sun", "awa2")} == {"cub": "std", "sun": "std", "awa2": "L2"}
    assert {ds: norm(DeViSE, ds) for ds in ("cub", "sun", "awa2")} == {"cub": "L2", "sun": "None", "awa2": "std"}
    assert DeViSE.presets["awa2"]["method"]["margin"] == 150.0 and DeViSE.presets["awa2"]["train"]["lr"] == 0.001


def test_engine_fits_the_scaler_on_the_phases_training_rows(tmp_path: Path) -> None:
    from zsl_bench.config import resolve
    from zsl_bench.engine import Engine

    data = _toy_data(tmp_path)
    cfg = resolve(SJE, "cub", None, {"train": {"epochs": 2, "device": "cpu"}})
    assert cfg.method.standardize_input  # CUB's preset
    rows = data.splits["val_train"]
    out = Engine(SJE, cfg, data).train(phase="val", train_rows=rows, seen=data.val_seen_classes,
                                       unseen=data.val_unseen_classes, epochs=2, seed=0, progress=False)
    x = torch.as_tensor(data.features.read_pooled(np.sort(rows)))
    torch.testing.assert_close(out.model.feat_mean, x.double().mean(0).float())
    torch.testing.assert_close(out.model.feat_std, x.double().std(0, unbiased=False).float())


def test_sje_picks_the_violator_on_the_standardised_projection() -> None:
    task = _task()
    att = torch.as_tensor(task.att)
    torch.manual_seed(0)  # W's initial draw: the same whichever tests ran before
    m = SJE(SJEConfig(margin=0.5), task)
    x, y = _batch(64, seed=3)
    differs = 0
    for i in range(len(y)):
        with torch.no_grad():
            z = torch.nn.functional.normalize(x[i:i + 1], dim=1) @ m.W  # [1, A]
            zs = (z - z.mean()) / z.std(unbiased=False)
            raw, std = z @ att.T, zs @ att.T
        yi = int(y[i])
        wrong = [c for c in SEEN if c != yi]
        k = max(wrong, key=lambda c: float(std[0, c]))
        g = _grad(m, x[i:i + 1], y[i:i + 1])
        if float(0.5 + std[0, k] - std[0, yi]) > 0:
            xn = torch.nn.functional.normalize(x[i:i + 1], dim=1)[0]
            torch.testing.assert_close(g, xn[:, None] * (att[k] - att[yi])[None, :])
        else:
            assert float(g.abs().max()) == 0.0
        differs += int(k != max(wrong, key=lambda c: float(raw[0, c])))
    assert differs > 0  # the standardisation changes the pick on some of these images


# ---------------------------------------------------------------- LATEM


def test_latem_k_is_tuned_on_validation() -> None:
    assert tuning_grid(LATEM) == {"n_latent": (2, 4, 6, 8, 10)}


def test_latem_hinge_uses_one_sampled_wrong_class_per_image() -> None:
    task = _task()
    m = LATEM(LATEMConfig(n_latent=3, margin=10.0), task)  # margin 10: every wrong class violates
    x, y = _batch(1)
    torch.manual_seed(5)
    out = m(x)
    terms = m.loss(out, y)
    s = out["logits"][0].detach()
    cand = [float(10.0 + s[c] - s[int(y)]) for c in SEEN if c != int(y)]
    loss = float(terms["loss"].detach())
    assert any(abs(loss - c) < 1e-5 for c in cand)  # one class, not their mean
    assert abs(loss - float(np.mean(cand))) > 1e-4


def test_latem_training_reduces_its_loss() -> None:
    # The under-training of issue 12: per-image SGD at the preset lr must move the ranking loss.
    task = _task()
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    proto = rng.random((K, F)).astype(np.float32)
    y = torch.as_tensor(rng.choice(SEEN, 200))
    x = torch.as_tensor(proto[y.numpy()] + 0.05 * rng.standard_normal((200, F)).astype(np.float32))
    m = LATEM(LATEMConfig(n_latent=2), task)
    opt = torch.optim.SGD(m.parameters(), lr=LATEM.presets["cub"]["train"]["lr"])
    losses = []
    for _ in range(5):
        tot = 0.0
        for i in torch.randperm(200):
            opt.zero_grad()
            loss = m.loss(m(x[i:i + 1]), y[i:i + 1])["loss"]
            loss.backward()
            opt.step()
            tot += float(loss)
        losses.append(tot / 200)
    assert losses[-1] < 0.6 * losses[0], losses


# ---------------------------------------------------------------- the per-image fast path


STD = {"normalize_input": False, "standardize_input": True}


@pytest.mark.parametrize("cls,cfg", [(ALE, ALEConfig()), (SJE, SJEConfig(margin=0.5)),
                                     (SJE, SJEConfig(margin=0.5, **STD)), (DeViSE, DeViSEConfig(margin=0.5)),
                                     (DeViSE, DeViSEConfig(margin=20.0, **STD)), (LATEM, LATEMConfig(n_latent=3))])
def test_per_image_fast_path_equals_sgd_with_batch_one(cls: Any, cfg: Any) -> None:
    """``sgd_per_image`` takes the steps torch SGD (batch 1) takes on the method's own loss."""
    assert cls.per_image_sgd
    task = _task()
    x, y = _batch(40, seed=4)
    x = x * 3.0
    torch.manual_seed(0)
    generic = cls(cfg, task)
    if generic.wants_training_features:
        generic.observe_training_features(x)
    fast = cls(cfg, task)
    fast.load_state_dict(generic.state_dict())
    w0 = generic.W.detach().clone()
    lr = 0.5
    opt = torch.optim.SGD(generic.parameters(), lr=lr)
    torch.manual_seed(1)
    losses = []
    for i in range(len(y)):
        opt.zero_grad()
        loss = generic.loss(generic(x[i:i + 1]), y[i:i + 1])["loss"]
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    torch.manual_seed(1)
    with torch.no_grad():
        terms = fast.sgd_per_image(x, y, lr)
    assert float((fast.W.detach() - w0).abs().max()) > 1e-3  # the steps were taken
    torch.testing.assert_close(fast.W.detach(), generic.W.detach(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(terms["loss"].numpy(), losses, rtol=1e-4, atol=1e-5)
