"""TransZero and DAZLE against their official settings (no official code needed; tiny shapes).

What the equivalence checks (benchmarks/equivalence/{transzero,dazle}.py) compare with the official
code is pinned here in the parts that need no checkout: the per-dataset presets (optimizer, sampler,
batch, AWA2 clip), the encoder's dropout rates and double LayerNorm, the clipped semantics, and
losses restricted to the phase's classes under protocol ``val``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import methods  # noqa: F401  (registers the built-in methods)
from methods.dazle import DAZLE
from methods.transzero import GeometryEncoderLayer, TransZero
from zsl_bench.config import build, resolve
from zsl_bench.contract import TaskInfo
from zsl_bench.engine import build_optimizer, epoch_batches
from zsl_bench.errors import ConfigError

METHODS = {"dazle": DAZLE, "transzero": TransZero}


def _task(seen: np.ndarray, unseen: np.ndarray, K: int = 10, A: int = 6, seed: int = 0) -> TaskInfo:
    rng = np.random.default_rng(seed)
    att = rng.uniform(-0.3, 1.0, size=(K, A)).astype(np.float32)  # some negative entries
    att /= np.linalg.norm(att, axis=1, keepdims=True)
    return TaskInfo(dataset="awa2", att=att, seen=seen, unseen=unseen, feature_dim=8, regions=4,
                    w2v=rng.standard_normal((A, 8)).astype(np.float32))


def _build(name: str, task: TaskInfo, **overrides: object):
    cls = METHODS[name]
    torch.manual_seed(0)
    return cls(build(cls.config_cls, {**cls.tiny, **overrides}, "method"), task)


@pytest.mark.parametrize("dataset, optimizer, momentum, sampler, batch", [
    ("cub", torch.optim.Adam, None, "uniform", 50),
    ("sun", torch.optim.SGD, 0.9, "class_balanced", 50),  # train_sun.py, dataset.py SUNDataLoader
    ("awa2", torch.optim.SGD, 0.0, "class_balanced", 40),  # train_awa2.py, AWA2DataLoader
])
def test_transzero_presets_follow_official_scripts(dataset, optimizer, momentum, sampler, batch) -> None:
    cfg = resolve(TransZero, dataset)
    assert (cfg.train.sampler, cfg.train.batch_size, cfg.train.lr, cfg.train.weight_decay) == \
        (sampler, batch, 1e-4, 1e-4)
    opt = build_optimizer([torch.nn.Parameter(torch.zeros(1))], cfg.train)
    assert type(opt) is optimizer
    if momentum is not None:
        assert opt.defaults["momentum"] == momentum
    assert cfg.method.attention_dropout == 0.1
    assert cfg.method.clip_negative_att is (dataset == "awa2")


def test_dazle_awa2_preset_clips_and_uses_40_image_batches() -> None:
    cfg = resolve(DAZLE, "awa2")
    assert cfg.method.clip_negative_att and cfg.train.batch_size == 40 and cfg.train.sampler == "class_balanced"
    assert not resolve(DAZLE, "cub").method.clip_negative_att


@pytest.mark.parametrize("name", ["dazle", "transzero"])
def test_awa2_batches_hold_distinct_classes(name: str) -> None:
    """The official balanced loader draws min(batch, #seen) distinct classes per step: on AWA2's
    40 seen classes, 40 images of 40 classes (no class twice in a batch)."""
    cfg = resolve(METHODS[name], "awa2").train
    labels = np.repeat(np.arange(40), 7)
    batches = epoch_batches(cfg.sampler, labels, cfg.batch_size, np.random.default_rng(0))
    assert all(len(b) == 40 and len(set(labels[b].tolist())) == 40 for b in batches)


def test_transzero_encoder_dropout_rates() -> None:
    task = _task(np.arange(7), np.arange(7, 10))
    for dropout in (0.3, 0.5):
        m = _build("transzero", task, dropout=dropout)
        layer = m.encoder[0]
        assert (layer.p_att, layer.p) == (0.1, dropout)  # official: attention 0.1, the rest tf_dropout
    with pytest.raises(ConfigError, match="method.attention_dropout"):
        _build("transzero", task, attention_dropout=1.0)


def test_transzero_attention_dropout_is_applied_to_the_attention_weights() -> None:
    torch.manual_seed(0)
    layer = GeometryEncoderLayer(8, 16, dropout=0.0, attention_dropout=0.5).train()
    h, w = torch.randn(2, 4, 8), torch.zeros(4, 4)
    assert not torch.equal(layer(h, w), layer(h, w))  # only the attention weights are dropped
    layer.p_att = 0.0
    assert torch.equal(layer(h, w), layer(h, w))


def test_transzero_encoder_layer_norms_twice_as_official() -> None:
    """``LN_c(a + FF(a))`` with ``a = LN_b(h + LN_a(h + attn(h)))`` (official model.py EncoderLayer with
    MultiHeadGeometryAttention and PositionWiseFeedForward), written out here by hand."""
    torch.manual_seed(0)
    layer = GeometryEncoderLayer(8, 16, dropout=0.0, attention_dropout=0.0).eval()
    with torch.no_grad():  # LayerNorm affine parameters away from the identity, distinct per norm
        for norm in (layer.norm1, layer.norm1_outer, layer.norm2):
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.uniform_(-0.5, 0.5)
    h, w = torch.randn(3, 4, 8), torch.rand(4, 4)
    att = (layer.q(h) @ layer.k(h).transpose(1, 2) / 8**0.5 - w).softmax(-1)
    inner = layer.norm1(h + layer.o(att @ layer.v(h)))
    a = layer.norm1_outer(h + inner)
    expected = layer.norm2(a + layer.ff[3](F.relu(layer.ff[0](a))))
    torch.testing.assert_close(layer(h, w), expected)


@pytest.mark.parametrize("name", ["dazle", "transzero"])
def test_clip_negative_att(name: str) -> None:
    task = _task(np.arange(7), np.arange(7, 10))
    assert (task.att < 0).any()
    clipped = _build(name, task, clip_negative_att=True).att
    assert (clipped >= 0).all()
    torch.testing.assert_close(clipped, F.normalize(torch.from_numpy(task.att).clamp_min(0), dim=1))
    torch.testing.assert_close(_build(name, task).att, F.normalize(torch.from_numpy(task.att), dim=1))


@pytest.mark.parametrize("name", ["dazle", "transzero"])
def test_val_phase_losses_use_only_the_phase_classes(name: str) -> None:
    """Protocol val: seen 0-4, validation classes 5-6, test classes 7-9 outside the phase. CE and
    self-calibration equal the same terms over the 7 phase classes, and no gradient reaches a
    test-class logit."""
    seen, unseen = np.arange(5), np.array([5, 6])
    m = _build(name, _task(seen, unseen))
    x, y = torch.rand(6, 8, 4), torch.tensor([0, 1, 2, 3, 4, 0])
    out = m(x)
    logits = out["logits"].detach().requires_grad_(True)
    terms = m.loss({**out, "logits": logits}, y)
    phase = logits[:, :7]
    bias = torch.tensor([-1.0] * 5 + [1.0] * 2)
    torch.testing.assert_close(terms["ce"], F.cross_entropy(phase - bias, y))
    torch.testing.assert_close(terms["self_cal"], -torch.log(phase.softmax(1)[:, 5:].sum(1).mean()))
    (g,) = torch.autograd.grad(terms["ce"] + terms["self_cal"], logits)
    assert g[:, 7:].abs().max() == 0 and g[:, :7].abs().max() > 0


@pytest.mark.parametrize("name", ["dazle", "transzero"])
def test_full_phase_losses_unchanged(name: str) -> None:
    """A phase holding every class (test-oracle, the retrain phase) computes the terms over all K."""
    seen, unseen = np.arange(7), np.arange(7, 10)
    m = _build(name, _task(seen, unseen))
    x, y = torch.rand(5, 8, 4), torch.tensor([0, 3, 6, 2, 1])
    out = m(x)
    terms = m.loss(out, y)
    torch.testing.assert_close(terms["ce"], F.cross_entropy(out["logits"] - m.vec_bias, y), rtol=0, atol=0)
    mass = out["logits"].softmax(1)[:, 7:].sum(1).mean()
    torch.testing.assert_close(terms["self_cal"], -torch.log(mass), rtol=0, atol=0)
