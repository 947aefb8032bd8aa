"""Configuration: frozen dataclasses, YAML files, dotted CLI overrides.

Precedence: CLI ``--set`` > config file > per-dataset method preset > dataclass defaults.
A run's configuration has three sections: ``method`` (the method's own frozen dataclass, defined
beside the method), ``train`` (:class:`TrainConfig`) and ``eval`` (:class:`EvalConfig`), and, for
simulated data only, a fourth: ``sim`` (:class:`SimConfig`), overrides of the data generator
(``--set sim.rho=0.5``, ``sim.generator`` its version). ``sim`` is part of a config (its digest,
the rows' ``config``) only when it sets something, so configs without it are as before.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import types
import typing
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import yaml

from .errors import ConfigError

if TYPE_CHECKING:  # the contract imports torch; configs are read before any model is built
    from .contract import ZSLMethod

SECTIONS = ("method", "train", "eval", "sim")
PRECISIONS = ("fp32", "bf16")
# Keys that were renamed: (section, old key) -> what replaces them, said in one line.
RENAMED = {("train", "amp"): "train.amp was replaced by train.precision: fp32 (the default, as the official "
                             "codes) or bf16 (autocast, opt-in)"}


@dataclass(frozen=True)
class TrainConfig:
    """How the engine trains (ignored by closed-form methods except ``device`` and ``seed``)."""

    epochs: int = 30
    batch_size: int = 50
    optimizer: str = "adam"  # adam | adamw | rmsprop | sgd
    lr: float = 1e-4
    weight_decay: float = 1e-4
    momentum: float = 0.9
    sampler: str = "uniform"  # uniform | class_balanced
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    # What the engine computes in, on every device: fp32 (the official codes; TF32 off on CUDA) or
    # bf16 autocast of forward, loss and scoring (faster on GPUs; a deviation, see docs/REPRODUCE.md).
    precision: str = "fp32"  # fp32 | bf16
    grad_clip: float = 0.0  # 0 = off
    eval_every: int = 1
    eval_batch_size: int = 1024
    # Steps per epoch: 0 (default) = ceil(n / batch_size), one pass over the n training images;
    # N > 0 = floor(n / N) steps of batch_size images, i.e. an epoch counted in N-image units as
    # the official MSDN scripts do (niters = n·epochs // 50, evaluated every niters // epochs steps,
    # while AWA2's balanced loader delivers 40-image batches).
    epoch_batch_size: int = 0

    # Fields added after results were recorded: omitted from ``ResolvedConfig.as_dict`` (and so
    # from every config digest and result row) while at their default, so existing rows keep theirs.
    OMIT_AT_DEFAULT: ClassVar[tuple[str, ...]] = ("epoch_batch_size",)

    def __post_init__(self) -> None:
        check(self.epochs >= 0, "train.epochs", self.epochs, "an integer >= 0")
        check(self.batch_size >= 1, "train.batch_size", self.batch_size, "an integer >= 1")
        check(self.optimizer in ("adam", "adamw", "rmsprop", "sgd"), "train.optimizer", self.optimizer,
               "one of adam, adamw, rmsprop, sgd")
        check(self.lr > 0, "train.lr", self.lr, "a float > 0")
        check(self.weight_decay >= 0, "train.weight_decay", self.weight_decay, "a float >= 0")
        check(self.sampler in ("uniform", "class_balanced"), "train.sampler", self.sampler,
               "uniform or class_balanced")
        check(self.device == "auto" or self.device == "cpu" or self.device.startswith("cuda"),
               "train.device", self.device, "auto, cpu, cuda or cuda:N")
        check(self.precision in PRECISIONS, "train.precision", self.precision, "fp32 or bf16")
        check(self.eval_every >= 1, "train.eval_every", self.eval_every, "an integer >= 1")
        check(self.momentum >= 0, "train.momentum", self.momentum, "a float >= 0")
        check(self.grad_clip >= 0, "train.grad_clip", self.grad_clip, "a float >= 0 (0 = off)")
        check(self.eval_batch_size >= 1, "train.eval_batch_size", self.eval_batch_size, "an integer >= 1")
        check(isinstance(self.epoch_batch_size, int) and not isinstance(self.epoch_batch_size, bool)
              and self.epoch_batch_size >= 0, "train.epoch_batch_size", self.epoch_batch_size,
              "an integer >= 0 (0: ceil(n / batch_size) steps per epoch; N: floor(n / N) steps)")


@dataclass(frozen=True)
class EvalConfig:
    """How the harness evaluates. ``gamma: null`` means: choose γ on validation data."""

    gamma: float | None = None
    protocol: str = "val"  # val | test-oracle

    def __post_init__(self) -> None:
        check(self.protocol in ("val", "test-oracle"), "eval.protocol", self.protocol, "val or test-oracle")


@dataclass(frozen=True)
class SimConfig:
    """The ``sim`` section: overrides of the simulated data generator (:mod:`zsl_bench.data.sim`).

    Built by :func:`build_sim`, which checks every key against the generator's parameters. Empty
    (the default) means the generator's preset as it is; an empty section is left out of
    :meth:`ResolvedConfig.as_dict` and so of every digest and result row.

    Attributes:
        generator: the generator version (a name of ``sim.GENERATORS``); None: the default one.
        params: ``(name, value)`` pairs of the generator's parameters, sorted by name.
    """

    generator: str | None = None
    params: tuple[tuple[str, Any], ...] = ()

    def __bool__(self) -> bool:
        return self.generator is not None or bool(self.params)

    def overrides(self) -> dict[str, Any]:
        """What ``load_dataset(..., sim_overrides=...)`` takes: the parameters, and ``generator`` when set."""
        return {**({"generator": self.generator} if self.generator is not None else {}), **dict(self.params)}

    def dotted_keys(self) -> list[str]:
        return [f"sim.{k}" for k in self.overrides()]


def build_sim(values: dict[str, Any] | None) -> SimConfig:
    """The ``sim`` section from its merged layers; every key and value checked by the generator.

    Valid keys: ``generator`` (a version of ``sim.GENERATORS``) and the fields of the parameters of
    that version (``sim.preset_params``); values are coerced to the field's type (``rho: 0`` and
    ``rho: 0.0`` are one setting) and checked by the generator's own rules.

    Raises:
        ConfigError: one line naming the key and what is valid.
    """
    values = dict(values or {})
    if not values:
        return SimConfig()
    from .data import sim  # the generator: only for configs that override it

    generator = values.pop("generator", None)
    if generator is not None:
        generator = _coerce(generator, str, "sim.generator")
        check(generator in sim.GENERATORS, "sim.generator", generator, ", ".join(sim.GENERATORS))

    def params_of(**overrides: Any) -> Any:
        return sim.preset_params("tiny", None, generator, **overrides)

    defaults = params_of()
    valid = [f.name for f in fields(defaults)]
    unknown = sorted(set(values) - set(valid), key=str)
    if unknown:
        raise ConfigError(f"unknown config key sim.{unknown[0]}; valid keys of sim: generator, {', '.join(valid)}")
    hints = typing.get_type_hints(type(defaults))
    params = {k: _coerce(v, hints[k], f"sim.{k}") for k, v in values.items()}
    params_of(**params)  # the generator's own checks of the values (ranges)
    small = sim.preset_params("small", None, generator, **params)  # the main command's preset
    if isinstance(small, sim.SimParams) and small.rho > 0 and small.context_strength == 0:
        raise ConfigError(f"sim.rho={params['rho']} has no effect at sim.context_strength 0 (the default: the "
                          "confounder is off); set sim.context_strength too, e.g. 0.25 as "
                          "benchmarks/confounding_sweep.yaml")
    return SimConfig(generator=generator, params=tuple(sorted(params.items())))


def check(ok: bool, key: str, value: Any, valid: str) -> None:
    """Raise :class:`ConfigError` naming ``key``, the bad ``value`` and what is valid, unless ``ok``.

    The one validation helper of configs (harness and method dataclasses' ``__post_init__``).

    Args:
        ok: the condition the value must meet.
        key: the dotted key the user wrote (``"train.lr"``, ``"method.margin"``).
        value: the value found.
        valid: what would be valid, in words (``"a float > 0"``).
    """
    if not ok:
        raise ConfigError(f"bad value for {key}: {value!r}; valid: {valid}")


def parse_seeds(text: str, flag: str = "--seeds") -> tuple[int, ...]:
    """``"0,1,2"`` -> ``(0, 1, 2)``: comma-separated integers >= 0; duplicates dropped, order kept.

    Blank parts are ignored (``"0,,1"``); no seed at all, a non-integer or a negative one raises
    a :class:`ConfigError` naming ``flag``.
    """
    try:
        seeds = [int(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"{flag}: bad value {text!r}; expected comma-separated integers, e.g. 0,1,2") from None
    if not seeds or any(s < 0 for s in seeds):
        raise ConfigError(f"{flag}: bad value {text!r}; expected comma-separated integers >= 0, e.g. 0,1,2")
    return tuple(dict.fromkeys(seeds))


def check_out_dir(out: str | Path, flag: str = "--out") -> Path:
    """``out`` must be (or become) a directory whose results files, where present, are regular files.

    Checked before anything is trained or written, so a wrong ``--out`` is one line, not a
    traceback after the first unit.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{flag} {out}: exists and is not a directory; give a directory for the run's outputs")
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ConfigError(f"{flag} {out}: {parent} is not a directory")
            break
    for name in ("results.csv", "trials.csv", "config.yaml"):
        path = out / name
        if path.exists() and not path.is_file():
            raise ConfigError(f"{flag} {out}: {path} exists and is not a regular file; it must be the "
                              f"{name} that zsl-bench writes (move it away)")
    return out


# ---------------------------------------------------------------- dict <-> dataclass


def _coerce(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        first: ConfigError | None = None
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, key)
            except ConfigError as exc:
                first = first or exc
        if first is not None and len(args) == 2 and type(None) in args:  # Optional[X]: X's own message
            raise ConfigError(f"{first}, or null") from None
        raise ConfigError(f"bad value for {key}: {value!r}; expected {tp}")
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"bad value for {key}: {value!r}; expected a list")
        (inner, *_) = typing.get_args(tp) or (Any,)
        seq = [_coerce(v, inner, key) for v in value]
        return tuple(seq) if origin is tuple else seq
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        raise ConfigError(f"bad value for {key}: {value!r}; expected true or false")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ConfigError(f"bad value for {key}: {value!r}; expected an integer")
        try:
            f = float(value)
        except ValueError:
            raise ConfigError(f"bad value for {key}: {value!r}; expected an integer") from None
        if not math.isfinite(f) or f != int(f):
            raise ConfigError(f"bad value for {key}: {value!r}; expected an integer")
        return int(f)
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"bad value for {key}: {value!r}; expected a number")
        try:
            f = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"bad value for {key}: {value!r}; expected a number") from None
        # NaN/inf would pass every `x > 0` check (or fail far away, e.g. as a NaN loss); no
        # float field of a config means anything at infinity.
        if not math.isfinite(f):
            raise ConfigError(f"bad value for {key}: {value!r}; expected a finite number")
        return f
    if tp is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"bad value for {key}: {value!r}; expected a string")
        return str(value)
    return value


def build(cls: type, values: dict[str, Any] | None, section: str) -> Any:
    """Build frozen dataclass ``cls`` from ``values``; unknown keys raise listing the valid ones."""
    values = dict(values or {})
    hints = typing.get_type_hints(cls)
    valid = [f.name for f in fields(cls) if f.init]
    unknown = sorted(set(values) - set(valid))
    for key in unknown:
        if (section, key) in RENAMED:
            raise ConfigError(f"unknown config key {section}.{key}: {RENAMED[section, key]}")
    if unknown:
        raise ConfigError(
            f"unknown config key {section}.{unknown[0]}; valid keys of {section}: {', '.join(valid)}"
        )
    kwargs = {k: _coerce(v, hints[k], f"{section}.{k}") for k, v in values.items()}
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"bad {section} config: {exc}") from None


def to_dict(obj: Any) -> dict[str, Any]:
    return {f.name: _plain(getattr(obj, f.name)) for f in fields(obj)}


def _plain(v: Any) -> Any:
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return to_dict(v)
    if isinstance(v, tuple):
        return [_plain(x) for x in v]
    return v


# ---------------------------------------------------------------- files and overrides


def load_yaml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {p} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {p} must hold a mapping with sections {', '.join(SECTIONS)}")
    return data


def parse_overrides(items: list[str] | None) -> dict[str, Any]:
    """``["train.lr=3e-4", "method.intervention=none"]`` -> nested dict; values parsed as YAML."""
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"bad --set {item!r}; expected SECTION.KEY=VALUE, e.g. train.lr=3e-4")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        if len(parts) != 2 or parts[0] not in SECTIONS or not parts[1]:
            raise ConfigError(
                f"bad --set key {key!r}; expected SECTION.KEY with SECTION one of {', '.join(SECTIONS)}"
            )
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        if isinstance(value, str) and _looks_float(value):
            value = float(value)
        out.setdefault(parts[0], {})[parts[1]] = value
    return out


def _looks_float(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def merge(*layers: dict[str, Any] | None) -> dict[str, Any]:
    """Merge ``{section: {key: value}}`` override layers; later layers win key by key.

    The one override merger (presets, config files, ``--set``, study variants). Sections must be
    ``method``, ``train``, ``eval`` or ``sim``; an empty (``None``) section is skipped.
    """
    out: dict[str, Any] = {}
    for layer in layers:
        for section, values in (layer or {}).items():
            if section not in SECTIONS:
                raise ConfigError(f"unknown config section {section!r}; valid: {', '.join(SECTIONS)}")
            if values is None:
                continue
            if not isinstance(values, dict):
                raise ConfigError(f"config section {section!r} must be a mapping")
            out.setdefault(section, {}).update(values)
    return out


@dataclass(frozen=True)
class ResolvedConfig:
    method: Any
    train: TrainConfig
    eval: EvalConfig
    sim: SimConfig = SimConfig()

    def as_dict(self) -> dict[str, Any]:
        train = to_dict(self.train)
        for key in TrainConfig.OMIT_AT_DEFAULT:
            if train[key] == getattr(TrainConfig, key):
                del train[key]
        out = {"method": to_dict(self.method), "train": train, "eval": to_dict(self.eval)}
        if self.sim:  # only when set: every config without it keeps its digest and rows
            out["sim"] = self.sim.overrides()
        return out

    def digest(self) -> str:
        blob = json.dumps(self.as_dict(), sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


def resolve(method_cls: type[ZSLMethod], dataset: str | None, file_cfg: dict[str, Any] | None = None,
            cli: dict[str, Any] | None = None, *, simulated: bool | None = None) -> ResolvedConfig:
    """Resolve a run's config for ``method_cls`` on ``dataset`` (lowercase name or None).

    Layers: defaults < ``method_cls.presets[dataset]`` < file < CLI.

    Args:
        simulated: whether the run reads simulated data; False: a ``sim`` section is an error
            (it would silently do nothing on real data). None: not checked.
    """
    preset = {}
    if dataset is not None:
        preset = method_cls.presets.get(dataset.lower(), {})
    layers = merge(preset, file_cfg, cli)
    raw_sim = layers.get("sim") or {}
    if simulated is False and raw_sim:  # before the generator's own checks: the section is wrong here
        first = "generator" if "generator" in raw_sim else sorted(raw_sim, key=str)[0]
        raise ConfigError(f"config key sim.{first}: the sim section sets the simulated data generator, "
                          "but this run reads real data; add --sim PRESET (study key 'sim') or remove the sim "
                          "overrides")
    cfg = ResolvedConfig(
        method=build(method_cls.config_cls, layers.get("method"), "method"),
        train=build(TrainConfig, layers.get("train"), "train"),
        eval=build(EvalConfig, layers.get("eval"), "eval"),
        sim=build_sim(layers.get("sim")),
    )
    return cfg
