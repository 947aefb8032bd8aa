#!/usr/bin/env bash
# One GPU against its limit, in one run under 8 minutes (H100/H200 class). Run from the repository root:
#
#   bash benchmarks/gpu_suite.sh                # on a CUDA machine: every number below
#   bash benchmarks/gpu_suite.sh --cpu-smoke    # anywhere: the same sections at toy sizes on CPU
#                                               # (checks the script; its numbers say nothing about a GPU)
#
# It generates what it needs (no download, no dataset on disk): CUB-shaped random features for the
# throughput section, the real CUB metadata from $ZSL_BENCH_SHARED_DATA (default ../shared/data/zsl)
# with generated 2048 x 196 region features for the schedule, simulated CUB (`small`) for the CPU/GPU
# agreement, random JPEGs for `data extract`. It prints:
#   - train and score throughput (img/s) at 49 and 196 regions for MSDN and MSDN++, fp32 and bf16,
#     with achieved TFLOP/s beside the device's peak (FLOPs counted analytically: benchmarks/gpu_bench.py)
#   - the wall time of the full CUB schedule (val protocol: validation epochs + the trainval retrain,
#     scoring every epoch) and the peak GPU memory
#   - CPU vs GPU metric agreement (fp32 and bf16) on the same seeded run: fp32 is the default precision
#     (train.precision); the bf16 line is the measured deviation of the opt-in bf16 autocast
#   - `data extract` images/s at 448 px for ResNet-101 (random weights and images)
# The whole run is bounded by ZSL_BENCH_SUITE_LIMIT_S (default 470 s): a section cut by it is reported.
# Extra arguments go to benchmarks/gpu_bench.py (e.g. --only step,schedule).
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export ZSL_BENCH_SHARED_DATA="${ZSL_BENCH_SHARED_DATA:-$(cd .. && pwd)/shared/data/zsl}"
# Simulated data goes to a private cache unless one is given (generated once, reused by later runs).
export ZSL_BENCH_CACHE="${ZSL_BENCH_CACHE:-${TMPDIR:-/tmp}/zsl-bench-gpu-suite-cache}"
limit="${ZSL_BENCH_SUITE_LIMIT_S:-470}"
log="${OUT:-${TMPDIR:-/tmp}}/gpu_suite.log"

start=$(date +%s)
echo "gpu_suite: $(date -u +%FT%TZ), commit $(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown), limit ${limit}s"
python -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())'
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,power.limit --format=csv,noheader
fi
timeout --signal=INT "$limit" python benchmarks/gpu_bench.py "$@" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
end=$(date +%s)
if [ "$rc" -eq 124 ] || [ "$rc" -eq 130 ]; then
  echo "gpu_suite: stopped at the ${limit}s limit; the sections above finished, later ones did not"
fi
echo "gpu_suite: total wall time $((end - start))s (exit $rc); log: $log"
exit "$rc"
