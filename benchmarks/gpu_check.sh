#!/usr/bin/env bash
# Every GPU check of the project in one run, for a machine with CuPy and a CUDA GPU, in the
# order that matters most when time is short:
#   1. the custom kernels (fast/cuda_kernels.py) against their NumPy twins, and CPU vs GPU agreement,
#   2. the training-step benchmark beside PyTorch with SDPA (TF32 off on both sides), with
#      kernel launches per step and per generated token (skipped if torch is missing),
#   3. the classroom pipeline with MINILLM_DEVICE=cuda, timed,
#   4. the whole test suite on CuPy (lessons and README commands included; the lessons need
#      Jupyter: a folder of wheels in $WHEELS is installed first where given), in parallel
#      where pytest-xdist is installed.
# Each step has its own time limit (seconds, overridable) so a slow one cannot starve the rest.
# Logs go to $OUT (default gpu-check/). Exit status: the kernel tests'.
#   bash benchmarks/gpu_check.sh
#   WHEELS=../wheels KERNELS_S=90 BENCH_S=150 PIPELINE_S=300 SUITE_S=300 bash benchmarks/gpu_check.sh
set -u
out=${OUT:-gpu-check}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD"
if [ -n "${WHEELS:-}" ] && ls "$WHEELS"/*.whl > /dev/null 2>&1; then
    python -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/gpu-check-site "$WHEELS"/*.whl > "$out/wheels.log" 2>&1 \
        && export PYTHONPATH="/tmp/gpu-check-site:$PYTHONPATH"
fi
if ! python -c "import cupy, sys; sys.exit(cupy.cuda.runtime.getDeviceCount() == 0)" 2>/dev/null; then
    echo "gpu_check: needs CuPy (pip install -e '.[gpu]') and a CUDA GPU" >&2
    exit 2
fi
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python -c "import cupy, numpy, sys; print('python', sys.version.split()[0], 'cupy', cupy.__version__, 'numpy', numpy.__version__)"
  python -c "import torch; print('torch', torch.__version__)" 2>&1; } > "$out/gpu.txt" 2>&1

timeout "${KERNELS_S:-120}" python -m pytest --device cuda -q -p no:cacheprovider tests/test_backends_agree.py \
    > "$out/kernels.log" 2>&1
status=$?
echo "kernels: exit $status"; tail -3 "$out/kernels.log"

timeout "${BENCH_S:-180}" python benchmarks/bench_pretrain.py --device cuda --config bpe --config gpt2-small \
    --repeats 3 --steps 5 > "$out/bench.log" 2>&1
echo "bench: exit $?"; grep -v "^USDT\|^STAGE" "$out/bench.log" | tail -40

start=$(date +%s)
MINILLM_DEVICE=cuda timeout "${PIPELINE_S:-300}" python -m minillm pipeline --preset classroom \
    --out /tmp/gpu-check-pipeline > "$out/pipeline.log" 2>&1
echo "pipeline: exit $? after $(( $(date +%s) - start )) s"; tail -5 "$out/pipeline.log"
cp /tmp/gpu-check-pipeline/report.md "$out/pipeline_report.md" 2>/dev/null

parallel=""
python -c "import xdist" 2>/dev/null && parallel="-n 8"
# -v prints each test's name as it finishes, so a run cut short by its time limit still names its failures
timeout "${SUITE_S:-300}" python -m pytest --device cuda -v --tb=short -p no:cacheprovider $parallel \
    > "$out/pytest_cuda.log" 2>&1
echo "suite: exit $?"; grep -E "^(FAILED|ERROR)|(FAILED|ERROR) tests/" "$out/pytest_cuda.log" | head -30
tail -3 "$out/pytest_cuda.log"
exit "$status"
