"""Config resolution: precedence, unknown keys, bad values, files and --set parsing."""

from __future__ import annotations

from pathlib import Path

import pytest

from zsl_bench import config as C
from zsl_bench.errors import ConfigError
from zsl_bench.registry import METHODS
from zsl_bench.runner import RunSpec, resolve_config

ALE = METHODS.get("ale")
ESZSL = METHODS.get("eszsl")


def test_precedence_defaults_preset_file_cli() -> None:
    assert C.resolve(ALE, None).train.lr == C.TrainConfig().lr  # defaults
    assert C.resolve(ALE, "cub").train.lr == 0.3  # the CUB preset
    assert C.resolve(ALE, "awa2").train.lr == 0.01
    file_cfg = {"train": {"lr": 0.2, "batch_size": 7}}
    assert C.resolve(ALE, "cub", file_cfg).train.lr == 0.2  # file beats preset
    r = C.resolve(ALE, "cub", file_cfg, {"train": {"lr": 0.1}})
    assert r.train.lr == 0.1 and r.train.batch_size == 7  # CLI beats file, key by key
    assert r.train.optimizer == "sgd"  # untouched preset values survive
    assert C.resolve(ESZSL, "sun").method.gamma == 100.0


def test_run_spec_layers_and_protocol() -> None:
    spec = RunSpec("ale", "cub", overrides={"train": {"lr": 0.2}, "eval": {"protocol": "val"}}, protocol="test-oracle")
    r = resolve_config(spec, {"method": {"margin": 0.5}})
    assert (r.train.lr, r.method.margin, r.eval.protocol) == (0.2, 0.5, "test-oracle")
    with pytest.raises(ConfigError, match="bad protocol 'oracle'; valid: val, test-oracle"):
        RunSpec("ale", "cub", protocol="oracle")


def test_unknown_key_lists_valid_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown config key train\.lrr; valid keys of train: epochs, batch_size"):
        C.resolve(ALE, "cub", {"train": {"lrr": 1}})
    with pytest.raises(ConfigError, match=r"method\.alfa; valid keys of method: alpha, gamma, normalize_features"):
        C.resolve(ESZSL, "cub", None, {"method": {"alfa": 1}})
    with pytest.raises(ConfigError, match=r"unknown config section 'model'; valid: method, train, eval"):
        C.resolve(ALE, "cub", {"model": {"x": 1}})


@pytest.mark.parametrize("layer,msg", [
    ({"train": {"optimizer": "adagrad"}}, r"train\.optimizer: 'adagrad'; valid: one of adam, adamw, rmsprop, sgd"),
    ({"train": {"epochs": -1}}, r"train\.epochs: -1; valid: an integer >= 0"),
    ({"train": {"epochs": 2.5}}, r"train\.epochs: 2\.5; expected an integer"),
    ({"train": {"lr": "fast"}}, r"train\.lr: 'fast'; expected a number"),
    ({"train": {"lr": 0}}, r"train\.lr: 0\.0; valid: a float > 0"),
    ({"train": {"sampler": "balanced"}}, r"train\.sampler: 'balanced'; valid: uniform or class_balanced"),
    ({"train": {"device": "tpu"}}, r"train\.device: 'tpu'; valid: auto, cpu, cuda or cuda:N"),
    ({"train": {"precision": "fp16"}}, r"train\.precision: 'fp16'; valid: fp32 or bf16"),
    ({"train": {"amp": True}}, r"unknown config key train\.amp: train\.amp was replaced by train\.precision: fp32"),
    ({"eval": {"protocol": "test"}}, r"eval\.protocol: 'test'; valid: val or test-oracle"),
    ({"method": {"alpha": -1}}, r"method\.alpha: -1\.0; valid: a float > 0"),
])
def test_bad_values_name_the_key_and_what_is_valid(layer: dict, msg: str) -> None:
    method = ALE if "alpha" not in layer.get("method", {}) else ESZSL
    with pytest.raises(ConfigError, match=msg):
        C.resolve(method, "cub", None, layer)


def test_parse_overrides() -> None:
    out = C.parse_overrides(["train.lr=3e-4", "method.normalize_features=false", "eval.gamma=null",
                             "train.optimizer=sgd"])
    assert out == {"train": {"lr": 3e-4, "optimizer": "sgd"}, "method": {"normalize_features": False},
                   "eval": {"gamma": None}}
    with pytest.raises(ConfigError, match="bad --set 'lr'; expected SECTION.KEY=VALUE"):
        C.parse_overrides(["lr"])
    with pytest.raises(ConfigError, match="bad --set key 'optim.lr'; expected SECTION.KEY"):
        C.parse_overrides(["optim.lr=1"])


def test_yaml_files(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("train:\n  lr: 0.05\nmethod:\n  margin: 2\n")
    r = C.resolve(ALE, "cub", C.load_yaml(good))
    assert (r.train.lr, r.method.margin) == (0.05, 2.0)
    with pytest.raises(ConfigError, match=f"config file not found: {tmp_path / 'nope.yaml'}"):
        C.load_yaml(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [lr: 1\n")
    with pytest.raises(ConfigError, match=f"config file {bad} is not valid YAML"):
        C.load_yaml(bad)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("3\n")
    with pytest.raises(ConfigError, match="must hold a mapping with sections method, train, eval"):
        C.load_yaml(scalar)


def test_digest_tracks_values() -> None:
    a, b = C.resolve(ALE, "cub"), C.resolve(ALE, "cub")
    assert a.digest() == b.digest() and len(a.digest()) == 12
    assert C.resolve(ALE, "cub", None, {"train": {"lr": 0.11}}).digest() != a.digest()


def test_check_names_the_key_the_value_and_what_is_valid() -> None:
    C.check(True, "train.lr", -1, "a float > 0")  # ok: nothing raised
    with pytest.raises(ConfigError, match=r"^bad value for method.margin: -1; valid: a float > 0$"):
        C.check(False, "method.margin", -1, "a float > 0")


def test_method_configs_use_the_harness_check_with_section_keys() -> None:
    # MSDN++ validates through config.check (not a private helper of msdn.py) with full keys.
    cls = METHODS.get("msdnpp").config_cls
    with pytest.raises(ConfigError, match=r"bad value for method.n_samples: 0; valid: an integer >= 1"):
        C.build(cls, {"n_samples": 0}, "method")
    with pytest.raises(ConfigError, match=r"bad value for method.w1: 0.0; valid: w1 \+ w2 > 0"):
        C.build(METHODS.get("msdn").config_cls, {"w1": 0.0, "w2": 0.0}, "method")


@pytest.mark.parametrize(("text", "seeds"), [("0,1,2", (0, 1, 2)), ("2,0", (2, 0)), ("1,1,0,1", (1, 0)),
                                             (" 3 , 4", (3, 4)), ("0,,1", (0, 1))])
def test_parse_seeds(text: str, seeds: tuple[int, ...]) -> None:
    assert C.parse_seeds(text) == seeds


@pytest.mark.parametrize("text", ["", ",", "a", "0,x", "1.5", "-1", "0,-2"])
def test_parse_seeds_rejects_and_names_the_flag(text: str) -> None:
    with pytest.raises(ConfigError, match=r"^--seeds: bad value"):
        C.parse_seeds(text)
    with pytest.raises(ConfigError, match=r"^--trial-seeds: bad value"):
        C.parse_seeds(text, flag="--trial-seeds")


def test_merge_later_layers_win_key_by_key() -> None:
    merged = C.merge({"train": {"lr": 1.0, "epochs": 2}}, None, {"train": {"lr": 3.0}, "eval": None},
                     {"method": {"a": 1}})
    assert merged == {"train": {"lr": 3.0, "epochs": 2}, "method": {"a": 1}}
    with pytest.raises(ConfigError, match="unknown config section 'trian'"):
        C.merge({"trian": {"lr": 1.0}})


# ---------------------------------------------------------------- the sim section

# Digests measured on main before the sim section existed (python: resolve_config(RunSpec(...)).digest()):
# configs without a sim section must keep them, and so every existing result row its config_hash.
DIGESTS_BEFORE_SIM = [("eszsl", "cub", {}, "203a99e91372"), ("msdnpp", "cub", {}, "45e07769b183"),
                      ("msdn", "sun", {}, "b8e75541a4c8"), ("ale", "awa2", {"train": {"lr": 0.05}}, "f7761dd8d828"),
                      ("msdnpp", "flo", {"method": {"intervention": "none"}}, "b638ebed2137")]


@pytest.mark.parametrize(("method", "dataset", "overrides", "digest"), DIGESTS_BEFORE_SIM)
def test_digest_without_sim_section_is_unchanged(method: str, dataset: str, overrides: dict, digest: str) -> None:
    for sim_preset in (None, "tiny"):
        cfg = resolve_config(RunSpec(method, dataset, overrides=overrides, sim_preset=sim_preset))
        assert cfg.digest() == digest and "sim" not in cfg.as_dict() and not cfg.sim
    empty = resolve_config(RunSpec(method, dataset, overrides={**overrides, "sim": {}}, sim_preset="tiny"))
    assert empty.digest() == digest  # an empty section is no section


def test_sim_section_is_part_of_the_config_only_when_set() -> None:
    base = resolve_config(RunSpec("eszsl", "cub", sim_preset="tiny"))
    cfg = resolve_config(RunSpec("eszsl", "cub", sim_preset="tiny"), C.parse_overrides(["sim.rho=0"]))
    assert cfg.as_dict()["sim"] == {"rho": 0.0} and cfg.sim.overrides() == {"rho": 0.0}
    assert cfg.digest() != base.digest()
    # Coerced to the parameter's type: rho 0 and 0.0 are one setting (one digest, one dataset).
    same = resolve_config(RunSpec("eszsl", "cub", overrides={"sim": {"rho": 0.0}}, sim_preset="tiny"))
    assert same.digest() == cfg.digest()
    assert resolve_config(RunSpec("eszsl", "cub", overrides={"sim": {"rho": 0.5, "context_strength": 0.25}},
                                  sim_preset="tiny")).digest() != cfg.digest()
    # Precedence as every section: CLI over file, key by key.
    both = resolve_config(RunSpec("eszsl", "cub", overrides={"sim": {"rho": 0.25, "jitter": 0.2}}, sim_preset="tiny"),
                          {"sim": {"rho": 0.75, "context_strength": 0.25}})
    assert both.sim.overrides() == {"context_strength": 0.25, "jitter": 0.2, "rho": 0.75}


def test_sim_generator_selects_a_version() -> None:
    from zsl_bench.data import sim

    versions = tuple(getattr(sim, "GENERATORS", ())) or (sim.GENERATOR_VERSION.rsplit("/", 1)[-1],)
    for g in versions:
        cfg = resolve_config(RunSpec("eszsl", "cub", sim_preset="tiny"), {"sim": {"generator": g}})
        assert cfg.sim.generator == g and cfg.as_dict()["sim"] == {"generator": g}
    with pytest.raises(ConfigError, match=rf"^bad value for sim.generator: '0.9'; valid: {', '.join(versions)}$"):
        resolve_config(RunSpec("eszsl", "cub", sim_preset="tiny"), {"sim": {"generator": "0.9"}})


@pytest.mark.parametrize(("sim", "match"), [
    ({"rhoo": 0.5}, r"^unknown config key sim\.rhoo; valid keys of sim: generator, .*\brho\b"),
    ({"rho": "abc"}, r"^bad value for sim\.rho: 'abc'; expected a number$"),
    ({"rho": 1.5}, r"\brho\b.*1\.5"),
])
def test_bad_sim_keys_and_values_are_one_line(sim: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as err:
        resolve_config(RunSpec("eszsl", "cub", sim_preset="tiny"), {"sim": sim})
    assert "\n" not in str(err.value)


def test_sim_section_on_real_data_is_an_error() -> None:
    with pytest.raises(ConfigError, match=r"^config key sim\.rho: the sim section sets the simulated data generator, "
                                          r"but this run reads real data"):
        resolve_config(RunSpec("eszsl", "cub"), C.parse_overrides(["sim.rho=0.5"]))
    assert not resolve_config(RunSpec("eszsl", "cub"), {"sim": {}}).sim  # empty: nothing to refuse


def test_rho_without_context_strength_is_an_error_not_a_silent_no_op() -> None:
    spec = RunSpec("eszsl", "cub", sim_preset="tiny")
    with pytest.raises(ConfigError, match=r"sim\.rho=0\.5 has no effect at sim\.context_strength 0 .*"
                                          r"set sim\.context_strength too"):
        resolve_config(spec, C.parse_overrides(["sim.generator=2.0", "sim.rho=0.5"]))
    cfg = resolve_config(spec, C.parse_overrides(["sim.generator=2.0", "sim.rho=0.5", "sim.context_strength=0.25"]))
    assert dict(cfg.sim.params) == {"rho": 0.5, "context_strength": 0.25}
