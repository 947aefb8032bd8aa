"""Contract tests for every registered method (timm-style: a new method gets them for free).

Each method is built from its ``tiny`` config on a tiny synthetic task, trained a few steps by the
engine (``fit`` for closed-form / self-scheduled methods), and must give finite [N, K] scores that are
identical for the same seed, with a nonzero gradient reaching every trainable parameter.
The baseline zoo must also beat chance by a margin on a small task with learnable structure.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch

import methods  # noqa: F401  (registers the built-in methods)
from methods.fclswgan import GenerativeZSL
from zsl_bench.config import EvalConfig, ResolvedConfig, TrainConfig, build, resolve
from zsl_bench.contract import TaskInfo, ZSLMethod
from zsl_bench.data.datasets import dataset_names
from zsl_bench.engine import Engine, Hook, Trainer
from zsl_bench.errors import ConfigError
from zsl_bench.registry import METHODS

# Every registered method except test-only ones that other test modules register on import.
ALL = [n for n, c in METHODS.items() if not c.__module__.split(".")[-1].startswith(("test_", "toys"))]  # no test toys
ZOO = ["devise", "sje", "sae", "latem", "fclswgan", "tfvaegan", "dazle", "transzero"]
DATASETS = set(dataset_names())


def make_task(*, K: int, A: int, n_unseen: int, F: int, R: int, seed: int,
              w2v: bool = True) -> TaskInfo:
    rng = np.random.default_rng(seed)
    # Binary-ish attributes so classes are distinct combinations of shared attributes.
    att = (rng.random((K, A)) < 0.5).astype(np.float32) + 0.05 * rng.random((K, A)).astype(np.float32)
    att /= np.linalg.norm(att, axis=1, keepdims=True)
    return TaskInfo(dataset="cub", att=att, seen=np.arange(K - n_unseen), unseen=np.arange(K - n_unseen, K),
                    feature_dim=F, regions=R,
                    w2v=rng.standard_normal((A, 12)).astype(np.float32) if w2v else None)


def make_data(task: TaskInfo, cls: type[ZSLMethod], classes: np.ndarray, n_per_class: int,
              seed: int, noise: float = 0.3) -> tuple[torch.Tensor, torch.Tensor]:
    """Features = class semantics (with instance noise) projected by fixed prototypes + noise.

    Region input puts attribute ``i``'s evidence in region ``i mod R``; pooled input is the
    region sum. Everything is non-negative, like post-ReLU CNN features.
    """
    rng = np.random.default_rng(1000)  # the prototypes are the task's, whatever the split
    A, F, R = task.num_attributes, task.feature_dim, task.regions or 1
    protos = 2.0 * (rng.random((A, F)) < 0.25).astype(np.float32)  # [A, F] sparse, distinct
    rng = np.random.default_rng(seed)
    y = np.repeat(classes, n_per_class)
    a = task.att[y] * (1 + 0.2 * rng.standard_normal((len(y), A))).astype(np.float32)  # [N, A]
    region_of = np.arange(A) % R
    x = np.zeros((len(y), F, R), dtype=np.float32)
    for r in range(R):  # loop over regions, not samples
        x[:, :, r] = a[:, region_of == r] @ protos[region_of == r]
    x = np.maximum(x + noise * rng.standard_normal(x.shape).astype(np.float32), 0)
    xt = torch.from_numpy(x if cls.input == "regions" else x.sum(2))
    return xt, torch.from_numpy(y).long()


def build_method(cls: type[ZSLMethod], task: TaskInfo, overrides: dict[str, Any] | None = None,
                 seed: int = 0) -> ZSLMethod:
    torch.manual_seed(seed)
    cfg = build(cls.config_cls, {**cls.tiny, **(overrides or {})}, "method")
    return cls(cfg, task)


class GradSum(Hook):
    """Sums |grad| of every trainable parameter after each optimizer step."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}

    def before_train(self, t: Trainer) -> None:
        self.sums = {n: torch.zeros(()) for n, p in t.model.named_parameters() if p.requires_grad}

    def after_step(self, t: Trainer) -> None:
        for n, p in t.model.named_parameters():
            if n in self.sums and p.grad is not None:
                self.sums[n] += p.grad.abs().sum()


def train(cls: type[ZSLMethod], task: TaskInfo, x: torch.Tensor, y: torch.Tensor, *, steps: int, lr: float,
          overrides: dict[str, Any] | None = None, batch_size: int = 32,
          seed: int = 0) -> tuple[ZSLMethod, dict[str, torch.Tensor]]:
    """Train through the engine: ``fit`` (closed-form) or Adam epochs of about ``steps`` steps in all.

    Returns the trained model and the summed |grad| per trainable parameter.
    """
    epochs = max(1, math.ceil(steps / math.ceil(len(y) / batch_size)))
    cfg = ResolvedConfig(method=build(cls.config_cls, {**cls.tiny, **(overrides or {})}, "method"),
                         train=TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=0.0,
                                           device="cpu"), eval=EvalConfig())
    engine = Engine.from_arrays(cls, cfg, x, y, task.att, task.seen, task.unseen, name=task.dataset, w2v=task.w2v)
    grads = GradSum()
    out = engine.train(phase="test", train_rows=np.arange(len(y)), seen=task.seen, unseen=task.unseen,
                       epochs=epochs, seed=seed, progress=False, hooks=[grads])
    out.model.eval()
    return out.model, grads.sums


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Any:
    """Tiny models run fastest on one thread; more threads only contend on a shared 2-core box."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny_task() -> TaskInfo:
    return make_task(K=8, A=6, n_unseen=2, F=16, R=4, seed=0)


@pytest.mark.parametrize("name", ALL)
def test_declares_contract(name: str) -> None:
    cls = METHODS.get(name)
    assert issubclass(cls, ZSLMethod)
    assert cls.family in ("embedding", "generative", "attention")
    assert cls.input in ("pooled", "regions")
    assert cls.paper, "paper must be a short citation"
    assert set(cls.presets) <= DATASETS
    for ds in cls.presets:  # every preset resolves to a valid config
        resolve(cls, ds)
    with pytest.raises(ConfigError, match="method.no_such_field"):
        build(cls.config_cls, {"no_such_field": 1}, "method")


@pytest.mark.parametrize("name", ALL)
def test_trains_scores_and_gradients(name: str, tiny_task: TaskInfo) -> None:
    cls = METHODS.get(name)
    x, y = make_data(tiny_task, cls, tiny_task.seen, 8, seed=1)
    x_test, _ = make_data(tiny_task, cls, np.arange(tiny_task.num_classes), 2, seed=2)
    m = build_method(cls, tiny_task)
    if not m.fits_closed_form:
        out = m(x[:5])
        assert out["logits"].shape == (5, tiny_task.num_classes)
        terms = m.loss(out, y[:5])
        assert "loss" in terms and terms["loss"].ndim == 0
    m, grads = train(cls, tiny_task, x, y, steps=6, lr=1e-3)
    s = m.scores(x_test)
    assert s.shape == (x_test.shape[0], tiny_task.num_classes)
    assert torch.isfinite(s).all()
    trainable = [n for n, p in m.named_parameters() if p.requires_grad]
    if m.fits_closed_form:
        # Gradient-trained parts of a fit() (generators, classifiers) report their gradients.
        reported = m.fit_grad_norms
        missing = [n for n in trainable if reported.get(n, 0.0) <= 0.0]
    else:
        missing = [n for n in trainable if grads[n] <= 0]
    assert not missing, f"{name}: no gradient reached {missing}"


@pytest.mark.parametrize("name", ALL)
def test_deterministic_per_seed(name: str, tiny_task: TaskInfo) -> None:
    cls = METHODS.get(name)
    x, y = make_data(tiny_task, cls, tiny_task.seen, 6, seed=3)
    runs = []
    for _ in range(2):
        m, _ = train(cls, tiny_task, x, y, steps=3, lr=1e-3, seed=7)
        runs.append(m.scores(x))
    assert torch.equal(runs[0], runs[1])


def test_generative_fit_trains_generator_and_classifier(tiny_task: TaskInfo) -> None:
    for name in ("fclswgan", "tfvaegan"):
        cls = METHODS.get(name)
        x, y = make_data(tiny_task, cls, tiny_task.seen, 8, seed=4)
        m = build_method(cls, tiny_task)
        before = {n: p.detach().clone() for n, p in m.named_parameters()}
        m.fit(x, y)
        assert isinstance(m, GenerativeZSL)
        prefixes = {n.split(".")[0] for n, v in m.fit_grad_norms.items() if v > 0}
        assert {"generator", "classifier", "critic"} <= prefixes
        changed = {n.split(".")[0] for n, p in m.named_parameters() if not torch.equal(p, before[n])}
        assert {"generator", "classifier"} <= changed


# Training for the chance test: Adam (learning rate, steps) for epoch-trained methods; fit()
# methods run their own schedule from these config overrides (a longer tiny schedule; the
# generators need a well-trained guide classifier and a low noise dimension to learn in seconds).
CHANCE_TRAIN = {"devise": (3e-2, 600), "sje": (1e-2, 600), "latem": (1e-2, 1500),
                "dazle": (1e-2, 150), "transzero": (3e-3, 150)}
CHANCE_OVERRIDES: dict[str, dict[str, Any]] = {
    "fclswgan": {"gan_epochs": 200, "n_synth": 40, "clf_epochs": 20, "pretrain_epochs": 100,
                 "cls_weight": 1.0, "batch_size": 32, "n_z": 4, "hidden_g": 64, "hidden_d": 64},
    "tfvaegan": {"gan_epochs": 100, "n_synth": 40, "clf_epochs": 20, "batch_size": 32, "n_z": 4,
                 "hidden": 64},
    "transzero": {"dropout": 0.0, "dim_com": 16, "dim_ff": 32},
}


@pytest.mark.parametrize("name", ZOO)
def test_beats_chance_on_learnable_task(name: str) -> None:
    """ZSL accuracy (argmax over unseen classes) at least twice chance on held-out classes."""
    cls = METHODS.get(name)
    task = make_task(K=14, A=16, n_unseen=4, F=32, R=4, seed=11)
    x, y = make_data(task, cls, task.seen, 20, seed=12)
    x_te, y_te = make_data(task, cls, task.unseen, 25, seed=13)
    lr, steps = CHANCE_TRAIN.get(name, (1e-3, 0))
    # Batches of 25 split the 200 training rows evenly: no ragged last batch each epoch.
    m, _ = train(cls, task, x, y, steps=steps, lr=lr, overrides=CHANCE_OVERRIDES.get(name), batch_size=25)
    s = m.scores(x_te)[:, torch.as_tensor(task.unseen)]
    acc = (torch.as_tensor(task.unseen)[s.argmax(1)] == y_te).float().mean().item()
    chance = 1 / len(task.unseen)
    assert acc >= 2 * chance, f"{name}: ZSL acc {acc:.2f} vs chance {chance:.2f}"


def test_critic_terms_equal_separate_critic_calls_and_gradient_penalty():
    from methods.fclswgan import critic_terms, wgan_critic

    torch.manual_seed(0)
    critic = wgan_critic(7, 16)
    real, fake, cond = torch.randn(5, 4), torch.randn(5, 4), torch.randn(5, 3)
    torch.manual_seed(1)
    wdist, gp = critic_terms(critic, real, fake, cond)
    torch.manual_seed(1)  # the same interpolation weights, drawn first
    eps = torch.rand(5, 1)
    mix = (eps * real + (1 - eps) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(torch.cat([mix, cond], 1)).sum(), mix, create_graph=True)
    torch.testing.assert_close(gp, ((grad.norm(2, dim=1) - 1) ** 2).mean())
    torch.testing.assert_close(wdist, critic(torch.cat([real, cond], 1)).mean()
                               - critic(torch.cat([fake, cond], 1)).mean())
