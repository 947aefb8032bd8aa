#!/usr/bin/env bash
# Regenerate results/ from scratch on the simulated benchmark (small preset), 2 CPU cores.
#   bash results/make_results.sh            main job, all-methods table, MSDN++ ablation (the specs' 3 seeds)
#   SEEDS=0 bash results/make_results.sh    one seed first (SEEDS_MAIN / SEEDS_ABLATION for one study only)
# Studies resume: rerunning after an interruption, or with more seeds, only runs missing units.
# One thread per process: on 2 shared cores PyTorch's default (2 threads) thrashes under any other load.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" MKL_NUM_THREADS="${MKL_NUM_THREADS:-1}"
PUBLISHED=../shared/reference/published_results.csv
MAIN_SEEDS="${SEEDS_MAIN:-${SEEDS:-}}"          # empty: the spec's seeds
ABLATION_SEEDS="${SEEDS_ABLATION:-${SEEDS:-}}"

# 1. The README's main command: MSDN++ on all four datasets, 3 seeds, val protocol.
[ -f results/main/results.csv ] || zsl-bench run msdnpp --datasets all --sim --out results/main --no-mlflow
zsl-bench table results/main/results.csv --kind main --published "$PUBLISHED" --out results/tables
zsl-bench plot results/main/results.csv --curves results/main/curves --kind curves --out results/figures

# 2. Every other registered method (CPU budget spec), plus the MSDN++ rows of step 1.
zsl-bench ablate benchmarks/main_table_cpu.yaml --sim --out results/main_table --no-progress \
  ${MAIN_SEEDS:+--seeds "$MAIN_SEEDS"}
zsl-bench table results/main_table/results.csv results/main/results.csv --kind main \
  --out results/tables/all_methods
zsl-bench plot results/main_table/results.csv --curves results/main_table/curves --kind curves \
  --out results/figures/all_methods

# 3. The MSDN++ ablation (benchmarks/msdnpp_ablation.yaml), its table and figures.
zsl-bench ablate benchmarks/msdnpp_ablation.yaml --sim --out results/ablation --no-progress \
  ${ABLATION_SEEDS:+--seeds "$ABLATION_SEEDS"}
# ablate writes results/ablation/tables (variants in spec order) and figures; this redoes the figures from rows
zsl-bench plot results/ablation/results.csv --curves results/ablation/curves --kind all --out results/ablation/figures
