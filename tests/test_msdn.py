"""MSDN and MSDN++: equations against plain einsums, gradients, MSDN++ ≡ MSDN, interventions, config."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import methods  # noqa: F401  (registers the methods)
from methods.msdn import MSDN, MSDNConfig
from methods.msdnpp import INTERVENTIONS, MSDNPP, MSDNPPConfig
from zsl_bench.config import EvalConfig, ResolvedConfig, TrainConfig, build, resolve
from zsl_bench.contract import TaskInfo
from zsl_bench.errors import ConfigError, DataError
from zsl_bench.registry import METHODS

K, SEEN, A, FDIM, R, D, B = 7, 4, 5, 8, 9, 4, 6


def make_task(w2v: bool = True, seen: np.ndarray | None = None, unseen: np.ndarray | None = None) -> TaskInfo:
    rng = np.random.default_rng(0)
    att = rng.normal(size=(K, A)).astype(np.float32)  # negatives present: clipping matters
    return TaskInfo(dataset="cub", att=att,
                    seen=np.arange(SEEN) if seen is None else seen,
                    unseen=np.arange(SEEN, K) if unseen is None else unseen,
                    feature_dim=FDIM, regions=R,
                    w2v=rng.normal(size=(A, D)).astype(np.float32) if w2v else None)


def make_model(cls=MSDN, cfg=None, task=None, seed: int = 0, scramble: bool = True):
    cfg = cfg or cls.config_cls()
    torch.manual_seed(seed)
    model = cls(cfg, task or make_task())
    if scramble:  # W2, W11, W21 start at 0 (official); move them so every branch is exercised
        with torch.no_grad():
            for w in (model.W2, model.W11, model.W21):
                w.normal_(0, 0.5)
    return model


def batch(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(B, FDIM, R, generator=g), torch.randint(0, SEEN, (B,), generator=g)


def reference(model: MSDN, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    """METHOD.md §1 written the way the official core/MSDN.py computes it (separate einsums)."""
    cfg, task = model.cfg, model.task
    att = torch.tensor(task.att)
    if cfg.clip_negative_att:
        att = att.clamp_min(0)
    att = F.normalize(att)
    v = F.normalize(model.V) if cfg.normalize_v else model.V
    fs = F.normalize(x, dim=1)
    vec_bias = torch.ones(1, K) * cfg.bias
    vec_bias[:, task.seen] *= -1
    s = torch.einsum("iv,vf,bfr->bir", v, model.W1, fs)
    alpha = torch.einsum("iv,vf,bfr->bir", v, model.W2, fs).softmax(dim=-1)
    psi = torch.einsum("bir,bir->bi", alpha, s)
    s1 = torch.einsum("ki,bi->bik", att, psi).sum(1) + vec_bias
    t = torch.einsum("bfr,fv,iv->bri", fs, model.W11, v)
    beta = torch.einsum("iv,vf,bfr->bir", v, model.W21, fs).softmax(dim=1)
    omega = torch.einsum("bir,bri->bi", beta, t)
    s2 = torch.einsum("ki,bi->bik", att, omega).sum(1) + vec_bias
    labels = torch.eye(K)[y]

    def ce(sp):
        return torch.mean(-torch.einsum("bk,bk->b", F.log_softmax(sp - vec_bias, dim=1), labels))

    def cal(sp):
        return -torch.log(torch.mean(F.softmax(sp, dim=-1)[:, task.unseen].sum(1)))

    wt = (s1 - s2).pow(2)
    wt = wt / wt.sum(1).sqrt().unsqueeze(1)
    l2 = (wt * (s1 - s2).abs()).sum() / B
    p, q = F.softmax(s1, dim=1), F.softmax(s2, dim=1)
    log_m = ((p + q) / 2).log()
    kl = torch.nn.KLDivLoss(reduction="batchmean")
    js = (kl(log_m, q) + kl(log_m, p)) / 2
    attr_reg = (psi - att[y]).pow(2).sum(1).mean()
    terms = {"s1": s1, "s2": s2, "psi": psi, "omega": omega, "alpha": alpha, "beta": beta,
             "ce": ce(s1) + ce(s2), "self_cal": cal(s1) + cal(s2), "distill_l2": l2, "distill_js": js,
             "attr_reg": attr_reg, "logits": cfg.w1 * s1 + cfg.w2 * s2}
    terms["loss"] = (terms["ce"] + cfg.lambda_cal * terms["self_cal"] + cfg.w_distill * (l2 + js)
                     + cfg.lambda_ar * attr_reg)
    return terms


@pytest.mark.parametrize("cfg", [
    MSDNConfig(),
    MSDNConfig(lambda_cal=0.5, w_distill=0.3, w1=0.6, w2=0.4, normalize_v=True, clip_negative_att=True,
               lambda_ar=0.2),
    MSDNConfig(normalize_f=True, bias=0.0, w_distill=1.0),
], ids=["cub", "awa2-like+attr_reg", "no-bias"])
def test_forward_and_losses_match_equations(cfg: MSDNConfig) -> None:
    model = make_model(cfg=cfg)
    x, y = batch()
    out, ref = model(x), reference(model, x, y)
    terms = model.loss(out, y)
    for key in ("s1", "s2", "psi", "omega", "logits"):
        torch.testing.assert_close(out[key], ref[key], atol=1e-5, rtol=1e-5, msg=key)
    maps = model.attention_maps(x)
    torch.testing.assert_close(maps["avca"], ref["alpha"], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(maps["vaca"], ref["beta"], atol=1e-6, rtol=1e-5)
    for key in ("ce", "self_cal", "distill_l2", "distill_js", "loss"):
        torch.testing.assert_close(terms[key], ref[key], atol=1e-5, rtol=1e-5, msg=key)
    expect_ar = ref["attr_reg"] if cfg.lambda_ar > 0 else torch.tensor(0.0)
    torch.testing.assert_close(terms["attr_reg"], expect_ar, atol=1e-5, rtol=1e-5)
    assert terms["effect_class"].item() == 0.0 and terms["effect_attr"].item() == 0.0
    torch.testing.assert_close(model.scores(x), ref["logits"], atol=1e-5, rtol=1e-5)
    # the official margin: +bias unseen, -bias seen
    assert model.margin[:SEEN].eq(-cfg.bias).all() and model.margin[SEEN:].eq(cfg.bias).all()


def test_losses_restricted_to_phase_classes() -> None:
    """Classes outside a phase (e.g. test classes during validation) never enter the softmaxes."""
    task = make_task(seen=np.array([0, 1, 2]), unseen=np.array([4, 5]))
    model = make_model(task=task)
    x, y = batch()
    y = y % 3
    out = model(x)
    terms = model.loss(out, y)
    phase = torch.tensor([0, 1, 2, 4, 5])
    s1 = out["s1"][:, phase]
    yp = y  # positions of 0, 1, 2 among the phase classes
    margin = torch.tensor([-1.0, -1.0, -1.0, 1.0, 1.0])
    ce1 = F.cross_entropy(s1 - margin, yp)
    cal1 = -torch.log(F.softmax(s1, 1)[:, 3:].sum(1).mean())
    s2 = out["s2"][:, phase]
    ce2 = F.cross_entropy(s2 - margin, yp)
    cal2 = -torch.log(F.softmax(s2, 1)[:, 3:].sum(1).mean())
    torch.testing.assert_close(terms["ce"], ce1 + ce2)
    torch.testing.assert_close(terms["self_cal"], cal1 + cal2)
    assert model.margin[3].item() == 0.0  # out of phase: no margin
    with pytest.raises(DataError, match="outside this phase"):
        model.loss(out, torch.full((B,), 3))


def test_every_parameter_learns() -> None:
    """Official init (W2, W11, W21 = 0): after one RMSprop step every parameter has a gradient."""
    from zsl_bench.engine import Engine

    x, y = batch()
    task = make_task()
    train = TrainConfig(epochs=2, batch_size=B, optimizer="rmsprop", lr=1e-2, weight_decay=1e-4, momentum=0.9,
                        device="cpu")  # one batch per epoch: the second step follows the first
    engine = Engine.from_arrays(MSDN, ResolvedConfig(method=MSDNConfig(), train=train, eval=EvalConfig()), x, y,
                                task.att, task.seen, task.unseen, name=task.dataset, w2v=task.w2v)
    model = engine.train(phase="test", train_rows=np.arange(B), seen=task.seen, unseen=task.unseen, epochs=2,
                         seed=0, progress=False).model  # its gradients are the last step's
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    assert names == {"V", "W1", "W2", "W11", "W21"}  # no dead W3/W31
    for n, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, n
        assert torch.isfinite(p.grad).all(), n


def test_flo_learns_v_from_noise_and_frozen_v() -> None:
    torch.manual_seed(0)
    model = MSDN(MSDNConfig(v_dim=3), make_task(w2v=False))
    assert model.V.shape == (A, 3) and model.V.requires_grad
    assert model.V.std() > 0.3  # N(0, 1), not row-normalised word vectors
    frozen = MSDN(MSDNConfig(trainable_v=False), make_task())
    assert not frozen.V.requires_grad
    torch.testing.assert_close(frozen.V.norm(dim=1), torch.ones(A))


def test_bad_input_shape() -> None:
    model = make_model()
    with pytest.raises(DataError, match=r"expected region features \[B, F=8, R\]"):
        model(torch.rand(2, FDIM + 1, R))
    with pytest.raises(ConfigError, match="region features"):
        MSDN(MSDNConfig(), replace(make_task(), regions=None))


# ------------------------------------------------------------------ MSDN++


def test_msdnpp_none_is_msdn_exactly() -> None:
    x, y = batch()
    a = make_model(MSDN, MSDNConfig(), seed=3, scramble=False)
    b = make_model(MSDNPP, MSDNPPConfig(intervention="none"), seed=3, scramble=False)
    for (na, pa), (nb, pb) in zip(a.named_parameters(), b.named_parameters()):
        assert na == nb and torch.equal(pa, pb)
    oa, ob = a(x), b(x)
    la, lb = a.loss(oa, y), b.loss(ob, y)
    assert torch.equal(oa["logits"], ob["logits"])
    assert set(la) == set(lb)
    for k in la:
        assert torch.equal(la[k], lb[k]), k
    la["loss"].backward()
    lb["loss"].backward()
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa.grad, pb.grad)
    assert torch.equal(a.scores(x), b.scores(x))


@pytest.mark.parametrize("apply_to", ["avca", "vaca"])
def test_counterfactual_maps_are_distributions(apply_to: str) -> None:
    model = make_model(MSDNPP)
    x, _ = batch()
    net = model._subnets(x)
    att, logit, dim = (net["alpha"], net["a_logit"], 1) if apply_to == "avca" else (net["beta"], net["b_logit"], 2)
    for kind in INTERVENTIONS[1:]:
        model_k = make_model(MSDNPP, MSDNPPConfig(intervention=kind))
        m = model_k._counterfactual_map(att, logit, dim)
        assert m.shape == att.shape and not m.requires_grad
        torch.testing.assert_close(m.sum(dim), torch.ones(m.sum(dim).shape), msg=kind)
        assert not torch.equal(m, att), kind


def test_every_intervention_runs_and_changes_the_effect_loss() -> None:
    x, y = batch()
    base = make_model(MSDN).loss(make_model(MSDN)(x), y)["loss"]
    effects = {}
    for kind in INTERVENTIONS[1:]:
        torch.manual_seed(5)
        model = make_model(MSDNPP, MSDNPPConfig(intervention=kind, effect_loss="both"))
        out = model(x)
        terms = model.loss(out, y)
        for k, v in terms.items():
            assert torch.isfinite(v).all(), (kind, k)
        assert terms["effect_class"] > 0 and terms["effect_attr"] > 0, kind
        torch.testing.assert_close(terms["loss"], base + terms["effect_class"] + 0.1 * terms["effect_attr"])
        terms["loss"].backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters())
        effects[kind] = round(terms["effect_class"].item(), 6)
    assert len(set(effects.values())) == len(effects), effects  # each intervention is a different do()


def test_msdnpp_switches() -> None:
    x, y = batch()

    def run(seed: int = 7, **kw):
        model = make_model(MSDNPP, MSDNPPConfig(**kw))
        torch.manual_seed(seed)
        out = model(x)
        return model, out, model.loss(out, y)

    # Random draws come from the global generator: same seed, same loss; new seed, new loss.
    _, _, t1 = run(intervention="random")
    _, _, t2 = run(intervention="random")
    _, _, t3 = run(seed=8, intervention="random")
    assert torch.equal(t1["loss"], t2["loss"]) and not torch.equal(t1["loss"], t3["loss"])
    # apply_to: only the intervened sub-net has an effect
    _, out, _ = run(intervention="uniform", apply_to="avca")
    assert "e1" in out and "e2" not in out
    _, out, _ = run(intervention="uniform", apply_to="vaca")
    assert "e2" in out and "e1" not in out
    # effect logits at inference vs factual
    m_eff, out, _ = run(intervention="uniform", eval_logits="effect")
    torch.testing.assert_close(out["logits"], 0.9 * out["e1"] + 0.1 * out["e2"])
    assert not torch.allclose(m_eff.scores(x), m_eff(x)["s1"] * 0.9 + m_eff(x)["s2"] * 0.1)
    # n_samples averages draws: the spread of the effect loss shrinks
    spread = {}
    for n in (1, 8):
        vals = [run(seed=s, intervention="random", n_samples=n)[2]["effect_class"].item() for s in range(6)]
        spread[n] = np.std(vals)
    assert spread[8] < spread[1]
    # distillation between effects adds to the distillation terms
    _, _, plain = run(intervention="uniform")
    _, _, dist = run(intervention="uniform", distill_effects=True)
    assert dist["distill_l2"] > plain["distill_l2"] and dist["distill_js"] > plain["distill_js"]
    # detach_counterfactual: the effect loss no longer reaches S through the counterfactual
    grads = []
    for detach in (False, True):
        model, out, terms = run(intervention="uniform", detach_counterfactual=detach)
        terms["effect_class"].backward()
        grads.append(model.W1.grad.clone())
    assert not torch.allclose(grads[0], grads[1])


# ------------------------------------------------------------------ config and presets


@pytest.mark.parametrize("values, field", [
    ({"intervention": "flip"}, "method.intervention"),
    ({"apply_to": "all"}, "method.apply_to"),
    ({"effect_loss": "none"}, "method.effect_loss"),
    ({"eval_logits": "both"}, "method.eval_logits"),
    ({"lambda_eff": -1.0}, "method.lambda_eff"),
    ({"n_samples": 0}, "method.n_samples"),
    ({"lambda_cal": float("nan")}, "method.lambda_cal"),
    ({"w1": 0.0, "w2": 0.0}, "method.w1"),
    ({"distill_effects": True, "apply_to": "avca"}, "method.distill_effects"),
    ({"intervention": "none", "eval_logits": "effect"}, "method.eval_logits"),
    ({"intervntion": "random"}, "method.intervntion"),
])
def test_config_validation(values: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")) as exc:
        build(MSDNPPConfig, values, "method")
    if "valid" in str(exc.value) and field == "method.intervention":
        assert "shuffle_attribute" in str(exc.value)  # lists the valid values


@pytest.mark.parametrize("name", ["msdn", "msdnpp"])
@pytest.mark.parametrize("dataset", ["cub", "sun", "awa2", "flo"])
def test_presets_resolve(name: str, dataset: str) -> None:
    cls = METHODS.get(name)
    assert cls.input == "regions" and cls.family == "attention"
    cfg = resolve(cls, dataset)
    assert isinstance(cfg.train, TrainConfig) and cfg.train.optimizer == "rmsprop"
    # Official RMSprop lr 1e-4; FLO (ours, V learned from scratch) uses 1e-3.
    assert cfg.train.lr == (1e-3 if dataset == "flo" else 1e-4) and cfg.train.weight_decay == 1e-4
    official = {"cub": (30, 0.1, 1e-3, 0.9, 0.9), "sun": (70, 1e-4, 1e-2, 0.9, 0.7),
                "awa2": (50, 0.12, 1e-7, 0.0, 1.0)}
    if dataset in official:
        epochs, lam, wd, mom, w1 = official[dataset]
        m = cfg.method
        assert (cfg.train.epochs, m.lambda_cal, m.w_distill, cfg.train.momentum, m.w1) == (epochs, lam, wd, mom, w1)
    assert cfg.method.normalize_v == (dataset in ("awa2", "flo"))
    assert cfg.method.clip_negative_att == (dataset == "awa2")


# ------------------------------------------------------------------ fused backward


def test_fused_attention_gradcheck() -> None:
    """The hand-written backward against numerical gradients (float64), incl. grads into S and T."""
    from methods.msdn import _FusedAttention

    g = torch.Generator().manual_seed(0)
    b, r, a, f = 2, 3, 2, 4
    xt = torch.rand(b * r, f, dtype=torch.float64, generator=g)
    p = torch.randn(4 * a, f, dtype=torch.float64, generator=g, requires_grad=True)
    w = torch.randn(b, r, 4 * a, dtype=torch.float64, generator=g)

    a_bar = torch.rand(b, r, a, dtype=torch.float64, generator=g)
    b_bar = torch.rand(b, r, a, dtype=torch.float64, generator=g)

    def intervene(*_: torch.Tensor):
        return a_bar, b_bar

    def fn(p: torch.Tensor):
        psi, omega, prod, *_ = _FusedAttention.apply(xt, p, b, a)
        return psi, omega, (prod * w).sum()

    def fn_cf(p: torch.Tensor):  # MSDN++: counterfactual sums with gradients into S and T
        psi, omega, prod, _, _, psi_cf, omega_cf = _FusedAttention.apply(xt, p, b, a, intervene, True)
        return psi, omega, psi_cf, omega_cf, (prod * w).sum()

    assert torch.autograd.gradcheck(fn, (p,))
    assert torch.autograd.gradcheck(fn_cf, (p,))
    assert torch.autograd.gradcheck(lambda p: _FusedAttention.apply(xt, p, b, a)[0], (p,))
    assert torch.autograd.gradcheck(lambda p: _FusedAttention.apply(xt, p, b, a)[1], (p,))
    assert torch.autograd.gradcheck(lambda p: _FusedAttention.apply(xt, p, b, a, intervene, True)[5], (p,))
    # detached counterfactual: the sums carry no gradient
    out = _FusedAttention.apply(xt, p, b, a, intervene, False)
    assert not out[5].requires_grad and not out[6].requires_grad


@pytest.mark.parametrize("cls, cfg", [
    (MSDN, MSDNConfig(lambda_ar=0.3)),
    (MSDNPP, MSDNPPConfig(intervention="reversed", effect_loss="both", distill_effects=True)),
    (MSDNPP, MSDNPPConfig(intervention="uniform", apply_to="vaca", detach_counterfactual=True)),
])
def test_fused_path_matches_autograd_path(cls, cfg) -> None:
    """Training inputs take the fused path; inputs that want a gradient take plain autograd."""
    model = make_model(cls, cfg)
    x, y = batch()
    grads = []
    for inp in (x, x.clone().requires_grad_(True)):
        model.zero_grad()
        terms = model.loss(model(inp), y)
        terms["loss"].backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    for n in grads[0]:
        torch.testing.assert_close(grads[0][n], grads[1][n], atol=1e-5, rtol=1e-4, msg=n)


# ------------------------------------------------------------------ learns (tiny simulated data)


@pytest.mark.parametrize("cls, cfg", [(MSDN, MSDNConfig()), (MSDNPP, MSDNPPConfig())])
def test_learns_on_tiny_simulated_data(cls, cfg) -> None:
    """Trained on the seen classes, ZSL accuracy on the 3 unseen classes beats chance (1/3) clearly."""
    from zsl_bench.data.loader import load_dataset
    from zsl_bench.engine import Engine
    from zsl_bench.metrics import zsl_accuracy

    d = load_dataset("cub", sim_preset="tiny", sim_seed=0)
    train = TrainConfig(epochs=20, batch_size=25, optimizer="rmsprop", lr=1e-3, weight_decay=1e-4, momentum=0.9,
                        device="cpu")
    engine = Engine(cls, ResolvedConfig(method=cfg, train=train, eval=EvalConfig()), d)
    out = engine.train(phase="final", train_rows=d.splits["trainval"], seen=d.seen_classes,
                       unseen=d.unseen_classes, epochs=train.epochs, seed=0, progress=False)
    tu = d.splits["test_unseen"]
    acc = zsl_accuracy(engine.score(out.model, tu), d.labels[tu], d.unseen_classes)  # %
    assert acc > 50, acc


# ------------------------------------------------------------------ official schedule (issue 12)


@pytest.mark.parametrize("dataset, n, steps, images", [
    ("cub", 7057, 141, 50),  # MSDN_cub.py: niters = 7057·30//50 = 4234, report_interval = 4234//30 = 141
    ("sun", 10320, 206, 50),  # 10320·70//50 = 14448, //70 = 206; balanced: 50 of 645 classes
    ("awa2", 23527, 470, 40),  # 23527·50//50 = 23527, //50 = 470; balanced: one image of each of 40 classes
])
def test_presets_follow_the_official_epoch_length(dataset: str, n: int, steps: int, images: int) -> None:
    """An epoch is floor(n / 50) steps as in the official scripts, whatever batch the loader gives."""
    from zsl_bench.engine import trainer_batches

    tc = resolve(MSDN, dataset).train
    num_seen = {"cub": 150, "sun": 645, "awa2": 40}[dataset]
    batches = trainer_batches(tc, np.arange(n) % num_seen, np.random.default_rng(0))
    assert len(batches) == steps and {len(b) for b in batches} == {images}
    assert tc.epoch_batch_size == 50
    # the default epoch (other methods, FLO): one pass, ceil(n / batch) steps, last one short
    plain = trainer_batches(replace(tc, epoch_batch_size=0), np.arange(n) % num_seen, np.random.default_rng(0))
    assert len(plain) == -(-n // tc.batch_size)
    assert resolve(MSDN, "flo").train.epoch_batch_size == 0


def test_epoch_batch_size_config() -> None:
    """Validated in one line; omitted from config digests while at its default (other rows unchanged)."""
    with pytest.raises(ConfigError, match=r"train\.epoch_batch_size.*-1"):
        build(TrainConfig, {"epoch_batch_size": -1}, "train")
    plain = ResolvedConfig(method=MSDNConfig(), train=TrainConfig(), eval=EvalConfig())
    assert "epoch_batch_size" not in plain.as_dict()["train"]
    from dataclasses import fields
    assert set(plain.as_dict()["train"]) == {f.name for f in fields(TrainConfig)} - {"epoch_batch_size"}
    assert resolve(MSDN, "awa2").as_dict()["train"]["epoch_batch_size"] == 50
    # uniform sampler, epochs longer than one pass: full batches from successive permutations
    from zsl_bench.engine import epoch_batches
    got = epoch_batches("uniform", np.zeros(7), 3, np.random.default_rng(0), num_batches=5)
    assert [len(b) for b in got] == [3] * 5 and sorted(np.concatenate(got)[:7]) == list(range(7))


# ------------------------------------------------------------------ MSDN++ defects (issue 12)


STOCHASTIC = ("random", "shuffle_batch", "shuffle_region", "shuffle_attribute")


def _engine(cfg: MSDNPPConfig, epochs: int = 2):
    from zsl_bench.engine import Engine, EvalSplit

    task = make_task()
    g = torch.Generator().manual_seed(3)
    n = 30
    y = torch.arange(n) % K
    x = torch.rand(n, FDIM, R, generator=g)
    train = TrainConfig(epochs=epochs, batch_size=B, optimizer="rmsprop", lr=1e-2, weight_decay=1e-4,
                        momentum=0.9, device="cpu")
    engine = Engine.from_arrays(MSDNPP, ResolvedConfig(method=cfg, train=train, eval=EvalConfig()), x, y,
                                task.att, task.seen, task.unseen, name=task.dataset, w2v=task.w2v)
    rows = np.arange(n)
    seen_rows, unseen_rows = rows[y.numpy() < SEEN], rows[y.numpy() >= SEEN]
    split = EvalSplit("test", seen_rows, unseen_rows, np.asarray(task.seen), np.asarray(task.unseen))
    return engine, task, split, x


@pytest.mark.parametrize("intervention, eval_logits", [
    ("random", "factual"), ("random", "effect"), ("shuffle_batch", "effect"), ("shuffle_region", "effect"),
])
def test_evaluation_never_changes_training(intervention: str, eval_logits: str) -> None:
    """Training with extra evaluations between epochs ends with the same parameters, bit for bit."""
    from zsl_bench.engine import Hook

    cfg = MSDNPPConfig(intervention=intervention, eval_logits=eval_logits)
    engine, task, split, _ = _engine(cfg)

    class ScoreAgain(Hook):
        def after_epoch(self, t) -> None:
            for rows in (split.unseen_rows, split.seen_rows[:1], np.arange(30)):
                t.engine.score(t.model, rows)

    common = dict(phase="test", train_rows=np.arange(30), seen=task.seen, unseen=task.unseen, epochs=2, seed=0,
                  progress=False)
    plain = engine.train(**common).model
    evaluated = engine.train(**common, evaluation=split, hooks=[ScoreAgain()]).model
    for (name, a), (_, b) in zip(plain.state_dict().items(), evaluated.state_dict().items()):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("intervention", INTERVENTIONS[1:])
@pytest.mark.parametrize("eval_logits", ["factual", "effect"])
def test_scoring_draws_nothing_and_is_batch_independent(intervention: str, eval_logits: str) -> None:
    """Scores: no generator touched; equal twice; image by image equal to the whole batch at once."""
    model = make_model(MSDNPP, MSDNPPConfig(intervention=intervention, eval_logits=eval_logits))
    x, _ = batch()
    model(x)  # a training forward (shuffle_batch: moves the running mean off uniform)
    model.eval()
    state = torch.get_rng_state()
    first = model.scores(x)
    assert torch.equal(torch.get_rng_state(), state)  # nothing drawn
    assert torch.equal(model.scores(x), first)
    one_by_one = torch.cat([model.scores(x[i:i + 1]) for i in range(B)])
    torch.testing.assert_close(one_by_one, first, rtol=1e-5, atol=1e-5)
    assert torch.equal(one_by_one.argmax(1), first.argmax(1))
    if eval_logits == "effect":  # the effect, not the factual logits
        assert not torch.allclose(first, MSDN.forward(model, x)["logits"])
    else:
        assert torch.equal(first, MSDN.forward(model, x)["logits"])
    assert torch.equal(model.forward(x)["logits"], first)  # eval-mode forward: the same expectation


@pytest.mark.parametrize("intervention", STOCHASTIC)
def test_effect_scores_are_the_expected_effect(intervention: str) -> None:
    """Effect scoring = the mean of the effect logits over many training draws (linear in the map).

    ``shuffle_batch``: the draws' mean is each image's leave-one-out mean map of its batch (the
    derangement is uniform over the other images); scoring uses the training images' running mean
    instead, which is checked to be the momentum average of the training batches' maps.
    """
    model = make_model(MSDNPP, MSDNPPConfig(intervention=intervention, eval_logits="effect", n_samples=16))
    x, _ = batch()
    torch.manual_seed(0)
    with torch.no_grad():
        draws = torch.stack([model(x)["logits"] for _ in range(100)]).mean(0)
        net = model._subnets(x)
    if intervention == "shuffle_batch":
        z = model.att.t()
        others = [(net[m].sum(0, keepdim=True) - net[m]) / (B - 1) for m in ("alpha", "beta")]
        e1 = net["s1"] - (others[0] * net["S"]).sum(1) @ z
        e2 = net["s2"] - (others[1] * net["T"]).sum(1) @ z
        expected = model.cfg.w1 * e1 + model.cfg.w2 * e2
        # 100 training forwards of the same batch: the running means have converged to its mean maps
        torch.testing.assert_close(model.alpha_mean, net["alpha"].mean(0))
        torch.testing.assert_close(model.beta_mean, net["beta"].mean(0))
    else:
        model.eval()
        expected = model.scores(x)
    assert (draws - expected).abs().max() / expected.abs().max() < 0.01


def test_shuffle_batch_is_a_derangement() -> None:
    """No image keeps its own attention; every other image is reachable."""
    seen_pairs = set()
    for n in (2, 3, 8, 50):
        for s in range(40):
            torch.manual_seed(s)
            src = MSDNPP._derangement(n, torch.device("cpu"))
            assert sorted(src.tolist()) == list(range(n))  # a permutation
            assert (src != torch.arange(n)).all()  # no fixed point
            if n == 3:
                seen_pairs.update(zip(range(n), src.tolist()))
    assert seen_pairs == {(i, j) for i in range(3) for j in range(3) if i != j}
    model = make_model(MSDNPP, MSDNPPConfig(intervention="shuffle_batch"))
    x, _ = batch()
    net = model._subnets(x)
    m = model._counterfactual_map(net["alpha"], net["a_logit"], 1)
    for i in range(B):
        assert not torch.equal(m[i], net["alpha"][i])
    one = model._counterfactual_map(net["alpha"][:1], net["a_logit"][:1], 1)  # a batch of one: training mean
    torch.testing.assert_close(one[0], model.alpha_mean)


def _attribute_loss_cases(att: np.ndarray, batch_size: int = 50, seed: int = 0) -> dict[str, float]:
    """The attribute-effect loss at the target, a random effect, and a spiky one (one image per attribute)."""
    rng = np.random.default_rng(seed)
    z = F.normalize(torch.as_tensor(att, dtype=torch.float32), dim=1)
    y = torch.as_tensor(rng.choice(len(att), batch_size, replace=False))
    target = z[y]
    spiky = torch.zeros_like(target)
    spiky[torch.as_tensor(rng.integers(0, batch_size, target.shape[1])), torch.arange(target.shape[1])] = 1.0
    cases = {"target": target, "scaled target": 3.0 * target - 0.2,
             "random": torch.as_tensor(rng.random(target.shape), dtype=torch.float32), "spiky": spiky,
             "noisy target": target + 0.3 * target.std(0) * torch.as_tensor(rng.standard_normal(target.shape),
                                                                             dtype=torch.float32)}
    return {k: MSDNPP.attribute_effect_loss(v, target).item() for k, v in cases.items()}


def _check_minimum_at_target(vals: dict[str, float]) -> None:
    # 0 at the target and at a positive affine image of it (the same map for every attribute)
    assert vals["target"] == 0.0 and vals["scaled target"] < 1e-5, vals
    for k in ("random", "spiky", "noisy target"):
        assert vals[k] > 0.1, (k, vals)
    assert vals["spiky"] > vals["noisy target"], vals


def test_attribute_effect_loss_minimum_at_target_synthetic() -> None:
    rng = np.random.default_rng(1)
    att = rng.random((200, 312)) * (rng.random((200, 312)) < 0.3)  # sparse, CUB-shaped
    _check_minimum_at_target(_attribute_loss_cases(att))


def test_attribute_effect_loss_minimum_at_target_real_cub(shared_root: Path) -> None:
    """On the real CUB class semantics (skips, naming the path, without $ZSL_BENCH_SHARED_DATA)."""
    from scipy.io import loadmat

    att = loadmat(shared_root / "CUB" / "att_splits.mat")["att"].T  # [200 classes, 312 attributes]
    _check_minimum_at_target(_attribute_loss_cases(att))


def test_search_does_not_sample_inert_loss_weights() -> None:
    """msdnpp_search.yaml: λ_sem only under an attribute effect loss, λ_eff only under a class one."""
    from zsl_bench.study.spec import load_spec

    spec = load_spec(Path(__file__).resolve().parents[1] / "benchmarks" / "msdnpp_search.yaml")
    space = {p.key: p for p in spec.search.space}
    for loss in ("class", "attribute", "both"):
        picked = spec.search.sample(lambda p, loss=loss: loss if p.key == "method.effect_loss" else
                                    (p.choices[0] if p.type == "categorical" else p.low))
        assert ("method.lambda_sem" in picked) == (loss != "class"), picked
        assert ("method.lambda_eff" in picked) == (loss != "attribute"), picked
    assert space["method.lambda_sem"].when == {"method.effect_loss": ("attribute", "both")}
