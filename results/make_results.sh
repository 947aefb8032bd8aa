#!/usr/bin/env bash
# Regenerate results/ from scratch on the simulated benchmark (small preset), 2 CPU cores.
#   bash results/make_results.sh            main job, all-methods table, MSDN++ ablation, confounding sweep
#   SEEDS=0 bash results/make_results.sh    the all-methods table with one training seed first
#   SEEDS=0,1,2 DATASETS=cub,awa2 bash results/make_results.sh   more seeds where units are cheap
#   TRANSZERO=1 bash results/make_results.sh  also TransZero's CPU-budget study (hours on 2 cores)
# Studies resume: rerunning after an interruption, or with more seeds, only runs missing units;
# --rerun-changed redoes the units whose config or data the code now resolves differently (a
# preset or the default generator changed: 2.0 -> 3.0 reran the AWA2 units only, 3.0 -> 4.0 every
# unit, since v4 changes every dataset's small data).
# One thread per process: on 2 shared cores PyTorch's default (2 threads) thrashes under any other load.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" MKL_NUM_THREADS="${MKL_NUM_THREADS:-1}"
PUBLISHED=../shared/reference/published_results.csv
MAIN_SEEDS="${SEEDS:-}"          # empty: the specs' seeds
MAIN_DATASETS="${DATASETS:-}"    # empty: the specs' datasets (the tables always cover every finished row)

# 1. The README's main command: MSDN++ on all four datasets, 3 seeds, val protocol.
zsl-bench run msdnpp --datasets all --sim --out results/main --no-mlflow --rerun-changed --no-progress
zsl-bench table results/main/results.csv --kind main --published "$PUBLISHED" --out results/tables
zsl-bench plot results/main/results.csv --curves results/main/curves --kind curves --out results/figures

# 2. Every other registered method (CPU budget spec), plus the MSDN++ rows of step 1; TransZero's
#    rows come from its own CPU-budget study, where it has been run (results/README.md says which).
zsl-bench ablate benchmarks/main_table_cpu.yaml --sim --out results/main_table --no-progress --rerun-changed \
  ${MAIN_SEEDS:+--seeds "$MAIN_SEEDS"} ${MAIN_DATASETS:+--datasets "$MAIN_DATASETS"}
# Rows in the spec's method order (units rerun after a preset change append their rows last).
ORDER=eszsl,sae,ale,devise,sje,dazle,msdn,latem,fclswgan,tfvaegan
zsl-bench table results/main_table/results.csv --kind main --order "$ORDER" --out results/main_table/tables
if [ -n "${TRANSZERO:-}" ]; then   # TRANSZERO=1: ~10-60 min per unit on one core
  zsl-bench ablate benchmarks/transzero_cpu.yaml --sim --out results/transzero_cpu --no-progress --rerun-changed \
    ${MAIN_SEEDS:+--seeds "$MAIN_SEEDS"} ${MAIN_DATASETS:+--datasets "$MAIN_DATASETS"}
fi
ROWS=(results/main_table/results.csv) CURVES=(--curves results/main_table/curves)
if [ -f results/transzero_cpu/results.csv ]; then
  ROWS+=(results/transzero_cpu/results.csv) CURVES+=(--curves results/transzero_cpu/curves)
fi
zsl-bench table "${ROWS[@]}" results/main/results.csv --kind main --order "$ORDER" --out results/tables/all_methods
zsl-bench plot "${ROWS[@]}" results/main/results.csv "${CURVES[@]}" --curves results/main/curves --kind curves \
  --out results/figures/all_methods

# 3. The MSDN++ ablation with paired 95% CIs (benchmarks/msdnpp_ablation_paired_cpu.yaml: CUB, AWA2,
#    6 training x 2 data seeds), its table, figures and the measured power of its design.
zsl-bench ablate benchmarks/msdnpp_ablation_paired_cpu.yaml --out results/ablation --no-progress --rerun-changed
zsl-bench plot results/ablation/results.csv --curves results/ablation/curves --kind all --out results/ablation/figures
zsl-bench power results/ablation/results.csv --reference full > results/ablation/tables/power.txt

# 4. The confounding sweep (benchmarks/confounding_sweep_cpu.yaml: CUB, MSDN and three MSDN++
#    interventions, rho 0 to 0.9, 2 training x 2 data seeds), its figure (H, ZSL acc and context
#    reliance vs rho, 95% bands), its table (paired differences to MSDN at each rho) and power.
zsl-bench ablate benchmarks/confounding_sweep_cpu.yaml --out results/confounding_sweep --no-progress --rerun-changed
zsl-bench plot results/confounding_sweep/results.csv --kind sweep --x sim.rho --out results/confounding_sweep/figures
zsl-bench table results/confounding_sweep/results.csv --kind ablation --reference msdn \
  --out results/confounding_sweep/tables
zsl-bench power results/confounding_sweep/results.csv --reference msdn > results/confounding_sweep/tables/power.txt
