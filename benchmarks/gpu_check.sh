#!/usr/bin/env bash
# Every GPU check of the project in one run, for a machine with CuPy and a CUDA GPU:
#   1. the whole test suite on CuPy (lessons and README commands included),
#   2. the quick pipeline with MINILLM_DEVICE=cuda,
#   3. the GPU training-step benchmark beside PyTorch (skipped by the script if torch is missing).
# Logs go to $OUT (default gpu-check/). Exit status: the test suite's.
#   bash benchmarks/gpu_check.sh
set -u
out=${OUT:-gpu-check}
mkdir -p "$out"
if ! python -c "import cupy, sys; sys.exit(cupy.cuda.runtime.getDeviceCount() == 0)" 2>/dev/null; then
    echo "gpu_check: needs CuPy (pip install -e '.[gpu]') and a CUDA GPU" >&2
    exit 2
fi
nvidia-smi --query-gpu=name,memory.total --format=csv > "$out/gpu.txt" 2>&1
python -m pytest --device cuda -q -p no:cacheprovider 2>&1 | tee "$out/pytest_cuda.log"
status=${PIPESTATUS[0]}
( time MINILLM_DEVICE=cuda minillm pipeline --preset quick --out "$out/pipeline" ) > "$out/pipeline.log" 2>&1
python benchmarks/bench_pretrain.py --device cuda --config bpe --config gpt2-small > "$out/bench.log" 2>&1
echo "gpu_check: tests exit $status; logs in $out/"
exit "$status"
