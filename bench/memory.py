"""Activation memory per slice: measured peak against :func:`fastrecon._memory.activation_bytes_per_slice`.

    python -m fastrecon.bench.memory                       # the calibration cases, one table
    python -m fastrecon.bench.memory --case varnet:4x256x256 --batch 1,4

How the default batch's estimate was calibrated (Linux, CPU, eager fp32, one torch thread): each case
runs ``reconstruct`` once to warm up, resets the process's peak resident memory (``VmHWM``) by writing
``5`` to ``/proc/self/clear_refs``, runs ``reconstruct`` at each batch size and reads the peak above
the resident memory before the call. The per-slice growth is ``(peak(B) - peak(1)) / (B - 1)``; the
estimate should bound it from above without being loose (``ratio`` = estimate / measured per slice).
Models: random weights with seeded non-zero ViT heads, trimmed to 2 cascades (the peak of a cascade
does not grow with their number: each cascade's activations are freed before the next).
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch

CASES = (
    "demo-x8:8x128x128",
    "demo-x8:16x96x200",
    "varnet-x8:4x256x256",
    "varnet-x8:10x128x96",
    "clip-x8:4x128x128",
)
"""``model:CxHxW`` cases measured by default (clip-x8 builds a random ViT-B: a few seconds)."""


def _status() -> dict[str, int]:
    out = {}
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith(("VmHWM", "VmRSS")):
                key, value = line.split(":")
                out[key] = int(value.split()[0]) * 1024
    return out


def _release_free_heap() -> None:
    """Give memory that was freed but kept by glibc's allocator back to the system (``malloc_trim``), so
    ``fn``'s allocations raise the resident size again instead of silently reusing what an earlier
    computation left behind (which made a peak look like zero in a long-lived process)."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if name is None:
        return
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # not glibc
        return
    trim(0)


def peak_rss_bytes(fn: Callable[[], Any]) -> int:
    """Peak resident memory of ``fn()`` above the level before it (Linux: releases the allocator's free
    heap, then resets ``VmHWM``)."""
    _release_free_heap()
    with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
        fh.write("5")
    before = _status()["VmRSS"]
    fn()
    return max(0, _status()["VmHWM"] - before)


def _recon(model: str, cascades: int) -> Any:
    import fastrecon
    from fastrecon.bench.model import seed_heads

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        recon = fastrecon.load(model, weights="auto" if model == "demo-x8" else None, device="cpu")
    recon.model.cascades = recon.model.cascades[:cascades]
    seed_heads(recon.model)
    return recon


def measure(case: str, batches: Sequence[int] = (1, 4), cascades: int = 2) -> dict[str, Any]:
    """Measured peak per batch and per slice for ``case`` (``model:CxHxW``), beside the estimate."""
    import numpy as np

    from fastrecon._memory import activation_bytes_per_slice

    model, shape = case.split(":")
    coils, height, width = (int(v) for v in shape.split("x"))
    recon = _recon(model, cascades)
    gen = np.random.default_rng(0)
    mask = np.zeros(width, bool)
    mask[::8] = True
    mask[width // 2 - 6 : width // 2 + 6] = True
    peaks = {}
    for batch in sorted(set(batches)):
        size = (batch, coils, height, width)
        kspace = ((gen.standard_normal(size) + 1j * gen.standard_normal(size)) * mask).astype(np.complex64)

        def run(kspace: Any = kspace, batch: int = batch) -> Any:
            return recon.reconstruct(kspace, mask, batch_size=batch)

        run()  # warm-up: one-time allocations (FFT plans, thread pools) are not activations
        peaks[batch] = peak_rss_bytes(run)
    lo, hi = min(peaks), max(peaks)
    per_slice = (peaks[hi] - peaks[lo]) / (hi - lo) if hi > lo else peaks[lo] / lo
    estimate = activation_bytes_per_slice(recon.config, coils, height, width)
    return {
        "case": case,
        "peak_mib": {b: round(p / 2**20, 1) for b, p in peaks.items()},
        "measured_per_slice_mib": round(per_slice / 2**20, 1),
        "estimate_per_slice_mib": round(estimate / 2**20, 1),
        "ratio": round(estimate / per_slice, 2) if per_slice > 0 else None,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m fastrecon.bench.memory", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--case", action="append", help="model:CxHxW (repeatable; default: the calibration cases)"
    )
    parser.add_argument("--batch", default="1,4", help="comma-separated batch sizes (default 1,4)")
    parser.add_argument("--cascades", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    for case in args.case or CASES:
        print(json.dumps(measure(case, [int(b) for b in args.batch.split(",")], args.cascades)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
