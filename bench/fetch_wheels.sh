#!/usr/bin/env bash
# Run HERE (a machine with the package registry), before a GPU call: fetch the wheels the lent GPU
# machine lacks (it has torch, triton, timm, CuPy, h5py, safetensors, onnxruntime, pytest-benchmark;
# not open_clip_torch and its ftfy/wcwidth) into .whl/, which git ignores. Carry `.whl` in the call.
set -euo pipefail
cd "$(dirname "$0")/.."
exclude="$(git rev-parse --git-path info/exclude)"  # works in linked worktrees too (.git is a file there)
mkdir -p "$(dirname "$exclude")"
grep -qx '/.whl/' "$exclude" 2>/dev/null || echo '/.whl/' >> "$exclude"
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl open_clip_torch ftfy wcwidth hdf5storage
ls -la .whl
