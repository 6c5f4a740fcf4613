"""Every registered model loads with random weights and reconstructs numpy and torch input.

Full-size architectures (ViT-B encoders, 12 cascades): the slowest tests of the suite on CPU.
The ViT models' heads are zero-initialised (an untrained model returns the zero-filled image
exactly, whatever its encoder and decoders compute), so the heads get seeded non-zero weights
first: the output must then move away from zero-filled, and agree with a float64 run.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

import fastrecon
from fastrecon.physics import ifft2c, rss
from tests.helpers import masked_kspace, seed_nonzero_heads

ZOO = [name for name in fastrecon.list_models() if not name.startswith("test-")]

# fp32 vs fp64, relative L2, per cascade: the longest accumulations are 3072-long dot products (ViT-B MLP)
# and ~2600-long ones (VarNet 3x3 convolutions over 288 channels); a random-walk rounding error grows like
# sqrt(K) * eps32, so allow 8 * sqrt(4096) * eps32 = 6.1e-5 (measured: 2e-7 .. 1.5e-6 for two cascades).
FP64_RTOL_PER_CASCADE = 8 * math.sqrt(4096) * torch.finfo(torch.float32).eps
# The model must change the image by much more than that, or the comparison could not tell.
MIN_CHANGE = 0.02  # relative L2 distance from the zero-filled RSS (measured: 0.1 .. 0.85)
CHECKED_CASCADES = 1  # the float64 run (slow on CPU for ViT-B) covers the first cascade
# x4 / x8 / x10 of a family share one architecture: the float64 run checks one of them (x8) per family.
FLOAT64_CHECKED = {name for name in ZOO if name.endswith("-x8")} | {"demo-x8"}


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


@pytest.mark.parametrize("name", ZOO)
def test_every_registered_model_reconstructs(name: str) -> None:
    torch.set_num_threads(2)
    recon = fastrecon.load(name, weights=None, device="cpu")
    seeded = seed_nonzero_heads(recon.model, seed=0)
    assert seeded == (recon.config.num_cascades if recon.config.family == "vit_unrolled" else 0)
    k, mask = masked_kspace(num=1, coils=4, height=48, width=40, accel=4, acs=8)
    out_np = recon.reconstruct(k[0].numpy())
    assert isinstance(out_np, np.ndarray) and out_np.dtype == np.float32 and out_np.shape == (48, 40)
    assert np.isfinite(out_np).all()
    out_t = recon.reconstruct(k, mask)
    assert isinstance(out_t, torch.Tensor) and out_t.shape == (1, 48, 40)
    torch.testing.assert_close(out_t[0], torch.from_numpy(out_np))
    zero_filled = rss(ifft2c(k), dim=1)
    change = _relative(out_t, zero_filled)
    assert change > MIN_CHANGE, f"{name}: output only {change:.2e} away from zero-filled"

    if name not in FLOAT64_CHECKED:
        return
    # Second path: the same model (first cascade) in float64 on complex128 k-space.
    short = copy.deepcopy(recon.model)
    short.cascades = torch.nn.ModuleList(list(short.cascades)[:CHECKED_CASCADES])
    with torch.inference_mode():
        single = short.unroll(k, mask).rss_image()
        double = short.double().unroll(k.to(torch.complex128), mask).rss_image()
    assert double.dtype == torch.float64
    error = _relative(single, double)
    tolerance = FP64_RTOL_PER_CASCADE * CHECKED_CASCADES
    assert error < tolerance, f"{name}: fp32 vs fp64 relative error {error:.2e} > {tolerance:.2e}"
    assert _relative(single, zero_filled) > 100 * tolerance  # the comparison can tell a broken cascade
