"""Models for backend parity tests whose output is not the zero-filled input.

The ViT heads are zero-initialised, so a random-weights ViT model returns zero-filled exactly and
any wiring error would pass a parity test. :func:`seed_nonzero_heads` gives every cascade's head
seeded non-zero weights; :func:`zero_filled` is the image such a model must differ from.
"""

from __future__ import annotations

from typing import cast

import torch

from fastrecon.models.denoiser import ViTDenoiser
from fastrecon.models.unrolled import UnrolledNet
from fastrecon.physics import ifft2c, rss


def seed_nonzero_heads(model: UnrolledNet, seed: int = 0, std: float = 0.05) -> UnrolledNet:
    """Draw every ViT cascade's decoder head (weights and bias) from N(0, std^2), seeded; in place."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for cascade in model.cascades:
            head = cast(ViTDenoiser, cascade.denoiser).head
            for tensor in (head.weight, cast(torch.Tensor, head.bias)):
                tensor.copy_(torch.randn(tensor.shape, generator=gen) * std)
    return model


def zero_filled(kspace: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """RSS of the inverse FFT of the masked k-space ``(N, C, H, W)`` -> ``(N, H, W)``."""
    return rss(ifft2c(kspace * mask), dim=1)
