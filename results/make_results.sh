#!/usr/bin/env bash
# Regenerate results/ from scratch: the README's main command on the simulated benchmark
# (MSDN++, all four datasets, 3 seeds, val protocol), its tables and its figures.
#   bash results/make_results.sh            (~10 minutes on 2 CPU cores)
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf results/main
zsl-bench run msdnpp --datasets all --sim --out results/main --no-mlflow
zsl-bench table results/main/results.csv --kind main \
  --published ../shared/reference/published_results.csv --out results/tables
zsl-bench plot results/main/results.csv --curves results/main/curves --kind curves --out results/figures
