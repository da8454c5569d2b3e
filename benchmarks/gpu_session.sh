#!/usr/bin/env bash
# One lent GPU's few minutes, in one command: the CUDA tests, then every GPU benchmark, most
# wanted first, each under its own time limit inside one overall deadline, so that a slow or
# failing step costs its own minutes and not the others'.
#
#   bash benchmarks/gpu_session.sh OUT_FOLDER [SECONDS] [tune]  (default 570)
#
# With "tune": a short second session instead, after the first one's results: the Triton
# backward's profile and block-size sweep, the gpu-marked tests, and the attention table at
# 16k and 32k only.
#
# Writes one log per step into OUT_FOLDER (each benchmark prints its rows as JSON lines as it
# goes, so a step stopped at its limit keeps what it measured). Uses the machine's python3 with
# the repository's src/ on the path: nothing to install. The Bible corpus for the translation
# speeds is read from .sword/ when it was carried there (cp -r /usr/share/sword/modules/texts/
# ztext .sword/), else that table is skipped.
set -u
out=${1:?usage: gpu_session.sh OUT_FOLDER [SECONDS]}
deadline=$((SECONDS + ${2:-570}))
mkdir -p "$out"
export PYTHONPATH=$PWD/src:$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
unset TRITON_INTERPRET
python=${PYTHON:-python3}
parallel=$($python -c "import xdist" 2>/dev/null && echo "-n 12")  # compile kernels side by side

# step LOG CAP COMMAND...: run COMMAND for at most CAP seconds and never past the deadline.
step() {
    local log=$1 cap=$2
    shift 2
    local left=$((deadline - SECONDS))
    ((left < cap)) && cap=$left
    if ((cap < 15)); then
        echo "skipped: the session's deadline is reached" >"$out/$log"
        return
    fi
    echo "== $log: up to ${cap} s: $*" | tee -a "$out/0_steps.txt"
    local started=$SECONDS
    timeout -s INT -k 10 "$cap" "$@" >"$out/$log" 2>&1
    echo "   exit $? after $((SECONDS - started)) s" | tee -a "$out/0_steps.txt"
}

{
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
    $python -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
} >"$out/0_steps.txt" 2>&1

if [ "${3:-}" = tune ]; then
    step 1_sweep.log 65 $python benchmarks/gpu_backward_sweep.py --json /tmp/sweep.json
    step 2_tests_gpu.log 95 $python -m pytest -q $parallel -p no:cacheprovider \
        --continue-on-collection-errors -m gpu
    step 3_attention128.log 90 $python benchmarks/gpu.py --only attention --lengths 16384 32768 \
        --json /tmp/attention128.json
    echo "total $SECONDS s" | tee -a "$out/0_steps.txt"
    exit 0
fi

# 1. Correctness: every gpu-marked test, and the Triton kernel's interpreter tests on CUDA
#    (tests/conftest.py switches the interpreter on only where there is no GPU).
step 1_tests.log 120 $python -m pytest -q $parallel -p no:cacheprovider --continue-on-collection-errors \
    -m "gpu or not slow" -o addopts="-ra --strict-markers" \
    tests/attention/test_triton.py tests/attention/test_triton_dropout.py \
    tests/attention/test_triton_plan.py tests/attention/test_triton_scores.py \
    tests/attention/test_triton_gpu.py

# 2. The table: causal, window, documents at 4k/16k/32k, D=128, with a cold Triton cache
#    (the first call at 4k includes compiling the kernels; later lengths show a new length).
TRITON_CACHE_DIR=$(mktemp -d) step 2_attention128.log 200 \
    $python benchmarks/gpu.py --only attention --json /tmp/attention128.json
# 3. Which calls auto should route to Triton: the other masks, score modifiers, dropout.
step 3_routing.log 110 $python benchmarks/gpu_routing.py --json /tmp/routing.json
# 4. Every other gpu-marked test: decoding, devices, the CLI on CUDA.
step 4_tests_gpu.log 90 $python -m pytest -q $parallel -p no:cacheprovider \
    --continue-on-collection-errors -m gpu
# 5. D=64.
step 5_attention64.log 80 $python benchmarks/gpu.py --only attention --head-dim 64 --quick \
    --json /tmp/attention64.json
# 6. Issue 15: training tokens/s of the three translators against length, on the GPU.
if [ -d .sword/ztext ]; then
    mkdir -p /usr/share/sword/modules/texts && cp -r .sword/ztext /usr/share/sword/modules/texts/
    step 6_translation.log 70 bash -c "$python benchmarks/translation_length.py --speed-only \
        --speed-device cuda --out /tmp/tl_tiny && $python benchmarks/translation_length.py \
        --speed-only --speed-device cuda --size base --out /tmp/tl_base"
fi
# 7. The rest of benchmarks/gpu.py: training step, log-sum-exp, decoding.
step 7_models.log 120 bash -c "$python benchmarks/gpu.py --only training --quick --json /tmp/t.json;
    $python benchmarks/gpu.py --only lse --quick --json /tmp/l.json;
    $python benchmarks/gpu.py --only decode --quick --json /tmp/d.json"
echo "total $SECONDS s" | tee -a "$out/0_steps.txt"
