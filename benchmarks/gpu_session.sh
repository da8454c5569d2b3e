#!/usr/bin/env bash
# One lent GPU's few minutes, in one command: the CUDA tests, then every GPU benchmark, most
# wanted first, each under its own time limit inside one overall deadline, so that a slow or
# failing step costs its own minutes and not the others'.
#
#   bash benchmarks/gpu_session.sh OUT_FOLDER [SECONDS]        (default 570)
#
# The steps are what the last GPU session left to measure (docs/benchmarks.md#gpu); edit them
# for the next one. The translation speeds (step 6 of the first session) need the Bible corpus
# carried in .sword/ (cp -r /usr/share/sword/modules/texts/ztext .sword/).
#
# Writes one log per step into OUT_FOLDER (each benchmark prints its rows as JSON lines as it
# goes, so a step stopped at its limit keeps what it measured). Uses the machine's python3 with
# the repository's src/ on the path: nothing to install.
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

# 1. Correctness: the Triton kernel's interpreter tests on CUDA (tests/conftest.py switches the
#    interpreter on only where there is no GPU), the dK/dV pass queries down among them (stop
#    29: the transposes of P and dS through shared memory exist only in the compiled kernel;
#    step 3 may crown it) and by TMA (stop 30: the copy engine's bounds and zeros exist only on
#    the GPU) first, as what step 4's winners rest on (a step cut at its limit loses its last
#    files); then every gpu-marked test but gpu.py's own smoke run (step 2 runs gpu.py).
pytest="$python -m pytest -q $parallel -p no:cacheprovider --continue-on-collection-errors"
step 1_tests.log 150 bash -c "$pytest -m 'not slow' tests/attention/test_triton_tma.py \
    tests/attention/test_triton_direct.py tests/test_triton_tuning.py; \
    $pytest -m gpu tests --deselect tests/test_benchmarks_smoke.py::test_gpu_benchmark_quick; \
    $pytest -m 'not slow' tests/attention/test_triton.py tests/attention/test_triton_even.py \
    tests/attention/test_triton_dropout.py tests/attention/test_triton_plan.py \
    tests/attention/test_triton_scores.py"
# 2. The table as main ships it: causal, window, documents at 4k/16k/32k, D=128, with a
#    cold Triton cache (the first call at 4k includes compiling the kernels; later lengths show
#    a new length). New since the last GPU run: the light dK/dV blocks (64x64), the delta pass,
#    (stops 24-25) the passes' shorter loops without bounds in full tiles (EVEN, at any
#    length), (stop 27) dK/dV without bounds at D=128 too, (stop 28) a plan per call shape.
TRITON_CACHE_DIR=$(mktemp -d) step 2_attention128.log 150 \
    $python benchmarks/gpu.py --only attention --json /tmp/attention128.json
# 3. The backward's block sizes at 16k, D=128, each pass apart, every candidate compiled first
#    in 12 processes; writes the fastest of each pass over the three masks (2% margin against
#    the default) to winners128.json, even when stopped at its limit. Its first dK/dV row after
#    the defaults keeps the bounds (EVEN off: what D=128 ran until stop 27): if it beats the
#    default, EVEN's spills (3.6% of its loop under Triton 3.6) cost more than its 17% fewer
#    instructions save. Then (stop 30) 128x64 on 8 warps queries down with Q and dO by TMA
#    (0.407 instructions a pair, no spills, under Triton 3.6), (stop 29) the same without TMA
#    (0.442; the default 0.466), the default blocks queries down. If 128x64 queries down wins,
#    LIGHT_KV takes it, with kv_tma where it won and not for packed heads (it passes
#    benchmarks/check_kv_direct.py [--tma] under 3.6 and 3.9); 64x64 queries down would first
#    need is_light narrowed (under 3.6 its partial loop spills 4.1-5.3% with causal,
#    documents, ALiBi).
step 3_sweep128.log 90 $python benchmarks/gpu_backward_sweep.py --lengths 16384 --jobs 12 \
    --winners "$out/winners128.json" --json /tmp/sweep128.json
# 4. The table again with the sweep's winners (triton and FlexAttention, same run):
#    forward+backward as it would be with them shipped. First its rows "tuned against the
#    defaults" at 4k: the winners' output and gradients against the tested defaults' (a
#    DISAGREE there means a build no test ran on this GPU is wrong: do not ship it). Skipped
#    when the defaults won. Its first calls are warm (the check ran them): step 2 has those.
if [[ -s "$out/winners128.json" ]] && ! grep -q '"change": {}' "$out/winners128.json"; then
    step 4_attention128_tuned.log 90 $python benchmarks/gpu.py --only attention \
        --impls triton flex --backward-tuning "$out/winners128.json" --json /tmp/tuned128.json
fi
# 5. Where the time goes at 4k (2.05 ms per fwd+bwd against 0.72 ms of kernels; documents 1.16
#    ms). Since stop 28 a call reuses its plan: 0.22 ms of host per fwd+bwd on a 2-core CPU,
#    kernels stubbed. Per row: the host split by pass and launch on every thread (the backward
#    runs on autograd's device thread), the kernels' idle gaps; the traces come back in traces/.
step 5_host.log 60 $python benchmarks/gpu_host_profile.py --masks window documents --calls 50 \
    --trace-dir "$out/traces" --json /tmp/host.json
# 6. The other sweeps: grouped-query (4 query heads a key head: configs.GROUPED_KV_ROWS is
#    compile-chosen), D=64.
step 6_sweep128_gqa.log 60 $python benchmarks/gpu_backward_sweep.py --group 4 --lengths 16384 \
    --jobs 12 --winners "$out/winners128_gqa.json" --json /tmp/sweep128gqa.json
step 7_sweep64.log 50 $python benchmarks/gpu_backward_sweep.py --head-dim 64 --lengths 16384 \
    --jobs 12 --winners "$out/winners64.json" --json /tmp/sweep64.json
# 8. Where auto should send the other masks, score modifiers and dropout, at 16k.
step 8_routing.log 60 $python benchmarks/gpu_routing.py --lengths 16384 --json /tmp/routing.json
# 9. Compiled decoding (a CUDA graph per token), then D=64 attention.
step 9_decode.log 40 $python benchmarks/gpu.py --only decode --quick --json /tmp/decode.json
step 10_attention64.log 50 $python benchmarks/gpu.py --only attention --head-dim 64 --quick \
    --json /tmp/attention64.json
echo "total $SECONDS s" | tee -a "$out/0_steps.txt"
