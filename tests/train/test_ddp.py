"""Multi-process training through torchrun (DDP, gloo on CPU): rank 0 writes one loadable checkpoint."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

import fastrecon
from fastrecon.weights import sha256_file


def test_torchrun_two_processes(tmp_path: Path) -> None:
    out = tmp_path / "ddp.safetensors"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "fastrecon.cli", "train", "--model", "demo-x8", "--data", "simulated",
        "--sim-train", "4", "--sim-val", "2", "--sim-size", "32", "--sim-coils", "4", "--epochs", "1",
        "--accel", "4", "--center-fraction", "0.125", "--out", str(out),
    ]  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    # Only rank 0 prints the summary and writes the file.
    assert result.stdout.count("sha256 ") == 1 and f"sha256 {sha256_file(out)}" in result.stdout
    recon = fastrecon.load(out, device="cpu")
    assert recon.config.name == "demo-x8"
    kspace = torch.zeros(4, 32, 32, dtype=torch.complex64)
    kspace[:, :, 14:18] = 1.0
    assert bool(torch.isfinite(recon.reconstruct(kspace)).all())
