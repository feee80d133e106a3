#!/usr/bin/env bash
# One short run on a GPU machine: install the carried wheels offline, run benchmarks/gpu_zimage.py within
# a time budget, leave the report (JSON + Markdown + log) in $OUT (or benchmarks/results), then the
# render benchmark on the full-size architecture, LoRA then LoKr (try_render.md, at most 150 s more; about 60),
# then one LoKr training layer (lokr_layer.md, about 20 s).
#   bash benchmarks/gpu_run.sh [WHEELS_DIR] [BUDGET_S] [PLAN]   defaults: benchmarks/wheels, 420, full
#   PLAN focus: gpu_zimage.py's short plan (the job's step eager and compiled, the peer, float8), no render rows
#   ROWS="auto off" bash benchmarks/gpu_run.sh ...             only the rows whose names hold one of these words
#   CUDA_TESTS=1 bash benchmarks/gpu_run.sh ...              also runs tests/test_engine_cuda.py afterwards
# The budget is when the benchmark stops starting new runs; a hard timeout 90 s later ends it for sure.
set -uo pipefail
cd "$(dirname "$0")/.."
wheels="${1:-benchmarks/wheels}"
budget="${2:-420}"
plan="${3:-full}"
out="${OUT:-benchmarks/results}"
mkdir -p "$out"
if compgen -G "$wheels/*.whl" >/dev/null; then
    site=/tmp/zimage-bench-site
    python3 -m pip install --quiet --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" \
        "$wheels"/*.whl || { echo "installing the carried wheels from $wheels failed"; exit 1; }
    export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
else
    echo "no wheels in $wheels: using the packages already installed"
fi
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
python3 -c "import diffusers, peft, trainer.engine.loop" || { echo "the benchmark's imports fail (see above)"; exit 1; }
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>&1 | tee "$out/nvidia-smi.txt"
# one block's saved activations, bf16 and float8 matmuls, against the rule of thumb (about 20 s; not in focus runs)
[ "$plan" = focus ] || { timeout 45 python3 benchmarks/activation_memory.py --sizes 1024 && \
  timeout 45 python3 benchmarks/activation_memory.py --sizes 1024 --float8; } 2>&1 | tee "$out/activation_memory.md"
timeout $((${budget%.*} + 90)) python3 benchmarks/gpu_zimage.py --budget-s "$budget" --plan "$plan" --out "$out" \
    ${ROWS:+--rows $ROWS} 2>&1 \
    | tee "$out/gpu_zimage.log"
status=${PIPESTATUS[0]}
if [ "$plan" != focus ]; then
    # Try the LoRA on the full-size architecture: an image's denoising with the LoRA by hooks vs merged (~30 s)
    timeout 90 python3 benchmarks/try_render.py --shape real --size 1024 --rank 32 --rounds 3 2>&1 \
        | tee "$out/try_render.md"
    # the same with a LyCORIS LoKr (w1 16x16, w2 of rank 8 as its two thin factors; ~30 s)
    timeout 60 python3 benchmarks/try_render.py --shape real --size 1024 --network lokr --factor 16 --rank 8 \
        --rounds 2 2>&1 | tee -a "$out/try_render.md"
    # training a LoKr: one full-size layer with the change through its factors vs peft's own LoKr layer (~20 s)
    timeout 60 python3 benchmarks/lokr_layer.py --rounds 5 2>&1 | tee "$out/lokr_layer.md"
fi
rm -rf "$out/compile_cache"  # kernels for this machine only; keeps what comes back small
if [ "${CUDA_TESTS:-0}" = 1 ]; then  # the engine's CUDA tests on the tiny model (2-5 minutes: blocks compile by default)
    timeout 420 python3 -m pytest tests/test_engine_cuda.py -x -q -p no:cacheprovider 2>&1 | tee "$out/cuda_tests.log"
fi
exit "$status"
