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
      space:
        method.effect_loss: {type: categorical, choices: [class, attribute, both]}
        method.lambda_eff: {type: log_float, low: 0.01, high: 10}
        method.lambda_sem: {type: log_float, low: 0.01, high: 0.3,
                            when: {method.effect_loss: [attribute, both]}}   # sampled only then
      n_trials: 20
      sampler: tpe                # tpe | grid | random
      pruner: median              # none | median | successive_halving

Modules: ``spec`` (the schema, parsing, units), ``queue`` (Optuna trials as a work queue: claims,
heartbeats, stale trials), ``optuna_adapter`` (the only use of Optuna's private API), ``runner``
(:class:`StudyRunner`: drift checks, rows, curves, MLflow, collecting every worker's results).
``zsl-bench run`` is a one-method study (``cli/run.py``); ``zsl-bench ablate`` runs a spec file.
"""

from .queue import Timing, WorkQueue
from .runner import (
    PruningReporter,
    StudyOutcome,
    StudyRunner,
    dedupe_rows,
    is_server_storage,
    read_study_rows,
    storage_url,
    write_unit_rows,
)
from .spec import (
    GridSpec,
    SearchParam,
    SearchSpec,
    StudySpec,
    Unit,
    benchmarks_dir,
    check_configs,
    expand_grid,
    grid_units,
    load_spec,
    locate_spec,
    make_unit,
    nest,
    parse_spec,
)

__all__ = [
    "GridSpec", "PruningReporter", "SearchParam", "SearchSpec", "StudyOutcome", "StudyRunner", "StudySpec",
    "Timing", "Unit", "WorkQueue", "benchmarks_dir", "check_configs", "dedupe_rows", "expand_grid", "grid_units",
    "is_server_storage", "load_spec", "locate_spec", "make_unit", "nest", "parse_spec", "read_study_rows",
    "storage_url", "write_unit_rows",
]
