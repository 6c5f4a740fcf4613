"""Every registered model loads with random weights and reconstructs numpy and torch input.

Full-size architectures (ViT-B encoders, 12 cascades): the slowest tests of the suite on CPU.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import fastrecon
from fastrecon.physics import ifft2c, rss
from tests.helpers import masked_kspace

ZOO = [name for name in fastrecon.list_models() if not name.startswith("test-")]


@pytest.mark.parametrize("name", ZOO)
def test_every_registered_model_reconstructs(name: str) -> None:
    torch.set_num_threads(2)
    recon = fastrecon.load(name, weights=None, device="cpu")
    k, mask = masked_kspace(num=1, coils=4, height=48, width=40, accel=4, acs=8)
    out_np = recon.reconstruct(k[0].numpy())
    assert isinstance(out_np, np.ndarray) and out_np.dtype == np.float32 and out_np.shape == (48, 40)
    assert np.isfinite(out_np).all()
    out_t = recon.reconstruct(k, mask)
    assert isinstance(out_t, torch.Tensor) and out_t.shape == (1, 48, 40)
    torch.testing.assert_close(out_t[0], torch.from_numpy(out_np))
    zero_filled = rss(ifft2c(k), dim=1)
    if recon.config.family == "vit_unrolled":
        # Zero-initialised heads: an untrained ViT-prior model is exactly the zero-filled RSS.
        torch.testing.assert_close(out_t, zero_filled, rtol=1e-5, atol=1e-6)
    else:
        # An untrained VarNet still changes the image (its U-Nets are random), but keeps its scale.
        assert not torch.allclose(out_t, zero_filled, rtol=1e-3, atol=1e-4)
        ratio = float(out_t.norm() / zero_filled.norm())
        assert 0.1 < ratio < 10, ratio
