#!/usr/bin/env bash
# The whole GPU suite in one call on a lent GPU machine (see README "GPU runs"):
#   device run, carry [".whl"]:  bash bench/gpu_suite.sh
# Installs the carried wheels and the project (--no-deps: keeps the machine's torch), records the
# machine, runs the GPU tests, the compiled Triton kernel tests and the benchmarks; everything lands
# in $OUT (device tool) or bench/results/<date>/. Exit status: non-zero if any step failed.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-bench/results/$(date -u +%Y-%m-%d)}"
mkdir -p "$out"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
status=0
step() { echo "== $*"; "$@" || { echo "!! failed ($?): $*"; status=1; }; }

if compgen -G ".whl/*.whl" > /dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH} || { echo "!! wheel install failed"; status=1; }
fi
python3 -m pip install -q --no-deps --no-build-isolation -e . || { echo "project install failed"; exit 1; }
{
    date -u +%FT%TZ
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
    python3 -c "import torch, triton; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'triton', triton.__version__, torch.cuda.get_device_name())"
} | tee "$out/machine.txt"

# Fail fast if Triton cannot compile and launch at all (it builds a small C helper on first use).
python3 -m fastrecon.bench.triton_smoke || { echo "!! triton smoke test failed"; exit 1; }

# Each step is bounded so one device command (600 s at most) always reaches the benchmark.
step timeout 200 python3 -m pytest -q -m gpu tests -p no:cacheprovider --durations=10 --junitxml="$out/gpu-tests.xml"
step timeout 200 python3 -m pytest -q -m "not gpu" tests/kernels -p no:cacheprovider --durations=10 --junitxml="$out/kernel-tests.xml"
step timeout 240 python3 -m fastrecon.bench.dc --json "$out/bench-dc.json" > "$out/bench-dc.txt" 2>&1
cat "$out/bench-dc.txt"
if [ "${FULL_SUITE:-0}" = "1" ]; then
    step python3 -m pytest -q tests -p no:cacheprovider --junitxml="$out/all-tests.xml"
fi
echo "results in $out"
exit $status
