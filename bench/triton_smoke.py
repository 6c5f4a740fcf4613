"""Fail fast on a GPU machine if Triton cannot compile and launch a kernel at all.

Run as ``python3 -m fastrecon.bench.triton_smoke`` (a file, not stdin: ``triton.jit`` reads the source).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _iota(out_ptr):  # type: ignore[no-untyped-def]
    offsets = tl.arange(0, 16)
    tl.store(out_ptr + offsets, offsets.to(tl.float32))


def main() -> None:
    out = torch.full((16,), -1.0, device="cuda")
    _iota[(1,)](out)
    torch.cuda.synchronize()
    expected = torch.arange(16, dtype=torch.float32, device="cuda")
    if not torch.equal(out, expected):
        raise SystemExit(f"Triton smoke kernel wrote {out.tolist()}, expected 0..15")
    print(f"triton {triton.__version__} compiled and ran on {torch.cuda.get_device_name()}")


if __name__ == "__main__":
    main()
