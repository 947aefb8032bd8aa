"""Studies: grids of ablation variants and Optuna searches, executed exactly once per unit of work.

A study spec is YAML data (see ``benchmarks/*.yaml``)::

    name: msdnpp_ablation
    methods: [msdnpp]
    datasets: [cub, sun]          # or "all"
    seeds: [0, 1, 2]
    protocol: val                 # val | test-oracle
    sim: null                     # simulated preset (e.g. tiny) or null for real data
    base: {method: {...}, train: {...}, eval: {...}}
    per_method:                   # optional: overrides for one method only (after base)
      fclswgan: {method.gan_epochs: 20}
    grid:                         # either grid ...
      variants: {full: {}, no_causal: {method.intervention: none}}
      sweep: {method.lambda_eff: [0.1, 1.0]}
    search:                       # ... or search
      space: {method.lambda_eff: {type: log_float, low: 0.01, high: 10}}
      n_trials: 20
      sampler: tpe                # tpe | grid | random
      pruner: median              # none | median | successive_halving

Execution. Every unit (grid point x dataset x seed, or search trial x dataset) is an Optuna trial in
real storage, one Optuna study per (spec, dataset). Grid units are enqueued up front as WAITING
trials carrying a deterministic unit key; any number of workers running the same command pull
WAITING trials with an atomic WAITING -> RUNNING transition, so each unit runs once. A worker keeps
its trial alive with heartbeats; a RUNNING trial of a dead worker goes stale, is failed by
``fail_stale_trials`` and its unit is enqueued again. Should two workers enqueue the same missing
unit at once, the unit belongs to its lowest-numbered live trial and the other copy is dropped.
Rows are written per finished unit (atomically) and also stored on the trial, so a rerun after
``kill -9`` completes the study without redoing finished units, and tables derive from the
deduplicated set of finished units.

A search trial runs phase 1 of the ``val`` protocol only (``RunSpec.select_only``): it trains on
``val_train``, scores validation and stops, so its rows (``trials.csv``) hold ``val_*`` numbers and
no test numbers. The best trial's configuration is then retrained on ``trainval`` with every seed
and tested once (phase ``final``, ``results.csv``).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import itertools
import json
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .config import SECTIONS
from .errors import ConfigError, TrainingError
from .fileio import atomic_path
from .protocol import PROTOCOLS
from .results import COLUMNS, append_rows, read_rows, remove_runs

log = logging.getLogger(__name__)

SAMPLERS = ("tpe", "grid", "random")
PRUNERS = ("none", "median", "successive_halving")
PARAM_TYPES = ("float", "log_float", "int", "categorical")
SPEC_KEYS = ("name", "description", "methods", "datasets", "seeds", "protocol", "sim", "sim_seed",
             "data_root", "base", "per_method", "grid", "search", "table")
BENCHMARKS_DIR_ENV = "ZSL_BENCH_BENCHMARKS"

# Heartbeats keep a RUNNING trial alive; after GRACE_S without one, a rerun or another worker
# reclaims its unit. Short enough that a resumed single-worker study waits only a few seconds.
HEARTBEAT_S = int(os.environ.get("ZSL_BENCH_HEARTBEAT_S", "2"))
GRACE_S = int(os.environ.get("ZSL_BENCH_GRACE_S", "8"))
POLL_S = 1.0


# ---------------------------------------------------------------- spec


@dataclass(frozen=True)
class SearchParam:
    """One dimension of an Optuna search space over a dotted config key."""

    key: str  # "method.lambda_eff"
    type: str  # float | log_float | int | categorical
    low: float | None = None
    high: float | None = None
    step: float | None = None
    choices: tuple[Any, ...] = ()


@dataclass(frozen=True)
class SearchSpec:
    space: tuple[SearchParam, ...]
    n_trials: int | None = None
    timeout: float | None = None
    sampler: str = "tpe"
    pruner: str = "none"
    seed: int = 0


@dataclass(frozen=True)
class StudySpec:
    """A validated study spec. ``variants`` maps a grid point's name to its nested overrides."""

    name: str
    methods: tuple[str, ...]
    datasets: tuple[str, ...]
    seeds: tuple[int, ...]
    protocol: str = "val"
    sim: str | None = None
    sim_seed: int = 0
    data_root: str | None = None
    base: dict[str, dict[str, Any]] = field(default_factory=dict)
    per_method: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    variants: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    search: SearchSpec | None = None
    table: str = "ablation"  # main | ablation: how `ablate` prints its table
    source: str = ""  # where the spec came from, for messages

    @property
    def is_search(self) -> bool:
        return self.search is not None

    def base_for(self, method: str) -> dict[str, dict[str, Any]]:
        """``base`` with ``per_method[method]`` on top: what every unit of ``method`` starts from."""
        return merge_overrides(self.base, self.per_method.get(method, {}))


def _where(source: str) -> str:
    return f" in {source}" if source else ""


def nest(overrides: dict[str, Any] | None, where: str) -> dict[str, dict[str, Any]]:
    """Turn ``{"method.x": 1, "train": {"lr": 2}}`` into ``{"method": {"x": 1}, "train": {"lr": 2}}``."""
    out: dict[str, dict[str, Any]] = {}
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


def merge_overrides(*layers: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for layer in layers:
        for section, values in layer.items():
            out.setdefault(section, {}).update(values)
    return out


def _fmt_value(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def expand_grid(variants: dict[str, Any] | None, sweep: dict[str, list[Any]] | None,
                where: str = "grid") -> dict[str, dict[str, dict[str, Any]]]:
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
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for vname, vover in base_points.items():
        for combo in itertools.product(*(sweep[k] for k in keys)):
            parts = [f"{k}={_fmt_value(v)}" for k, v in zip(keys, combo)]
            name = ",".join(([vname] if vname else []) + parts)
            out[name] = merge_overrides(vover, nest(dict(zip(keys, combo)), f"{where}.sweep"))
    return out


def _parse_search(raw: Any, where: str) -> SearchSpec:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a mapping with space, n_trials/timeout, sampler, pruner")
    unknown = sorted(set(raw) - {"space", "n_trials", "timeout", "sampler", "pruner", "seed"})
    if unknown:
        raise ConfigError(f"unknown key {where}.{unknown[0]}; valid: space, n_trials, timeout, sampler, "
                          "pruner, seed")
    space_raw = raw.get("space")
    if not isinstance(space_raw, dict) or not space_raw:
        raise ConfigError(f"{where}.space must be a non-empty mapping of SECTION.KEY -> {{type: ...}}")
    params = []
    for key, p in space_raw.items():
        pw = f"{where}.space.{key}"
        nest({key: None}, pw)
        if "." not in str(key):
            raise ConfigError(f"bad search key {key!r} at {pw}; expected a dotted SECTION.KEY")
        if not isinstance(p, dict):
            raise ConfigError(f"{pw} must be a mapping with type and low/high or choices")
        ptype = p.get("type")
        if ptype not in PARAM_TYPES:
            raise ConfigError(f"bad value for {pw}.type: {ptype!r}; valid: {', '.join(PARAM_TYPES)}")
        if ptype == "categorical":
            choices = p.get("choices")
            if not isinstance(choices, list) or not choices:
                raise ConfigError(f"{pw}.choices must be a non-empty list")
            params.append(SearchParam(str(key), ptype, choices=tuple(choices)))
            continue
        for name in ("low", "high"):
            v = p.get(name)
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ConfigError(f"{pw}.{name} must be a number, got {v!r}")
        low, high = float(p["low"]), float(p["high"])
        if not low < high:
            raise ConfigError(f"{pw}: low ({low}) must be < high ({high})")
        if ptype == "log_float" and low <= 0:
            raise ConfigError(f"{pw}.low must be > 0 for a log_float, got {low}")
        step = p.get("step")
        if step is not None and (isinstance(step, bool) or not isinstance(step, (int, float)) or step <= 0):
            raise ConfigError(f"{pw}.step must be a number > 0, got {step!r}")
        params.append(SearchParam(str(key), ptype, float(low), float(high), step))
    n_trials, timeout = raw.get("n_trials"), raw.get("timeout")
    if n_trials is None and timeout is None:
        raise ConfigError(f"{where} needs a budget: n_trials and/or timeout (seconds)")
    if n_trials is not None and (isinstance(n_trials, bool) or not isinstance(n_trials, int) or n_trials < 1):
        raise ConfigError(f"bad value for {where}.n_trials: {n_trials!r}; valid: an integer >= 1")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
                                or timeout <= 0):
        raise ConfigError(f"bad value for {where}.timeout: {timeout!r}; valid: seconds > 0")
    sampler = raw.get("sampler", "tpe")
    if sampler not in SAMPLERS:
        raise ConfigError(f"bad value for {where}.sampler: {sampler!r}; valid: {', '.join(SAMPLERS)}")
    if sampler == "grid" and any(p.type != "categorical" and p.step is None for p in params):
        raise ConfigError(f"{where}.sampler grid needs categorical parameters or a step on every numeric one")
    pruner = str(raw.get("pruner", "none")).lower()
    if pruner not in PRUNERS:
        raise ConfigError(f"bad value for {where}.pruner: {raw.get('pruner')!r}; valid: {', '.join(PRUNERS)}")
    seed = raw.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"bad value for {where}.seed: {seed!r}; valid: an integer")
    return SearchSpec(tuple(params), n_trials, None if timeout is None else float(timeout), sampler, pruner,
                      seed)


def parse_spec(raw: Any, source: str = "") -> StudySpec:
    """Validate a study spec mapping; every error names the offending key."""
    w = _where(source)
    if not isinstance(raw, dict):
        raise ConfigError(f"study spec{w} must be a mapping with name, methods, datasets, seeds, ...")
    unknown = sorted(set(raw) - set(SPEC_KEYS))
    if unknown:
        raise ConfigError(f"unknown study key {unknown[0]!r}{w}; valid: {', '.join(SPEC_KEYS)}")
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip() or any(c in name for c in "/\\ |"):
        raise ConfigError(f"study key 'name'{w} must be a non-empty string without spaces, '/', '|'")

    methods = raw.get("methods")
    if isinstance(methods, str):
        methods = [methods]
    if not isinstance(methods, list) or not methods or not all(isinstance(m, str) for m in methods):
        raise ConfigError(f"study key 'methods'{w} must be a non-empty list of method names (or \"all\")")
    methods = _resolve_methods(methods, source)

    datasets = raw.get("datasets", "all")
    if isinstance(datasets, list):
        if not all(isinstance(d, str) for d in datasets) or not datasets:
            raise ConfigError(f"study key 'datasets'{w} must be \"all\" or a non-empty list of names")
        datasets = ",".join(datasets)
    if not isinstance(datasets, str):
        raise ConfigError(f"study key 'datasets'{w} must be \"all\" or a list like [cub, sun]")
    from .data.datasets import parse_dataset_list

    try:
        ds = tuple(parse_dataset_list(datasets))
    except ConfigError:
        raise
    except Exception as exc:  # parse_dataset_list raises ZSLError on unknown names
        raise ConfigError(f"study key 'datasets'{w}: {exc}") from None

    seeds = raw.get("seeds", [0, 1, 2])
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        seeds = [seeds]
    if (not isinstance(seeds, list) or not seeds
            or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)
            or len(set(seeds)) != len(seeds)):
        raise ConfigError(f"study key 'seeds'{w} must be a non-empty list of distinct integers")

    protocol = raw.get("protocol", "val")
    if protocol not in PROTOCOLS:
        raise ConfigError(f"bad value for study key 'protocol'{w}: {protocol!r}; valid: val, test-oracle")
    sim = raw.get("sim")
    if sim is not None and (not isinstance(sim, str) or not sim):
        raise ConfigError(f"study key 'sim'{w} must be a preset name (e.g. tiny) or null for real data")
    sim_seed = raw.get("sim_seed", 0)
    if isinstance(sim_seed, bool) or not isinstance(sim_seed, int):
        raise ConfigError(f"study key 'sim_seed'{w} must be an integer")
    data_root = raw.get("data_root")
    if data_root is not None and not isinstance(data_root, str):
        raise ConfigError(f"study key 'data_root'{w} must be a path or null")
    base = nest(raw.get("base") or {}, "base")
    raw_pm = raw.get("per_method") or {}
    if not isinstance(raw_pm, dict):
        raise ConfigError(f"study key 'per_method'{w} must map method names to override sets")
    per_method: dict[str, dict[str, dict[str, Any]]] = {}
    for m, ov in raw_pm.items():
        if m not in methods:
            raise ConfigError(f"per_method.{m}{w}: not a method of this study; valid: {', '.join(methods)}")
        if ov is not None and not isinstance(ov, dict):
            raise ConfigError(f"per_method.{m}{w} must be a mapping of SECTION.KEY overrides")
        per_method[m] = nest(ov or {}, f"per_method.{m}")

    grid, search = raw.get("grid"), raw.get("search")
    if grid is not None and search is not None:
        raise ConfigError(f"study{w} has both 'grid' and 'search'; use one")
    search_spec = None
    if search is not None:
        if len(methods) != 1:
            raise ConfigError(f"study key 'methods'{w}: a search tunes exactly one method, got {len(methods)}")
        if protocol != "val":
            raise ConfigError(f"study key 'protocol'{w}: a search selects on validation; use protocol: val")
        search_spec = _parse_search(search, "search")
        variants: dict[str, dict[str, dict[str, Any]]] = {}
    else:
        if grid is None:
            grid = {}
        if not isinstance(grid, dict):
            raise ConfigError(f"study key 'grid'{w} must be a mapping with 'variants' and/or 'sweep'")
        bad = sorted(set(grid) - {"variants", "sweep"})
        if bad:
            raise ConfigError(f"unknown key grid.{bad[0]}{w}; valid: variants, sweep")
        gv, gs = grid.get("variants"), grid.get("sweep")
        if gv is not None and not isinstance(gv, dict):
            raise ConfigError(f"grid.variants{w} must map variant names to override sets")
        if gs is not None and not isinstance(gs, dict):
            raise ConfigError(f"grid.sweep{w} must map SECTION.KEY to a list of values")
        try:
            variants = expand_grid(gv, gs)
        except ConfigError as exc:
            raise ConfigError(f"{exc}{w}") from None
    table = raw.get("table", "main" if len(methods) > 1 else "ablation")
    if table not in ("main", "ablation"):
        raise ConfigError(f"bad value for study key 'table'{w}: {table!r}; valid: main, ablation")
    return StudySpec(name=name, methods=tuple(methods), datasets=ds, seeds=tuple(seeds), protocol=protocol,
                     sim=sim, sim_seed=sim_seed, data_root=data_root, base=base, per_method=per_method,
                     variants=variants,
                     search=search_spec, table=table, source=source)


def _resolve_methods(methods: list[str], source: str) -> list[str]:
    """``all`` expands to every registered method; unknown names fail early with suggestions."""
    from .registry import METHODS, load_all

    with contextlib.suppress(Exception):  # the registry may be partly built while others work on it
        load_all()
    known = METHODS.names()
    if methods == ["all"]:
        if not known:
            raise ConfigError(f"study key 'methods'{_where(source)}: 'all' but no method is registered")
        return known
    if known:
        for m in methods:
            try:
                METHODS.get(m)
            except Exception as exc:
                raise ConfigError(f"study key 'methods'{_where(source)}: {exc}") from None
    return [m.lower() for m in methods]


def check_configs(spec: StudySpec) -> None:
    """Resolve every (method, grid point) config once so a bad key fails before hours of training."""
    from .config import resolve
    from .registry import METHODS, load_all

    load_all()
    points = dict(spec.variants) or {"default": {}}
    if spec.search is not None:
        first = {p.key: (p.choices[0] if p.type == "categorical" else
                         (int(p.low) if p.type == "int" else p.low)) for p in spec.search.space}  # type: ignore[arg-type]
        points = {"search space": nest(first, "search.space")}
    for m in spec.methods:
        cls = METHODS.get(m)
        for name, ov in points.items():
            try:
                resolve(cls, spec.datasets[0], merge_overrides(spec.base_for(m), ov))
            except ConfigError as exc:
                raise ConfigError(f"{exc} (study {spec.name}, method {m}, variant {name!r}"
                                  f"{_where(spec.source)})") from None


def benchmarks_dir() -> Path:
    """Where the shipped study specs live.

    Order: ``$ZSL_BENCH_BENCHMARKS``, ``./benchmarks`` (a checkout), then ``benchmarks/`` beside the
    installed package (editable installs and source trees keep it next to ``zsl_bench/``).
    """
    env = os.environ.get(BENCHMARKS_DIR_ENV)
    candidates = [Path(env)] if env else []
    candidates += [Path.cwd() / "benchmarks", Path(__file__).resolve().parents[1] / "benchmarks"]
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
    """One run of the study: carries the fields of ``runner.RunSpec`` plus its deterministic key."""

    study: str
    method: str
    dataset: str
    seed: int
    variant: str
    overrides: dict[str, Any]
    protocol: str
    sim_preset: str | None
    sim_seed: int
    data_root: str | None
    phase: str = "grid"  # grid | trial | final

    @property
    def key(self) -> str:
        blob = json.dumps([self.study, self.method, self.dataset, self.seed, self.variant, self.overrides,
                           self.protocol, self.sim_preset, self.sim_seed, self.phase], sort_keys=True,
                          default=str)
        return hashlib.sha1(blob.encode()).hexdigest()[:16]

    @property
    def run_id(self) -> str:
        return f"{self.phase}-{self.key}"

    def to_json(self) -> str:
        return json.dumps(self.__dict__, sort_keys=True, default=str)

    @staticmethod
    def from_json(text: str) -> Unit:
        return Unit(**json.loads(text))

    def requested_digest(self) -> str:
        """Digest of the config the code resolves for this unit now (presets < overrides), as rows record it."""
        from .runner import resolve_config

        return resolve_config(self.run_spec()).digest()

    def run_spec(self) -> Any:
        from .runner import RunSpec

        # Search trials select only: they train on val_train, score validation and never see test.
        return RunSpec(method=self.method, dataset=self.dataset, seed=self.seed, variant=self.variant,
                       overrides=self.overrides, protocol=self.protocol, sim_preset=self.sim_preset,
                       sim_seed=self.sim_seed, data_root=self.data_root, select_only=self.phase == "trial")


def grid_units(spec: StudySpec, dataset: str) -> list[Unit]:
    """All units of a grid study on ``dataset``: methods x grid points x seeds, in a fixed order."""
    variants = spec.variants or {"default": {}}
    return [Unit(spec.name, m, dataset, s, v, merge_overrides(spec.base_for(m), ov), spec.protocol, spec.sim,
                 spec.sim_seed, spec.data_root)
            for m in spec.methods for v, ov in variants.items() for s in spec.seeds]


# ---------------------------------------------------------------- running one unit

RunFn = Callable[..., Any]
"""``run_fn(unit, *, out_dir, reporter, progress) -> RunResult``-like (metrics, selection, history,
curve, rows, config, wall_time_s). Default: :func:`run_with_runner` (``runner.run_one``)."""


_DATA_CACHE: dict[tuple[Any, ...], Any] = {}


def run_with_runner(unit: Unit, *, out_dir: Path, reporter: Any = None, progress: bool = True) -> Any:
    """Run ``unit`` through ``zsl_bench.runner.run_one``, loading each dataset once per process."""
    from .runner import run_one

    key = (unit.dataset, unit.data_root, unit.sim_preset, unit.sim_seed)
    data = _DATA_CACHE.get(key)
    if data is None:
        try:
            from .data.loader import load_dataset
        except ImportError:  # runner loads data itself
            data = None
        else:
            data = load_dataset(unit.dataset, unit.data_root, sim_preset=unit.sim_preset, sim_seed=unit.sim_seed)
            _DATA_CACHE[key] = data
    return run_one(unit.run_spec(), out_dir=out_dir, reporter=reporter, progress=progress, data=data)


def _config_dict(result: Any) -> dict[str, Any]:
    cfg = getattr(result, "config", None)
    if cfg is None:
        return {}
    if hasattr(cfg, "as_dict"):
        return cfg.as_dict()
    return dict(cfg) if isinstance(cfg, dict) else {}


def result_rows(unit: Unit, result: Any) -> list[dict[str, Any]]:
    """The unit's long-format rows, tagged with its run id and variant (built from metrics if absent)."""
    rows = [dict(r) for r in (getattr(result, "rows", None) or [])]
    if not rows:
        from .results import git_commit, package_versions

        cfg = _config_dict(result)
        metrics = getattr(result, "metrics", {}) or {}
        for metric, value in metrics.items():
            rows.append({
                "method": unit.method, "dataset": unit.dataset,
                "source": "simulated" if unit.sim_preset else "real", "sim_preset": unit.sim_preset or "",
                "data_seed": unit.sim_seed if unit.sim_preset else "", "protocol": unit.protocol,
                "seed": unit.seed, "metric": metric, "value": value, "gamma": metrics.get("gamma", ""),
                "epoch": (getattr(result, "selection", {}) or {}).get("best_epoch", ""),
                "config_hash": hashlib.sha256(json.dumps(cfg, sort_keys=True, default=str).encode())
                .hexdigest()[:12] if cfg else "",
                "config": json.dumps(cfg, sort_keys=True, default=str) if cfg else "",
                "git_commit": git_commit(), "versions": package_versions(),
                "wall_time_s": round(float(getattr(result, "wall_time_s", 0.0) or 0.0), 3),
                "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S"),
            })
    for r in rows:
        r["run_id"] = unit.run_id
        r["variant"] = unit.variant
    return rows


def dedupe_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Keep one row per (run_id, metric): the last written. Row order is otherwise preserved."""
    seen: dict[tuple[str, str], int] = {}
    out: list[dict[str, Any]] = []
    for r in rows:
        k = (str(r.get("run_id", "")), str(r.get("metric", "")))
        if k in seen and k[0]:
            out[seen[k]] = r
        else:
            seen[k] = len(out)
            out.append(r)
    return out


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock shared by the local workers writing into one output dir."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def write_unit_rows(csv_path: Path, rows: list[dict[str, Any]]) -> bool:
    """Append a unit's rows unless its run id is already there. Returns whether rows were written."""
    if not rows:
        return False
    with file_lock(csv_path.with_name(csv_path.name + ".lock")):
        run_ids = {r.get("run_id") for r in read_rows(csv_path)}
        if rows[0]["run_id"] in run_ids:
            return False
        append_rows(csv_path, rows)
    return True


def save_curve(out: Path, unit: Unit, result: Any) -> Path | None:
    """Save the unit's test U-S curve as ``<out>/curves/<run_id>.npz`` (plots regenerate from files)."""
    # Search trials' curves go one level down, so the study's U–S figure shows final runs only.
    path = out / "curves" / ("trials" if unit.phase == "trial" else "") / f"{unit.run_id}.npz"
    return write_curve(path, result, method=unit.method, variant=unit.variant, dataset=unit.dataset,
                       seed=unit.seed, protocol=unit.protocol,
                       source="simulated" if unit.sim_preset else "real")


def write_curve(path: Path, result: Any, **labels: Any) -> Path | None:
    """Write ``result.curve`` (gamma/u/s) and its AUSUC with ``labels`` to ``path`` atomically."""
    import numpy as np

    curve = getattr(result, "curve", None) or {}
    if not all(k in curve for k in ("u", "s")):
        return None
    metrics = getattr(result, "metrics", {}) or {}
    with atomic_path(path) as tmp:
        np.savez(tmp, gamma=np.asarray(curve.get("gamma", [])), u=np.asarray(curve["u"]), s=np.asarray(curve["s"]),
                 ausuc=np.asarray(metrics.get("ausuc", math.nan)), **labels)
    return path


# ---------------------------------------------------------------- Optuna plumbing


def storage_url(out: Path, storage: str | None) -> str:
    return storage or f"sqlite:///{(out / 'optuna.db').resolve()}"


def is_server_storage(url: str) -> bool:
    return not url.startswith("sqlite")


def make_storage(url: str) -> Any:
    import warnings

    import optuna

    # Heartbeats and fail_stale_trials are marked experimental; they are what makes resume safe.
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    # We drive heartbeats ourselves (ask/tell and claimed WAITING trials), not through optimize().
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        # Workers and heartbeat threads share the file: wait on a lock instead of failing at once.
        engine_kwargs = {"connect_args": {"timeout": 60}}
    else:
        engine_kwargs = {"pool_pre_ping": True}
    # Workers starting together on an empty database race to create Optuna's tables; the loser
    # fails on a unique constraint and succeeds on retry, once the tables exist.
    for attempt in range(5):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, heartbeat_interval=HEARTBEAT_S,
                                              grace_period=GRACE_S)
        except Exception as exc:
            if attempt == 4 or not any(w in str(exc) for w in ("UniqueViolation", "already exists", "locked")):
                raise ConfigError(f"cannot open --storage {url}: {str(exc).splitlines()[0]}") from None
            time.sleep(0.5 + attempt)
    raise AssertionError("unreachable")


# (storage url, trial id) -> time.monotonic() when this process first saw it RUNNING without a heartbeat.
_NO_BEAT_SINCE: dict[tuple[str, int], float] = {}


def _fail_stale(storage: Any, study: Any) -> None:
    """Fail RUNNING trials of dead workers so their units can be run again.

    Optuna's ``fail_stale_trials`` covers trials whose last heartbeat is older than GRACE_S, but
    skips a RUNNING trial that never got one. Grid claims beat before they turn RUNNING, yet
    ``study.ask()`` (search trials) makes a trial RUNNING first: a worker killed in between would
    leave it held forever. Such a trial is failed once *this process* has seen it without a beat
    for ``3 * GRACE_S`` (its own monotonic clock: other hosts' clocks and time zones do not matter).
    """
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.storages import fail_stale_trials
    from optuna.trial import TrialState

    fail_stale_trials(study)
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    if not running:
        return
    now, url = time.monotonic(), str(getattr(storage, "url", id(storage)))
    beaten = _trials_with_heartbeat(storage, [t._trial_id for t in running])
    for t in running:
        if t._trial_id in beaten:
            _NO_BEAT_SINCE.pop((url, t._trial_id), None)
            continue
        if now - _NO_BEAT_SINCE.setdefault((url, t._trial_id), now) > 3 * GRACE_S:
            with contextlib.suppress(UpdateFinishedTrialError):
                storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
                log.warning("trial %d of %s was RUNNING with no heartbeat for %ds: failed as stale",
                            t.number, study.study_name, 3 * GRACE_S)
            _NO_BEAT_SINCE.pop((url, t._trial_id), None)


def _trials_with_heartbeat(storage: Any, trial_ids: list[int]) -> set[int]:
    """Which of ``trial_ids`` have a heartbeat row (Optuna has no public query for this)."""
    from optuna.storages._rdb import models

    with storage.scoped_session() as session:
        rows = session.query(models.TrialHeartbeatModel.trial_id).filter(
            models.TrialHeartbeatModel.trial_id.in_(trial_ids)).all()
    return {r[0] for r in rows}


def _supersede(storage: Any, trials: list[tuple[int, str]]) -> None:
    """Turn finished trials to FAIL with a ``superseded`` reason, so their units run again.

    Optuna refuses to change a finished trial through its API; this is the one place that does,
    through the storage's own tables. A FAIL trial without ``failure`` no longer holds its unit
    (see ``_live``), ``collect`` skips it, and the reason stays for the record.
    """
    from optuna.storages._rdb import models
    from optuna.trial import TrialState
    from sqlalchemy.exc import IntegrityError

    attr = models.TrialUserAttributeModel
    for trial_id, reason in trials:
        with storage.scoped_session() as session:
            try:
                if session.query(attr).filter(attr.trial_id == trial_id, attr.key == "superseded").first():
                    continue  # another worker did it a moment ago
                session.query(models.TrialModel).filter(
                    models.TrialModel.trial_id == trial_id,
                    models.TrialModel.state.in_([TrialState.COMPLETE, TrialState.FAIL])).update(
                    {"state": TrialState.FAIL}, synchronize_session=False)
                session.add(attr(trial_id=trial_id, key="superseded", value_json=json.dumps(reason)))
                session.commit()
            except IntegrityError:  # the same, concurrently: its attribute row won
                session.rollback()


class _Heartbeat:
    """Records a trial's heartbeat every ``HEARTBEAT_S`` seconds in a daemon thread."""

    def __init__(self, storage: Any, trial_id: int) -> None:
        self.storage, self.trial_id = storage, trial_id
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True)

    def _beat(self) -> None:
        while not self.stop.is_set():
            with contextlib.suppress(Exception):  # a missed beat is retried; staleness needs several
                self.storage.record_heartbeat(self.trial_id)
            self.stop.wait(HEARTBEAT_S)

    def __enter__(self) -> _Heartbeat:
        self.storage.record_heartbeat(self.trial_id)
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        self.thread.join()


def _live(t: Any) -> bool:
    """A trial that holds its unit: waiting, running, done, or failed for a reason (e.g. NaN loss)."""
    from optuna.trial import TrialState

    if t.state in (TrialState.WAITING, TrialState.RUNNING, TrialState.COMPLETE, TrialState.PRUNED):
        return True
    return t.state == TrialState.FAIL and "failure" in t.user_attrs and "superseded" not in t.user_attrs


class PruningReporter:
    """``Reporter`` that feeds per-epoch validation H to an Optuna trial and stops pruned trials."""

    def __init__(self, trial: Any, inner: Any = None) -> None:
        self.trial, self.inner = trial, inner

    def on_epoch(self, phase: str, epoch: int, metrics: dict[str, float]) -> None:
        if self.inner is not None:
            self.inner.on_epoch(phase, epoch, metrics)
        # Only the validation phase of the `val` protocol is what a search may select on.
        value = metrics.get("val_h", metrics.get("h")) if phase == "val" else None
        if value is None or not math.isfinite(float(value)):
            return
        self.trial.report(float(value), int(epoch))
        if self.trial.should_prune():
            import optuna

            raise optuna.TrialPruned(f"pruned at epoch {epoch} (val H {float(value):.2f})")


class _History:
    """Reporter that keeps per-epoch metrics so MLflow can log them when the unit completes."""

    def __init__(self, inner: Any = None) -> None:
        self.inner, self.epochs = inner, []  # type: ignore[var-annotated]

    def on_epoch(self, phase: str, epoch: int, metrics: dict[str, float]) -> None:
        self.epochs.append({"phase": phase, "epoch": epoch, **metrics})
        if self.inner is not None:
            self.inner.on_epoch(phase, epoch, metrics)


# ---------------------------------------------------------------- the study runner


@dataclass
class StudyOutcome:
    """What a worker saw: rows of finished units (all workers'), failures, and the search results."""

    rows: list[dict[str, Any]]
    trial_rows: list[dict[str, Any]]
    failed: list[tuple[str, str]]  # (unit description, reason)
    ran: int  # units this worker executed
    best: dict[str, dict[str, Any]]  # dataset -> {"params": ..., "value": ...} for searches


class StudyRunner:
    """Executes a :class:`StudySpec` as Optuna trials; any number of these may share one storage.

    Args:
        spec: the validated study.
        out: output directory (``results.csv``, ``trials.csv``, ``curves/``, ``runs/``, ``optuna.db``).
        storage: Optuna storage URL; default ``sqlite:///<out>/optuna.db`` (one worker).
        run_fn: the per-unit function (default :func:`run_with_runner`, i.e. ``runner.run_one``).
        tracker: a :class:`zsl_bench.tracking.Tracker` or None (no MLflow).
        progress: show tqdm bars.
        rerun_changed: rerun finished units whose config the code now resolves differently (a
            method preset or default changed); without it such units stop the study with an error.
    """

    def __init__(self, spec: StudySpec, out: str | os.PathLike[str], *, storage: str | None = None,
                 run_fn: RunFn | None = None, tracker: Any = None, progress: bool = True,
                 rerun_changed: bool = False) -> None:
        self.spec = spec
        self.rerun_changed = rerun_changed
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.url = storage_url(self.out, storage)
        self.storage = make_storage(self.url)
        self.run_fn = run_fn or run_with_runner
        self.tracker = tracker
        self.progress = progress
        self.failed: list[tuple[str, str]] = []
        self._expected: dict[str, set[str]] = {}  # study name -> unit keys this run stands for
        self.ran = 0
        self.best: dict[str, dict[str, Any]] = {}

    # -- paths
    @property
    def results_csv(self) -> Path:
        return self.out / "results.csv"

    @property
    def trials_csv(self) -> Path:
        return self.out / "trials.csv"

    def study_name(self, dataset: str, phase: str = "grid") -> str:
        return f"{self.spec.name}.{dataset}" + ("" if phase == "grid" else f".{phase}")

    def _study(self, name: str, sampler: Any = None, pruner: Any = None) -> Any:
        import optuna

        return optuna.create_study(study_name=name, storage=self.storage, direction="maximize",
                                   sampler=sampler, pruner=pruner, load_if_exists=True)

    # -- entry point
    def run(self) -> StudyOutcome:
        """Run (or resume, or join) the study on every dataset; returns the finished units' rows."""
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        if self.run_fn is run_with_runner:
            check_configs(self.spec)
        parent = self.tracker.study_run(self.spec) if self.tracker else contextlib.nullcontext()
        with parent:
            # Every dataset's finished units against the code's configs, before any training. Search
            # finals are checked when their units are known, in _run_units.
            for ds in self.spec.datasets:
                if self.spec.is_search:
                    self._check_search(ds)
                else:
                    self._check_changed(self._study(self.study_name(ds)), grid_units(self.spec, ds))
            for ds in self.spec.datasets:
                if self.spec.is_search:
                    self._run_search(ds)
                else:
                    self._run_units(self._study(self.study_name(ds)), grid_units(self.spec, ds), "grid")
            rows = self.collect("results")
            trial_rows = self.collect("trials") if self.spec.is_search else []
            if self.tracker:
                self.tracker.log_study_artifacts(self.out)
        return StudyOutcome(rows, trial_rows, self.failed, self.ran, self.best)

    # -- grid-like execution over fixed units
    def _ensure_enqueued(self, study: Any, units: list[Unit]) -> None:
        trials = study.get_trials(deepcopy=False)
        held = {t.user_attrs.get("unit_key") for t in trials if _live(t)}
        for u in units:
            if u.key not in held:
                study.enqueue_trial({}, user_attrs={"unit_key": u.key, "unit": u.to_json(),
                                                    "run_id": u.run_id})

    def _claim(self, study: Any, keys: set[str]) -> Any | None:
        """Atomically move one WAITING trial of a unit in ``keys`` to RUNNING; None when none is waiting.

        Trials of other units (enqueued by a run of the same study with other seeds or variants)
        stay WAITING for a run that asks for them.

        The heartbeat is recorded *before* the trial turns RUNNING: Optuna never counts a RUNNING
        trial without any heartbeat as stale, so a worker killed between the claim and its first
        beat would otherwise hold the unit forever and every later run would wait on it.
        """
        from optuna.exceptions import UpdateFinishedTrialError
        from optuna.trial import TrialState

        for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            if t.user_attrs.get("unit_key") not in keys:
                continue
            try:
                self.storage.record_heartbeat(t._trial_id)
                if self.storage.set_trial_state_values(t._trial_id, TrialState.RUNNING):
                    return t
            except UpdateFinishedTrialError:
                continue
        return None

    def _recorded_digests(self, t: Any) -> set[str]:
        """Config digests a finished trial's unit was trained from (rows, or the claim's for failures)."""
        from optuna.trial import TrialState

        if t.state == TrialState.COMPLETE:
            return {r.get("config_hash", "") for r in json.loads(t.user_attrs.get("rows", "[]"))} - {""}
        if t.state == TrialState.FAIL and "failure" in t.user_attrs:
            return {t.user_attrs.get("config_hash", "")} - {""}
        return set()

    def _check_changed(self, study: Any, units: list[Unit]) -> Any:
        """Stop (or, with ``rerun_changed``, rerun) finished units trained from another config.

        A unit's key covers the spec (method, dataset, seed, overrides), not the method presets or
        config defaults in the code. Rows record the digest of the config they were trained from
        (failed trials: the digest stored at claim time); if the code now resolves another one,
        reusing them would put numbers from two configs in one table. Only the built-in runner's
        units are checked (a custom run function's config need not resolve).

        Cleanup comes first and touches only what is older than this check (rows of the old digest,
        older curves and MLflow runs); the trial is superseded last. A crash in between leaves it
        COMPLETE, so the next run does both again; a worker that lost a race removes nothing new.
        Returns the study, reloaded if trials were superseded (Optuna caches finished trials).
        """
        import optuna
        from optuna.trial import TrialState

        if self.run_fn is not run_with_runner:
            return study
        seen_at = time.time()
        by_key = {u.key: u for u in units}
        changed: list[tuple[Any, Unit, str, str]] = []
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL)):
            unit = by_key.get(t.user_attrs.get("unit_key"))
            if unit is None or "superseded" in t.user_attrs:
                continue
            recorded = self._recorded_digests(t)
            if recorded and recorded != {now := unit.requested_digest()}:
                changed.append((t, unit, ",".join(sorted(recorded)), now))
        if not changed:
            return study
        listed = "; ".join(f"{u.method}/{u.variant}/{u.dataset}/seed {u.seed} (config {old} -> {now})"
                           for _, u, old, now in changed[:5]) + (f"; and {len(changed) - 5} more" if len(changed) > 5
                                                                  else "")
        if not self.rerun_changed:
            raise ConfigError(f"{self.out}: {len(changed)} finished unit(s) of {study.study_name} were trained from "
                              f"another config than the code resolves now (a preset or default changed): {listed}. "
                              "Rerun with --rerun-changed to redo them, or use a new --out")
        log.warning("%s: rerunning %d unit(s) whose config changed: %s", study.study_name, len(changed), listed)
        with file_lock(self.results_csv.with_name(self.results_csv.name + ".lock")):
            remove_runs(self.results_csv, {u.run_id for _, u, _, _ in changed},
                        keep_hashes={now for *_, now in changed})
        for _, u, old, now in changed:
            curve = self.out / "curves" / f"{u.run_id}.npz"
            with contextlib.suppress(FileNotFoundError):
                if curve.stat().st_mtime < seen_at:
                    curve.unlink()
            if self.tracker:  # the old MLflow runs stay, tagged, so the rerun can be logged
                self.tracker.supersede_unit(u.key, f"config {old} -> {now}", before=seen_at)
        # Checkpoints need no cleanup: their fingerprint holds the config, so old ones are ignored.
        _supersede(self.storage, [(t._trial_id, f"config {old} -> {now}") for t, _, old, now in changed])
        return optuna.load_study(study_name=study.study_name, storage=self.storage, sampler=study.sampler,
                                 pruner=study.pruner)

    def _check_search(self, dataset: str) -> None:
        """A search whose finished trials were trained from another config cannot be partly redone."""
        import optuna
        from optuna.trial import TrialState

        if self.run_fn is not run_with_runner:
            return
        try:
            study = optuna.load_study(study_name=self.study_name(dataset, "search"), storage=self.storage)
        except KeyError:
            return
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            recorded, unit_json = self._recorded_digests(t), t.user_attrs.get("unit")
            if recorded and unit_json and recorded != {now := Unit.from_json(unit_json).requested_digest()}:
                raise ConfigError(f"{self.out}: search trial {t.number} of {study.study_name} was trained from another "
                                  f"config than the code resolves now (config {','.join(sorted(recorded))} -> {now}; "
                                  "a preset or default changed). A search's history cannot be partly redone: "
                                  "use a new --out")

    def _duplicate_of(self, study: Any, trial: Any) -> Any | None:
        """A live lower-numbered trial holding the same unit (a concurrent double enqueue)."""
        key = trial.user_attrs.get("unit_key")
        for t in study.get_trials(deepcopy=False):
            if t.number < trial.number and t.user_attrs.get("unit_key") == key and _live(t):
                return t
        return None

    def _run_units(self, study: Any, units: list[Unit], phase: str) -> None:
        from optuna.trial import TrialState
        from tqdm.auto import tqdm

        keys = {u.key for u in units}
        self._expected.setdefault(study.study_name, set()).update(keys)
        if phase == "final":  # grid units were checked up front in run()
            study = self._check_changed(study, units)
        bar = tqdm(total=len(units), desc=f"{study.study_name} units", unit="unit", disable=not self.progress,
                   leave=False)
        while True:
            _fail_stale(self.storage, study)
            self._ensure_enqueued(study, units)
            trials = [t for t in study.get_trials(deepcopy=False) if t.user_attrs.get("unit_key") in keys]
            done = {t.user_attrs["unit_key"] for t in trials if t.state.is_finished() and _live(t)}
            bar.n = len(done)
            bar.refresh()
            if len(done) >= len(keys):
                break
            frozen = self._claim(study, keys)
            if frozen is None:
                # Others hold the remaining units: wait for them to finish or to go stale.
                time.sleep(POLL_S)
                continue
            with _Heartbeat(self.storage, frozen._trial_id):
                dup = self._duplicate_of(study, frozen)
                if dup is not None:
                    self.storage.set_trial_user_attr(frozen._trial_id, "duplicate_of", dup.number)
                    self.storage.set_trial_state_values(frozen._trial_id, TrialState.FAIL)
                    continue
                unit = Unit.from_json(frozen.user_attrs["unit"])
                if self.run_fn is run_with_runner:  # lets _check_changed judge a unit that fails
                    self.storage.set_trial_user_attr(frozen._trial_id, "config_hash", unit.requested_digest())
                self._execute(study, frozen, unit, phase)
        bar.close()

    def _execute(self, study: Any, frozen: Any, unit: Unit, phase: str, trial: Any = None) -> float | None:
        """Run one claimed unit, record rows / curve / MLflow, and finish its trial."""
        import optuna
        from optuna.trial import TrialState

        csv_path = self.trials_csv if phase == "trial" else self.results_csv
        tid = frozen._trial_id
        existing = [r for r in read_rows(csv_path) if r.get("run_id") == unit.run_id]
        if existing and self.run_fn is run_with_runner:
            want = unit.requested_digest()
            if {r.get("config_hash", "") for r in existing} - {"", want}:
                # Rows of another config under this run id (a --rerun-changed cleanup cut short): never reuse.
                with file_lock(csv_path.with_name(csv_path.name + ".lock")):
                    remove_runs(csv_path, {unit.run_id}, keep_hashes={want})
                existing = [r for r in existing if r.get("config_hash", "") in ("", want)]
        if existing:
            # Finished before a kill, between writing rows and telling Optuna: reuse, do not redo.
            value = _objective(existing, phase)
            self.storage.set_trial_user_attr(tid, "rows", json.dumps(existing))
            self.storage.set_trial_state_values(tid, TrialState.COMPLETE, [value])
            return value
        history = _History()
        reporter: Any = PruningReporter(trial, history) if trial is not None else history
        desc = f"{unit.method}/{unit.variant}/{unit.dataset}/seed {unit.seed}"
        t0 = time.time()
        try:
            result = self.run_fn(unit, out_dir=self.out / "runs" / unit.run_id, reporter=reporter,
                                 progress=self.progress)
        except optuna.TrialPruned as exc:
            self.storage.set_trial_user_attr(tid, "failure", f"pruned: {exc}")
            self.storage.set_trial_state_values(tid, TrialState.PRUNED)
            if self.tracker:
                self.tracker.log_unit(unit, history=history.epochs, status="KILLED", reason=f"pruned: {exc}")
            self.ran += 1
            return None
        except TrainingError as exc:
            reason = str(exc) or type(exc).__name__
            log.warning("unit %s failed: %s", desc, reason)
            self.failed.append((desc, reason))
            self.storage.set_trial_user_attr(tid, "failure", reason)
            self.storage.set_trial_state_values(tid, TrialState.FAIL)
            if self.tracker:
                self.tracker.log_unit(unit, history=history.epochs, status="FAILED", reason=reason)
            self.ran += 1
            return None
        rows = result_rows(unit, result)
        if phase == "trial" and not any(r.get("metric") == "val_h" for r in rows):
            sel = getattr(result, "selection", {}) or {}
            if "val_h" not in sel:
                raise ConfigError(f"the run of search trial {desc} returned no selection['val_h'] to optimise")
            rows.append({**rows[0], "metric": "val_h", "value": float(sel["val_h"])} if rows else
                        {"run_id": unit.run_id, "variant": unit.variant, "method": unit.method,
                         "dataset": unit.dataset, "seed": unit.seed, "metric": "val_h",
                         "value": float(sel["val_h"])})
        value = _objective(rows, phase)
        self.storage.set_trial_user_attr(tid, "rows", json.dumps(rows, default=str))
        self.storage.set_trial_user_attr(tid, "wall_time_s", round(time.time() - t0, 3))
        curve = save_curve(self.out, unit, result)
        write_unit_rows(csv_path, rows)
        if self.tracker:
            hist = list(getattr(result, "history", None) or []) or history.epochs
            self.tracker.log_unit(unit, result=result, rows=rows, history=hist, curve=curve)
        self.storage.set_trial_state_values(tid, TrialState.COMPLETE, [value])
        self.ran += 1
        return value

    # -- Optuna search
    def _sampler(self) -> Any:
        import optuna

        s = self.spec.search
        assert s is not None
        if s.sampler == "random":
            return optuna.samplers.RandomSampler(seed=s.seed)
        if s.sampler == "grid":
            return optuna.samplers.GridSampler(_grid_space(s.space), seed=s.seed)
        return optuna.samplers.TPESampler(seed=s.seed)

    def _pruner(self) -> Any:
        import optuna

        s = self.spec.search
        assert s is not None
        if s.pruner == "median":
            return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1)
        if s.pruner == "successive_halving":
            return optuna.pruners.SuccessiveHalvingPruner()
        return optuna.pruners.NopPruner()

    def _run_search(self, dataset: str) -> None:
        import optuna
        from optuna.trial import TrialState
        from tqdm.auto import tqdm

        s = self.spec.search
        assert s is not None
        study = self._study(self.study_name(dataset, "search"), self._sampler(), self._pruner())
        method, seed = self.spec.methods[0], self.spec.seeds[0]
        counted = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
        start = time.time()
        bar = tqdm(total=s.n_trials, desc=f"{study.study_name} trials", unit="trial", disable=not self.progress,
                   leave=False)
        while True:
            _fail_stale(self.storage, study)
            trials = study.get_trials(deepcopy=False)
            used = sum(1 for t in trials if t.state in counted or (t.state == TrialState.FAIL and "failure" in
                                                                   t.user_attrs))
            bar.n = min(used, s.n_trials or used)
            bar.refresh()
            if s.n_trials is not None and used >= s.n_trials:
                break
            if s.timeout is not None and time.time() - start > s.timeout:
                break
            if isinstance(study.sampler, optuna.samplers.GridSampler) and study.sampler.is_exhausted(study):
                break
            trial = study.ask()
            self.storage.record_heartbeat(trial._trial_id)  # as soon as it is RUNNING; see _fail_stale
            params = {p.key: _suggest(trial, p) for p in s.space}
            unit = Unit(self.spec.name, method, dataset, seed, f"trial-{trial.number}",
                        merge_overrides(self.spec.base_for(method), nest(params, "search.space")),
                        self.spec.protocol,
                        self.spec.sim, self.spec.sim_seed, self.spec.data_root, phase="trial")
            self.storage.set_trial_user_attr(trial._trial_id, "unit", unit.to_json())
            self.storage.set_trial_user_attr(trial._trial_id, "unit_key", unit.key)
            with _Heartbeat(self.storage, trial._trial_id):
                self._execute(study, trial, unit, "trial", trial=trial)
        bar.close()
        # Others may still run trials of this budget: the best is chosen once every trial has ended.
        while any(t.state == TrialState.RUNNING for t in study.get_trials(deepcopy=False)):
            _fail_stale(self.storage, study)
            time.sleep(POLL_S)
        complete = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
        if not complete:
            log.warning("search %s finished no trial; no final runs", study.study_name)
            return
        best = max(complete, key=lambda t: (t.value, -t.number))
        self.best[dataset] = {"params": dict(best.params), "value": best.value, "trial": best.number}
        log.info("%s: best trial %d, val H %.2f, params %s", study.study_name, best.number, best.value,
                 best.params)
        overrides = merge_overrides(self.spec.base_for(method), nest(dict(best.params), "search.space"))
        final = [Unit(self.spec.name, method, dataset, sd, "best", overrides, self.spec.protocol, self.spec.sim,
                      self.spec.sim_seed, self.spec.data_root, phase="final") for sd in self.spec.seeds]
        self._run_units(self._study(self.study_name(dataset, "final")), final, "final")

    # -- collecting results of every worker
    def _belongs(self, unit_json: str | None) -> bool:
        """Whether a stored unit is part of this spec as run now (an edited spec or --sim may differ)."""
        if not unit_json:
            return False
        u = Unit.from_json(unit_json)
        s = self.spec
        return (u.method in s.methods and u.seed in s.seeds and u.protocol == s.protocol
                and u.sim_preset == s.sim and (u.phase != "grid" or u.variant in (s.variants or {"default": {}})))

    def collect(self, which: str = "results") -> list[dict[str, Any]]:
        """Rows of every finished unit in storage (any worker); fills in local CSVs missing some."""
        import optuna
        from optuna.trial import TrialState

        csv_path = self.trials_csv if which == "trials" else self.results_csv
        names = []
        for ds in self.spec.datasets:
            if self.spec.is_search:
                names.append(self.study_name(ds, "search" if which == "trials" else "final"))
            else:
                names.append(self.study_name(ds))
        rows: list[dict[str, Any]] = []
        for name in names:
            try:
                study = optuna.load_study(study_name=name, storage=self.storage)
            except KeyError:
                continue
            expected = self._expected.get(name)
            for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
                # Units of this run only: an edited base / per_method / --set leaves the old units COMPLETE
                # in the same study, under other keys.
                if expected is not None and t.user_attrs.get("unit_key") not in expected:
                    continue
                if self._belongs(t.user_attrs.get("unit")):
                    rows.extend(json.loads(t.user_attrs.get("rows", "[]")))
        with file_lock(csv_path.with_name(csv_path.name + ".lock")):
            have = {r.get("run_id") for r in read_rows(csv_path)}
            missing = [r for r in rows if r.get("run_id") not in have]
            if missing:
                append_rows(csv_path, missing)
        return dedupe_rows(rows)


def _objective(rows: list[dict[str, Any]], phase: str) -> float:
    """Trials optimise validation H (their ``val_h`` row); other units store test H for reference."""
    by_metric = {r.get("metric"): r.get("value") for r in rows}
    value = by_metric.get("val_h") if phase == "trial" else by_metric.get("h")
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan


def _suggest(trial: Any, p: SearchParam) -> Any:
    if p.type == "categorical":
        return trial.suggest_categorical(p.key, list(p.choices))
    if p.type == "int":
        return trial.suggest_int(p.key, int(p.low), int(p.high), step=int(p.step or 1))  # type: ignore[arg-type]
    return trial.suggest_float(p.key, p.low, p.high, log=p.type == "log_float",  # type: ignore[arg-type]
                               step=p.step if p.type == "float" else None)


def _grid_space(space: tuple[SearchParam, ...]) -> dict[str, list[Any]]:
    import numpy as np

    out: dict[str, list[Any]] = {}
    for p in space:
        if p.type == "categorical":
            out[p.key] = list(p.choices)
        else:
            assert p.low is not None and p.high is not None and p.step is not None
            vals = np.arange(p.low, p.high + p.step / 2, p.step)
            out[p.key] = [int(v) for v in vals] if p.type == "int" else [float(v) for v in vals]
    return out


def read_study_rows(paths: list[str | os.PathLike[str]]) -> list[dict[str, Any]]:
    """Read and deduplicate result rows from CSV files (missing files are an error)."""
    from .errors import DataError

    rows: list[dict[str, Any]] = []
    for p in paths:
        path = Path(p)
        if not path.is_file():
            raise DataError(f"results file not found: {path}")
        got = read_rows(path)
        if got and not {"method", "dataset", "metric", "value"} <= set(got[0]):
            raise DataError(f"{path} is not a zsl-bench results file: needs columns "
                            f"method, dataset, metric, value (see zsl_bench.results.COLUMNS)")
        rows.extend(got)
    return dedupe_rows(rows)


__all__ = [
    "COLUMNS", "SearchParam", "SearchSpec", "StudySpec", "StudyRunner", "StudyOutcome", "Unit",
    "benchmarks_dir", "dedupe_rows", "expand_grid", "grid_units", "load_spec", "locate_spec", "nest",
    "parse_spec", "read_study_rows", "result_rows", "run_with_runner", "save_curve",
]
