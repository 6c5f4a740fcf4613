#!/usr/bin/env bash
# The GPU suite in one device call (see README "GPU runs"):
#   device run, carry [".whl"]:  bash bench/gpu_suite.sh            # the default order, < 600 s
#                                bash bench/gpu_suite.sh --part N   # part N of the full matrix, each < 600 s
#                                bash bench/gpu_suite.sh --list     # what each part runs
# One order for every issue that adds to it: Triton smoke test, DC benchmark, a model-benchmark subset
# (clip-x8 and varnet-x8, random init with seeded heads, cine shape, eager fp32 vs compile fp16 and
# tensorrt fp16 if present, batch 1 and 16, with parity), then the GPU tests. Every command runs under
# `timeout -k 5`: the preamble's limits (wheels 40 s, project 40 s, machine record 15 s) plus the steps' limits
# plus 5 s of kill grace each sum below 600 s for the default order and for every part (one device command
# lasts at most 600 s; tests/bench/test_gpu_suite.py checks the sums).
# Installs the carried wheels and the project (--no-deps: keeps the machine's torch); PIP_NO_INDEX=1
# (the machine reaches no index). Everything lands in $OUT (device tool) or bench/results/<date>-gpu/.
# Exit status: non-zero if any step failed or timed out.
set -uo pipefail
cd "$(dirname "$0")/.."
export PIP_NO_INDEX=1 PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
status=0
part=""
case "${1:-}" in
    --part) part="${2:?--part needs a number}" ;;
    --list) grep -E '^    [0-9]+\)' "$0"; exit 0 ;;
    "") ;;
    *) echo "usage: $0 [--part N | --list]"; exit 2 ;;
esac
out="${OUT:-bench/results/$(date -u +%Y-%m-%d)-gpu${part:+-part$part}}"
mkdir -p "$out"

# step SECONDS NAME CMD...: run CMD under `timeout -k 5 SECONDS`, its output in $out/NAME.log and on stdout.
step() {
    local limit="$1" name="$2"
    shift 2
    echo "== $name (limit ${limit}s): $*"
    local began=$SECONDS
    timeout -k 5 "$limit" "$@" > >(tee "$out/$name.log") 2>&1
    local rc=$?
    echo "== $name: exit $rc after $((SECONDS - began))s"
    if [ $rc -ne 0 ]; then
        status=1
        [ $rc -eq 124 ] || [ $rc -eq 137 ] && echo "!! $name timed out"
    fi
    return 0
}

# --- preamble: wheels, project, machine record (bounded too) -------------------------------------
if compgen -G ".whl/*.whl" > /dev/null; then
    timeout -k 5 40 python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH} || { echo "!! wheel install failed"; status=1; }
fi
timeout -k 5 40 python3 -m pip install -q --no-deps --no-build-isolation -e . || { echo "project install failed"; exit 1; }
timeout -k 5 15 bash -c '
    date -u +%FT%TZ
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
    python3 -c "import torch, triton; print(\"torch\", torch.__version__, \"cuda\", torch.version.cuda, \"triton\", triton.__version__, torch.cuda.get_device_name())"
' 2>&1 | tee "$out/machine.txt"

model_bench() {  # NAME SECONDS ARGS...: fastrecon bench into $out/model (its own files only)
    local name="$1" limit="$2"
    shift 2
    step "$limit" "model-$name" python3 -m fastrecon.bench.cli --device cuda --name "$name" --out "$out/model" \
        --max-seconds 20 "$@"
}

if [ -z "$part" ]; then
    # --- the default order: 95 (preamble) + 30 + 95 + 240 + 100 = 560 s, + 35 s kill grace = 595 s at most
    # Fail fast if Triton cannot compile and launch at all (it builds a small C helper on first use).
    step 30 triton-smoke python3 -m fastrecon.bench.triton_smoke
    if [ $status -ne 0 ]; then echo "!! triton smoke test failed: stopping"; exit 1; fi
    step 95 bench-dc python3 -m fastrecon.bench.dc --scenario knee --scenario cine --batch 1,16 \
        --mask equispaced-x8 --iters 50 --no-compile --out "$out/dc"  # compiled baselines: --part 1
    model_bench subset 240 --model clip-x8,varnet-x8 --weights random --shape cine \
        --backend eager,compile:fp16,tensorrt:fp16 --batch 1,16
    step 100 gpu-tests python3 -m pytest -q -m gpu tests -p no:cacheprovider --durations=10 \
        --junitxml="$out/gpu-tests.xml"
else
    # --- the full matrix, one part per device call: 95 (preamble) + the part's steps + kill grace < 600 s
    case "$part" in
    1)  # DC benchmark: every scenario, batch 1 and 16, both masks, compiled baselines, tile sweep
        step 470 bench-dc-full python3 -m fastrecon.bench.dc --out "$out/dc-full" ;;
    2)  # clip-x8, cine: every backend and precision, batch 1 / 4 / 16 / 32
        model_bench clip-cine 470 --model clip-x8 --weights random --shape cine \
            --backend eager,triton,compile,tensorrt --precision fp32,fp16,bf16 --batch 1,4,16,32 ;;
    3)  # varnet-x8, cine: the same
        model_bench varnet-cine 470 --model varnet-x8 --weights random --shape cine \
            --backend eager,triton,compile --precision fp32,fp16,bf16 --batch 1,4,16,32 ;;
    4)  # clip-x8 on knee and brain, eager fp32 vs the fast paths in fp16
        model_bench clip-knee-brain 470 --model clip-x8 --weights random --shape knee,brain \
            --backend eager,triton,compile:fp16,tensorrt:fp16 --batch 1,16 ;;
    5)  # the other encoders (dinov2 257 tokens, biomedclip), cine, fp16 fast paths
        model_bench encoders 470 --model dinov2-x8,biomedclip-x8 --weights random --shape cine \
            --backend eager,compile:fp16,tensorrt:fp16 --batch 1,16 ;;
    6)  # masks and accelerations: clip x4 / x10 equispaced and random, eager vs compile fp16
        model_bench masks 470 --model clip-x4,clip-x10 --weights random --shape cine \
            --mask equispaced-x4,random-x4,equispaced-x10,random-x10 --backend eager,compile:fp16 --batch 16 ;;
    7)  # the real bundled checkpoint on the GPU, every backend
        model_bench demo 235 --model demo-x8 --weights auto --shape demo \
            --backend eager,triton,compile,tensorrt --precision fp32,fp16,bf16 --batch 1,16,64
        step 230 kernel-tests python3 -m pytest -q -m "not gpu" tests/kernels -p no:cacheprovider \
            --junitxml="$out/kernel-tests.xml" ;;
    8)  # the whole test suite on the GPU machine
        step 470 all-tests python3 -m pytest -q tests -p no:cacheprovider --junitxml="$out/all-tests.xml" ;;
    *)  echo "unknown part $part (1..8; --list)"; exit 2 ;;
    esac
fi
echo "results in $out (exit $status)"
exit $status
