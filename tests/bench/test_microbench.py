"""pytest-benchmark microbenchmarks: the DC ops (eager reference, best torch, hybrid, fused custom ops)
and the frozen encoder. Skipped in the normal test run; measure with

    pytest tests/bench --benchmark-only            # add --benchmark-json=out.json to keep the numbers

On CPU the fused ops run their pure-torch reference (or the Triton interpreter with
TRITON_INTERPRET=1, whose timings mean nothing); on a GPU they run the Triton kernels.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from fastrecon.bench import _dc_baselines as B
from fastrecon.bench import model as M

pytestmark = pytest.mark.microbench

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
# (C, H, W): the cine shape on a GPU; a small one on CPU so the suite stays quick.
SHAPE = M.SHAPES["cine"] if DEVICE.type == "cuda" else (4, 64, 48)


def _sync(out: Any) -> Any:
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()
    return out


@pytest.fixture(scope="module")
def dc_inputs() -> dict[str, Any]:
    c, h, w = SHAPE
    gen = torch.Generator().manual_seed(0)

    def randc(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, dtype=torch.complex64, generator=gen).to(DEVICE)

    return {
        "k": randc(1, c, h, w),
        "k0": randc(1, c, h, w),
        "s": randc(1, c, h, w),
        "x": randc(1, h, w),
        "mask": M.mask_for("equispaced-x8", w).to(DEVICE),
        "w": torch.tensor([0.7], device=DEVICE),
    }


@pytest.mark.parametrize("impl", ["eager-ref", "best-torch", "hybrid", "custom-op"])
def test_cascade_step(benchmark: Any, dc_inputs: dict[str, Any], impl: str) -> None:
    from fastrecon.kernels import ops

    d = dc_inputs
    _, h, w = SHAPE
    if impl == "eager-ref":
        fn = lambda: ops.cascade_step_ref(d["k"], d["k0"], d["mask"], d["w"], d["s"], d["x"])  # noqa: E731
    elif impl == "best-torch":
        best = B.BestTorch(h, w, DEVICE)
        fn = lambda: best.cascade_step(d["k"], d["k0"], d["mask"], d["w"], d["s"], d["x"])  # noqa: E731
    elif impl == "hybrid":
        hybrid = B.HybridTorch(w, DEVICE)
        hk, hk0 = hybrid.to_hybrid(d["k"]), hybrid.to_hybrid(d["k0"])
        fn = lambda: hybrid.cascade_step(hk, hk0, d["mask"], d["w"], d["s"], d["x"])  # noqa: E731
    else:
        fn = lambda: ops.cascade_step(d["k"], d["k0"], d["mask"], d["w"], d["s"], d["x"])  # noqa: E731
    k_next, x_next = benchmark(lambda: _sync(fn()))
    assert k_next.shape == d["k"].shape and x_next.shape == d["x"].shape


@pytest.mark.parametrize("op", ["soft_dc", "sens_expand", "sens_reduce"])
def test_dc_op(benchmark: Any, dc_inputs: dict[str, Any], op: str) -> None:
    from fastrecon.kernels import ops

    d = dc_inputs
    calls = {
        "soft_dc": lambda: ops.soft_dc(d["k"], d["k0"], d["mask"], d["w"]),
        "sens_expand": lambda: ops.sens_expand(d["x"], d["s"]),
        "sens_reduce": lambda: ops.sens_reduce(d["k"], d["s"]),
    }
    out = benchmark(lambda: _sync(calls[op]()))
    assert torch.isfinite(torch.view_as_real(out)).all()


@pytest.mark.parametrize("batch", [1, 4])
def test_encoder(benchmark: Any, batch: int) -> None:
    """The demo model's frozen encoder call (pre-processing + blocks), as each cascade runs it."""
    recon = M.load_reference("demo-x8", "auto", str(DEVICE))
    encode = recon.model.encoder_call()
    magnitude = torch.rand(batch, 1, 128, 128, generator=torch.Generator().manual_seed(0)).to(DEVICE)
    with torch.inference_mode():
        features = benchmark(lambda: _sync(encode(magnitude)))
    assert len(features) == recon.config.encoder.num_blocks
