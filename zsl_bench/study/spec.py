"""Study specs: YAML data parsed into frozen dataclasses, and the units of work they expand to.

The schema is the dataclasses themselves (:class:`StudySpec`, :class:`GridSpec`,
:class:`SearchSpec`, :class:`SearchParam`): ``config.build`` coerces the YAML values to their
field types and rejects unknown keys, and each ``__post_init__`` checks what types cannot say.
Every error names the key (and the spec file) and what would be valid.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import itertools
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..config import SECTIONS, build, check, merge
from ..errors import ConfigError, ZSLError
from ..protocol import PROTOCOLS
from ..runner import RunSpec

SAMPLERS = ("tpe", "grid", "random")
PRUNERS = ("none", "median", "successive_halving")
PARAM_TYPES = ("float", "log_float", "int", "categorical")
TABLES = ("main", "ablation")
PHASES = ("grid", "trial", "final")
BENCHMARKS_DIR_ENV = "ZSL_BENCH_BENCHMARKS"

Overrides = dict[str, dict[str, Any]]  # {"method": {...}, "train": {...}, "eval": {...}}


def _where(source: str) -> str:
    return f" in {source}" if source else ""


def nest(overrides: dict[str, Any] | None, where: str) -> Overrides:
    """Turn ``{"method.x": 1, "train": {"lr": 2}}`` into ``{"method": {"x": 1}, "train": {"lr": 2}}``."""
    out: Overrides = {}
    for key, value in (overrides or {}).items():
        if not isinstance(key, str):
            raise ConfigError(f"bad override key {key!r} at {where}; expected SECTION.KEY")
        if "." in key:
            section, name = key.split(".", 1)
            if section not in SECTIONS or not name or "." in name:
                raise ConfigError(f"bad override key {key!r} at {where}; expected SECTION.KEY with SECTION "
                                  f"one of {', '.join(SECTIONS)}")
            out.setdefault(section, {})[name] = value
        elif key in SECTIONS:
            if value is None:
                continue
            if not isinstance(value, dict):
                raise ConfigError(f"{where}.{key} must be a mapping of config keys")
            out.setdefault(key, {}).update(value)
        else:
            raise ConfigError(f"bad override key {key!r} at {where}; expected one of {', '.join(SECTIONS)} "
                              "or a dotted SECTION.KEY")
    return out


def _fmt_value(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def expand_grid(variants: dict[str, Any] | None, sweep: dict[str, Any] | None,
                where: str = "grid") -> dict[str, Overrides]:
    """Named variants x the product of ``sweep`` lists -> ``{point name: nested overrides}``.

    A point's name is the variant name, followed by ``key=value`` parts for the swept keys
    (``full,method.lambda_eff=0.1``); without variants it is the ``key=value`` parts alone, which
    is what sensitivity plots parse.
    """
    named = {str(k): nest(v, f"{where}.variants.{k}") for k, v in (variants or {}).items()}
    if not sweep:
        return named or {"default": {}}
    keys = list(sweep)
    for k in keys:
        nest({k: None}, f"{where}.sweep")  # validates the dotted key
        if not isinstance(sweep[k], list) or not sweep[k]:
            raise ConfigError(f"{where}.sweep.{k} must be a non-empty list of values")
    base_points = named or {"": {}}
    out: dict[str, Overrides] = {}
    for vname, vover in base_points.items():
        for combo in itertools.product(*(sweep[k] for k in keys)):
            parts = [f"{k}={_fmt_value(v)}" for k, v in zip(keys, combo)]
            name = ",".join(([vname] if vname else []) + parts)
            out[name] = merge(vover, nest(dict(zip(keys, combo)), f"{where}.sweep"))
    return out


# ---------------------------------------------------------------- the schema


@dataclass(frozen=True)
class SearchParam:
    """One dimension of an Optuna search space over a dotted config key."""

    key: str  # "method.lambda_eff"
    type: str | None = None  # float | log_float | int | categorical
    low: float | None = None
    high: float | None = None
    step: float | None = None
    choices: tuple[Any, ...] = ()
    # Conditional dimension: sampled only when each named categorical dimension of the same space
    # took one of the listed values ({"method.effect_loss": ["attribute", "both"]}); otherwise the
    # trial does not set it (the config's value stands) and the sampler spends nothing on it.
    when: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        at = f"search.space.{self.key}"
        nest({self.key: None}, at)
        if "." not in self.key:
            raise ConfigError(f"bad search key {self.key!r} at {at}; expected a dotted SECTION.KEY")
        check(self.type in PARAM_TYPES, f"{at}.type", self.type, ", ".join(PARAM_TYPES))
        if self.when is not None:
            if not isinstance(self.when, dict) or not self.when:
                raise ConfigError(f"{at}.when must be a non-empty mapping of SECTION.KEY (another categorical "
                                  f"dimension of search.space) to a value or a list of its choices")
            cond = {}
            for k, v in self.when.items():
                values = tuple(v) if isinstance(v, (list, tuple)) else (v,)
                if not isinstance(k, str) or not values:
                    raise ConfigError(f"{at}.when.{k}: expected SECTION.KEY: a value or a non-empty list of values")
                cond[k] = values
            object.__setattr__(self, "when", cond)
        if self.type == "categorical":
            if not self.choices:
                raise ConfigError(f"{at}.choices must be a non-empty list")
            return
        for name in ("low", "high"):
            if getattr(self, name) is None:
                raise ConfigError(f"{at}.{name} must be a number, got None")
        assert self.low is not None and self.high is not None
        if not self.low < self.high:
            raise ConfigError(f"{at}: low ({self.low}) must be < high ({self.high})")
        if self.type == "log_float" and self.low <= 0:
            raise ConfigError(f"{at}.low must be > 0 for a log_float, got {self.low}")
        check(self.step is None or self.step > 0, f"{at}.step", self.step, "a number > 0")

    def is_active(self, values: dict[str, Any]) -> bool:
        """Whether this dimension is sampled, given the values sampled so far (``values``, by key)."""
        return all(k in values and values[k] in allowed for k, allowed in (self.when or {}).items())


@dataclass(frozen=True)
class SearchSpec:
    """An Optuna search: space, budget (``n_trials`` and/or ``timeout`` seconds), sampler, pruner."""

    space: tuple[SearchParam, ...]
    n_trials: int | None = None
    timeout: float | None = None
    sampler: str = "tpe"
    pruner: str = "none"
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.space:
            raise ConfigError("search.space must be a non-empty mapping of SECTION.KEY -> {type: ...}")
        if self.n_trials is None and self.timeout is None:
            raise ConfigError("search needs a budget: n_trials and/or timeout (seconds)")
        check(self.n_trials is None or self.n_trials >= 1, "search.n_trials", self.n_trials, "an integer >= 1")
        check(self.timeout is None or self.timeout > 0, "search.timeout", self.timeout, "seconds > 0")
        check(self.sampler in SAMPLERS, "search.sampler", self.sampler, ", ".join(SAMPLERS))
        if self.sampler == "grid" and any(p.type != "categorical" and p.step is None for p in self.space):
            raise ConfigError("search.sampler grid needs categorical parameters or a step on every numeric one")
        check(self.pruner in PRUNERS, "search.pruner", self.pruner, ", ".join(PRUNERS))
        self._check_conditions()

    def _check_conditions(self) -> None:
        """Each ``when`` names another categorical dimension and some of its choices; no cycles."""
        by_key = {p.key: p for p in self.space}
        for p in self.space:
            for k, values in (p.when or {}).items():
                at = f"search.space.{p.key}.when.{k}"
                parent = by_key.get(k)
                if k == p.key or parent is None or parent.type != "categorical":
                    others = [q.key for q in self.space if q.type == "categorical" and q.key != p.key]
                    raise ConfigError(f"bad condition {at}: a dimension can depend only on another categorical "
                                      f"dimension of search.space; valid: {', '.join(others) or 'none in this space'}")
                bad = [v for v in values if v not in parent.choices]
                if bad:
                    raise ConfigError(f"bad value for {at}: {bad[0]!r}; valid: "
                                      f"{', '.join(str(c) for c in parent.choices)}")
        if any(p.when for p in self.space) and self.sampler == "grid":
            raise ConfigError("search.sampler grid cannot use conditional dimensions (when:); use tpe or random")
        self.ordered()  # raises on a cycle

    def ordered(self) -> tuple[SearchParam, ...]:
        """The space with every conditional dimension after the dimensions it depends on (else spec order)."""
        done: list[SearchParam] = []
        left = list(self.space)
        while left:
            ready = [p for p in left if all(k in {q.key for q in done} for k in (p.when or {}))]
            if not ready:
                raise ConfigError(f"search.space: the conditions (when:) of {', '.join(p.key for p in left)} "
                                  "depend on each other in a cycle")
            done.append(ready[0])
            left.remove(ready[0])
        return tuple(done)

    def sample(self, suggest: Any) -> dict[str, Any]:
        """One point: ``suggest(param)`` for each active dimension in dependency order; inactive ones are left out."""
        values: dict[str, Any] = {}
        for p in self.ordered():
            if p.is_active(values):
                values[p.key] = suggest(p)
        return values

    @staticmethod
    def parse(raw: Any) -> SearchSpec:
        if not isinstance(raw, dict):
            raise ConfigError("search must be a mapping with space, n_trials/timeout, sampler, pruner")
        space = raw.get("space")
        if not isinstance(space, dict) or not space:
            raise ConfigError("search.space must be a non-empty mapping of SECTION.KEY -> {type: ...}")
        params = []
        for key, p in space.items():
            if not isinstance(p, dict):
                raise ConfigError(f"search.space.{key} must be a mapping with type and low/high or choices")
            params.append(build(SearchParam, {**p, "key": str(key)}, f"search.space.{key}"))
        values = {**raw, "space": tuple(params)}
        if "pruner" in values:
            values["pruner"] = str(values["pruner"]).lower()
        return build(SearchSpec, values, "search")  # type: ignore[no-any-return]


@dataclass(frozen=True)
class GridSpec:
    """Named ``variants`` (override sets) times the product of ``sweep`` lists."""

    variants: dict[str, Any] | None = None
    sweep: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.variants is not None and not isinstance(self.variants, dict):
            raise ConfigError("grid.variants must map variant names to override sets")
        if self.sweep is not None and not isinstance(self.sweep, dict):
            raise ConfigError("grid.sweep must map SECTION.KEY to a list of values")

    def points(self) -> dict[str, Overrides]:
        return expand_grid(self.variants, self.sweep)


@dataclass(frozen=True)
class StudySpec:
    """A validated study spec; its fields are the YAML keys (``source``: where it came from, for messages)."""

    name: str
    methods: tuple[str, ...]
    datasets: tuple[str, ...]
    seeds: tuple[int, ...] = (0, 1, 2)
    description: str = ""
    protocol: str = "val"
    sim: str | None = None  # simulated preset (e.g. tiny) or None for real data
    sim_seed: int = 0
    # Seeds of the simulated data, a unit dimension beside the training seeds (default: (sim_seed,)).
    data_seeds: tuple[int, ...] | None = None
    data_root: str | None = None
    base: Overrides = field(default_factory=dict)
    per_method: dict[str, Overrides] = field(default_factory=dict)  # after base, for one method only
    grid: GridSpec | None = None
    search: SearchSpec | None = None
    table: str | None = None  # main | ablation: how `ablate` prints its table (None: main for >1 method)
    # The variant an ablation / sweep table compares every row with (None: the grid's first variant).
    reference: str | None = None
    # Worker resources for `ablate --launcher slurm` (zsl_bench.launcher.SlurmOptions fields; flags win).
    slurm: dict[str, Any] = field(default_factory=dict)
    source: str = ""

    def __post_init__(self) -> None:
        w = _where(self.source)
        if not self.name.strip() or any(c in self.name for c in "/\\ |"):
            raise ConfigError(f"study key 'name'{w} must be a non-empty string without spaces, '/', '|'")
        if not self.methods:
            raise ConfigError(f"study key 'methods'{w} must be a non-empty list of method names (or \"all\")")
        if not self.datasets:
            raise ConfigError(f"study key 'datasets'{w} must be \"all\" or a non-empty list of names")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"study key 'seeds'{w} must be a non-empty list of distinct integers")
        if self.protocol not in PROTOCOLS:
            raise ConfigError(f"bad value for study key 'protocol'{w}: {self.protocol!r}; "
                              f"valid: {', '.join(PROTOCOLS)}")
        if self.sim is not None and not self.sim:
            raise ConfigError(f"study key 'sim'{w} must be a preset name (e.g. tiny) or null for real data")
        for m in self.per_method:
            if m not in self.methods:
                raise ConfigError(f"per_method.{m}{w}: not a method of this study; valid: {', '.join(self.methods)}")
        if self.grid is not None and self.search is not None:
            raise ConfigError(f"study{w} has both 'grid' and 'search'; use one")
        if self.search is not None:
            if len(self.methods) != 1:
                raise ConfigError(f"study key 'methods'{w}: a search tunes exactly one method, "
                                  f"got {len(self.methods)}")
            if self.protocol != "val":
                raise ConfigError(f"study key 'protocol'{w}: a search selects on validation; use protocol: val")
        else:
            try:
                _ = self.variants
            except ConfigError as exc:
                raise ConfigError(f"{exc}{w}") from None
        self._check_data_seeds(w)
        self._check_reference(w)
        if self.table is None:
            object.__setattr__(self, "table", "main" if len(self.methods) > 1 else "ablation")
        if self.table not in TABLES:
            raise ConfigError(f"bad value for study key 'table'{w}: {self.table!r}; valid: {', '.join(TABLES)}")

    def _check_data_seeds(self, w: str) -> None:
        if self.data_seeds is None:
            object.__setattr__(self, "data_seeds", (self.sim_seed,))
        seeds = self.data_seeds
        assert seeds is not None
        if not seeds or len(set(seeds)) != len(seeds) or any(s < 0 for s in seeds):
            raise ConfigError(f"study key 'data_seeds'{w} must be a non-empty list of distinct integers >= 0")
        if len(seeds) > 1 and self.search is not None:
            raise ConfigError(f"study key 'data_seeds'{w}: a search runs on one data seed; give one (or use a grid)")

    def check_data(self) -> None:
        """Several data seeds need simulated data. Checked when the study is run, not when the spec is
        read: a spec with ``sim: null`` is run on simulated data with ``--sim``."""
        n = len(self.data_seeds or ())
        if n > 1 and self.sim is None:
            raise ConfigError(f"study key 'data_seeds'{_where(self.source)}: {n} data seeds need simulated data "
                              "(sim: PRESET in the spec, or --sim); real data has one draw, so give one data seed")

    def _check_reference(self, w: str) -> None:
        if self.search is not None:
            if self.reference is not None:
                raise ConfigError(f"study key 'reference'{w}: a search has no variants to compare; remove it")
            return
        named = list((self.grid.variants or {}) if self.grid is not None else {})
        points = list(self.variants)
        valid = list(dict.fromkeys(named + points))
        if self.reference is None:
            object.__setattr__(self, "reference", valid[0])
        elif self.reference not in valid:
            raise ConfigError(f"bad value for study key 'reference'{w}: {self.reference!r}; valid: {', '.join(valid)}")

    @functools.cached_property
    def variants(self) -> dict[str, Overrides]:
        """Grid points by name (``{"default": {}}`` without a grid; ``{}`` for a search)."""
        if self.search is not None:
            return {}
        return (self.grid or GridSpec()).points()

    @property
    def is_search(self) -> bool:
        return self.search is not None

    def base_for(self, method: str) -> Overrides:
        """``base`` with ``per_method[method]`` on top: what every unit of ``method`` starts from."""
        return merge(self.base, self.per_method.get(method, {}))


SPEC_KEYS = tuple(f.name for f in dataclasses.fields(StudySpec) if f.name != "source")


def parse_spec(raw: Any, source: str = "") -> StudySpec:
    """Validate a study spec mapping (parsed YAML); every error names the offending key."""
    w = _where(source)
    if not isinstance(raw, dict):
        raise ConfigError(f"study spec{w} must be a mapping with name, methods, datasets, seeds, ...")
    unknown = sorted(set(raw) - set(SPEC_KEYS), key=str)
    if unknown:
        raise ConfigError(f"unknown study key {unknown[0]!r}{w}; valid: {', '.join(SPEC_KEYS)}")
    if not isinstance(raw.get("name"), str):
        raise ConfigError(f"study key 'name'{w} must be a non-empty string without spaces, '/', '|'")
    values = {k: v for k, v in raw.items() if v is not None}  # null: the field's default
    values["methods"] = _resolve_methods(raw.get("methods"), source)
    values["datasets"] = _resolve_datasets(raw.get("datasets", "all"), source)
    seeds = raw.get("seeds", [0, 1, 2])
    values["seeds"] = [seeds] if isinstance(seeds, int) and not isinstance(seeds, bool) else seeds
    if not isinstance(values["seeds"], list) or any(isinstance(s, bool) for s in values["seeds"]):
        raise ConfigError(f"study key 'seeds'{w} must be a non-empty list of distinct integers")
    if raw.get("data_seeds") is not None:
        ds = raw["data_seeds"]
        values["data_seeds"] = [ds] if isinstance(ds, int) and not isinstance(ds, bool) else ds
        if not isinstance(values["data_seeds"], list) or any(isinstance(s, bool) for s in values["data_seeds"]):
            raise ConfigError(f"study key 'data_seeds'{w} must be a non-empty list of distinct integers >= 0")
    if not isinstance(raw.get("reference", ""), (str, type(None))):
        raise ConfigError(f"study key 'reference'{w} must be the name of a grid variant")
    if not isinstance(raw.get("data_root", ""), (str, type(None))):
        raise ConfigError(f"study key 'data_root'{w} must be a path or null")
    if not isinstance(raw.get("sim", ""), (str, type(None))):
        raise ConfigError(f"study key 'sim'{w} must be a preset name (e.g. tiny) or null for real data")
    values["base"] = nest(raw.get("base") or {}, "base")
    raw_pm = raw.get("per_method") or {}
    if not isinstance(raw_pm, dict):
        raise ConfigError(f"study key 'per_method'{w} must map method names to override sets")
    per_method = {}
    for m, ov in raw_pm.items():
        if ov is not None and not isinstance(ov, dict):
            raise ConfigError(f"per_method.{m}{w} must be a mapping of SECTION.KEY overrides")
        per_method[m] = nest(ov or {}, f"per_method.{m}")
    values["per_method"] = per_method
    if raw.get("slurm") is not None:
        from ..launcher import check_spec_slurm

        values["slurm"] = check_spec_slurm(raw["slurm"], w)
    try:
        if raw.get("grid") is not None:
            if not isinstance(raw["grid"], dict):
                raise ConfigError("study key 'grid' must be a mapping with 'variants' and/or 'sweep'")
            if set(raw["grid"]) <= {"variants", "sweep"} and not raw["grid"].get("variants") \
                    and not raw["grid"].get("sweep"):
                # An empty grid would silently run one default unit: almost surely a spec mistake.
                raise ConfigError("study key 'grid' is empty: give it 'variants' (named override sets) "
                                  "and/or 'sweep' (SECTION.KEY: [values]), or remove it to run the default "
                                  "config once")
            values["grid"] = build(GridSpec, raw["grid"], "grid")
        if raw.get("search") is not None:
            values["search"] = SearchSpec.parse(raw["search"])
    except ConfigError as exc:
        raise ConfigError(f"{exc}{w}") from None
    return build(StudySpec, {**values, "source": source}, "study")  # type: ignore[no-any-return]


def _resolve_methods(methods: Any, source: str) -> list[str]:
    """``all`` expands to every registered method; unknown names fail early with suggestions."""
    from ..registry import METHODS

    if isinstance(methods, str):
        methods = [methods]
    if not isinstance(methods, list) or not methods or not all(isinstance(m, str) for m in methods):
        raise ConfigError(f"study key 'methods'{_where(source)} must be a non-empty list of method names "
                          "(or \"all\")")
    if methods == ["all"]:
        return METHODS.names()
    for m in methods:
        try:
            METHODS.get(m)
        except ZSLError as exc:
            raise ConfigError(f"study key 'methods'{_where(source)}: {exc}") from None
    return [m.lower() for m in methods]


def _resolve_datasets(datasets: Any, source: str) -> list[str]:
    from ..data.datasets import parse_dataset_list

    w = _where(source)
    if isinstance(datasets, list):
        if not datasets or not all(isinstance(d, str) for d in datasets):
            raise ConfigError(f"study key 'datasets'{w} must be \"all\" or a non-empty list of names")
        datasets = ",".join(datasets)
    if not isinstance(datasets, str):
        raise ConfigError(f"study key 'datasets'{w} must be \"all\" or a list like [cub, sun]")
    try:
        return list(parse_dataset_list(datasets))
    except ConfigError:
        raise
    except ZSLError as exc:  # unknown names
        raise ConfigError(f"study key 'datasets'{w}: {exc}") from None


def check_configs(spec: StudySpec) -> None:
    """Resolve every (method, grid point) config once so a bad key fails before hours of training."""
    from ..config import resolve
    from ..registry import METHODS

    points = dict(spec.variants) or {"default": {}}
    if spec.search is not None:
        first = spec.search.sample(lambda p: p.choices[0] if p.type == "categorical" else
                                   (int(p.low) if p.type == "int" else p.low))
        points = {"search space": nest(first, "search.space")}
    for m in spec.methods:
        cls = METHODS.get(m)
        for name, ov in points.items():
            try:
                resolve(cls, spec.datasets[0], merge(spec.base_for(m), ov), simulated=spec.sim is not None)
            except ConfigError as exc:
                raise ConfigError(f"{exc} (study {spec.name}, method {m}, variant {name!r}"
                                  f"{_where(spec.source)})") from None


def sim_settings(spec: StudySpec) -> list[dict[str, Any]]:
    """The distinct generator settings (``sim`` sections, as ``SimConfig.overrides()``) of the
    study's grid points, in grid order; ``[{}]`` when none sets one (the preset as it is)."""
    from ..config import build_sim

    out: dict[str, dict[str, Any]] = {}
    for m in spec.methods:
        for ov in (dict(spec.variants) or {"default": {}}).values():
            sim = build_sim(merge(spec.base_for(m), ov).get("sim")).overrides()
            out.setdefault(json.dumps(sim, sort_keys=True, default=str), sim)
    return list(out.values())


def benchmarks_dir() -> Path:
    """Where the shipped study specs live.

    Order: ``$ZSL_BENCH_BENCHMARKS``, ``./benchmarks`` (a checkout), ``benchmarks/`` beside the
    package (editable installs and source trees keep it next to ``zsl_bench/``), then the copy a
    non-editable install ships as package data (``zsl_bench/specs/``, written by setup.py).
    """
    env = os.environ.get(BENCHMARKS_DIR_ENV)
    candidates = [Path(env)] if env else []
    here = Path(__file__).resolve()
    candidates += [Path.cwd() / "benchmarks", here.parents[2] / "benchmarks", here.parents[1] / "specs"]
    for c in candidates:
        if c.is_dir():
            return c
    return candidates[-1]


def locate_spec(path: str | os.PathLike[str] | None, default: str = "msdnpp_ablation.yaml") -> Path:
    """Resolve a spec path: as given, else by name under :func:`benchmarks_dir`."""
    if path is None:
        path = default
    p = Path(path)
    if p.is_file():
        return p
    for cand in (benchmarks_dir() / p.name, benchmarks_dir() / f"{p.name}.yaml"):
        if cand.is_file():
            return cand
    shipped = sorted(q.name for q in benchmarks_dir().glob("*.yaml"))
    raise ConfigError(f"study spec not found: {path}; shipped specs: {', '.join(shipped) or 'none found'}")


def load_spec(path: str | os.PathLike[str] | None) -> StudySpec:
    p = locate_spec(path)
    try:
        raw = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"study spec {p} is not valid YAML: {str(exc).splitlines()[0]}") from None
    return parse_spec(raw, str(p))


# ---------------------------------------------------------------- units


@dataclass(frozen=True)
class Unit:
    """One run of a study: a :class:`RunSpec` in study ``study`` and phase ``phase``.

    Its ``key`` hashes the spec's view of the run (not the code's presets); the run's rows carry
    ``run_id`` = ``<phase>-<key>``, set on ``spec`` here. Search trials select only.
    """

    study: str
    spec: RunSpec
    phase: str = "grid"  # grid | trial | final
    # Name the data seed in descriptions (studies over several data seeds); not part of the key.
    show_data_seed: bool = field(default=False, compare=False)

    def __post_init__(self) -> None:
        assert self.phase in PHASES, self.phase
        object.__setattr__(self, "spec", dataclasses.replace(self.spec, run_id=f"{self.phase}-{self.key}",
                                                             select_only=self.phase == "trial"))

    @property
    def key(self) -> str:
        # This JSON is what every stored unit key (Optuna storage, results, MLflow tags) hashes: never change it.
        s = self.spec
        blob = json.dumps([self.study, s.method, s.dataset, s.seed, s.variant, s.overrides, s.protocol,
                           s.sim_preset, s.sim_seed, self.phase], sort_keys=True, default=str)
        return hashlib.sha1(blob.encode()).hexdigest()[:16]

    @property
    def run_id(self) -> str:
        return f"{self.phase}-{self.key}"

    @property
    def desc(self) -> str:
        desc = f"{self.spec.method}/{self.spec.variant}/{self.spec.dataset}/seed {self.spec.seed}"
        return desc + (f"/data seed {self.spec.sim_seed}" if self.show_data_seed else "")

    def to_json(self) -> str:
        """The flat JSON stored on a unit's trial (the format of every existing storage)."""
        s = self.spec
        return json.dumps({"study": self.study, "method": s.method, "dataset": s.dataset, "seed": s.seed,
                           "variant": s.variant, "overrides": s.overrides, "protocol": s.protocol,
                           "sim_preset": s.sim_preset, "sim_seed": s.sim_seed, "data_root": s.data_root,
                           "phase": self.phase}, sort_keys=True, default=str)

    @staticmethod
    def from_json(text: str) -> Unit:
        d = json.loads(text)
        study, phase = d.pop("study"), d.pop("phase")
        return Unit(study, RunSpec(**d), phase)

    def requested_digest(self) -> str:
        """Digest of the config the code resolves for this unit now (presets < overrides), as rows record it."""
        from ..runner import resolve_config

        return resolve_config(self.spec).digest()


def make_unit(spec: StudySpec, method: str, dataset: str, seed: int, variant: str, overrides: Overrides,
              phase: str = "grid", data_seed: int | None = None) -> Unit:
    """A unit of ``spec`` (its protocol and data) with these run fields; ``data_seed`` default: ``spec.sim_seed``."""
    return Unit(spec.name, RunSpec(method=method, dataset=dataset, seed=seed, variant=variant, overrides=overrides,
                                   protocol=spec.protocol, sim_preset=spec.sim,
                                   sim_seed=spec.sim_seed if data_seed is None else data_seed,
                                   data_root=spec.data_root), phase,
                show_data_seed=len(spec.data_seeds or ()) > 1)


def grid_units(spec: StudySpec, dataset: str) -> list[Unit]:
    """All units of a grid study on ``dataset``: methods x grid points x seeds x data seeds, in a fixed order."""
    variants = spec.variants or {"default": {}}
    data_seeds = spec.data_seeds or (spec.sim_seed,)
    return [make_unit(spec, m, dataset, s, v, merge(spec.base_for(m), ov), data_seed=d)
            for m in spec.methods for v, ov in variants.items() for s in spec.seeds for d in data_seeds]
