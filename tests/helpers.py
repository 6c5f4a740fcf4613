"""Small shared builders for tests: simulated masked k-space and tiny model configs."""

from __future__ import annotations

import dataclasses

import torch

import fastrecon
from fastrecon.physics import fft2c
from fastrecon.registry import (
    TINY_DEMO_ENCODER,
    DecoderConfig,
    InputContract,
    ModelConfig,
    SensConfig,
    VarNetConfig,
    WeightsInfo,
)


def masked_kspace(
    num: int = 1,
    coils: int = 4,
    height: int = 32,
    width: int = 24,
    accel: int = 4,
    acs: int = 6,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Smooth random images, random coil maps, a column mask (every accel-th line + ACS); (k0, mask)."""
    gen = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, height), torch.linspace(-1, 1, width), indexing="ij")
    image = (xx**2 / 0.6 + yy**2 / 0.8 < 1).to(torch.complex64) * (1 + 0.5j)
    image = image + 0.1 * torch.randn(num, height, width, generator=gen, dtype=torch.complex64)
    sens = torch.randn(num, coils, 1, 1, generator=gen, dtype=torch.complex64) * torch.exp(
        -((xx - 0.3) ** 2 + yy**2)
    ).to(torch.complex64)
    kspace = fft2c(sens * image.unsqueeze(1))
    mask = torch.zeros(width, dtype=torch.bool)
    mask[::accel] = True
    start = (width - acs + 1) // 2
    mask[start : start + acs] = True
    return kspace * mask, mask


def tiny_vit_config(name: str = "test-tiny-vit", cascades: int = 2) -> ModelConfig:
    return ModelConfig(
        name=name,
        family="vit_unrolled",
        contract=InputContract(acceleration=4, acs_lines=6),
        weights=WeightsInfo(filename=f"{name}.safetensors", licence="test"),
        num_cascades=cascades,
        encoder=TINY_DEMO_ENCODER,
        decoder=DecoderConfig(channels=(32, 16, 16, 8), input_channels=8),
        sens=SensConfig(chans=4, pools=2),
        description="tiny test model",
    )


def tiny_varnet_config(name: str = "test-tiny-varnet", cascades: int = 2) -> ModelConfig:
    return ModelConfig(
        name=name,
        family="varnet",
        contract=InputContract(acceleration=4, acs_lines=6),
        weights=WeightsInfo(filename=f"{name}.safetensors", licence="test"),
        num_cascades=cascades,
        varnet=VarNetConfig(chans=4, pools=2),
        sens=SensConfig(chans=4, pools=2),
        description="tiny test model",
    )


def replace(config: ModelConfig, **changes: object) -> ModelConfig:
    return dataclasses.replace(config, **changes)  # type: ignore[arg-type]


def seed_nonzero_heads(model: torch.nn.Module, seed: int = 0, std: float = 0.02) -> int:
    """Give every ViT cascade's ``denoiser.head`` seeded normal weights and biases (in place); returns how many.

    The heads are zero-initialised so an untrained ViT-prior model returns the zero-filled input exactly,
    which hides every bug in the encoder and decoders. ``std`` 0.02 (the ViT init scale) keeps the
    correction a few percent of the image per cascade, so 12 cascades stay stable. A model without
    ViT cascades (VarNet) is left alone and 0 is returned.
    """
    gen = torch.Generator().manual_seed(seed)
    count = 0
    for cascade in getattr(model, "cascades", []):
        head = getattr(getattr(cascade, "denoiser", None), "head", None)
        if not isinstance(head, torch.nn.Conv2d):
            continue
        with torch.no_grad():
            head.weight.copy_(torch.randn(head.weight.shape, generator=gen) * std)
            if head.bias is not None:
                head.bias.copy_(torch.randn(head.bias.shape, generator=gen) * std)
        count += 1
    return count


def zero_filled(kspace: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """RSS of the zero-filled coil images of (masked) k-space ``(N, C, H, W)`` -> ``(N, H, W)``: the image
    a model with zero heads returns, which a parity test's model must differ from."""
    from fastrecon.physics import ifft2c, rss

    return rss(ifft2c(kspace if mask is None else kspace * mask), dim=1)


def load_unregistered(config: ModelConfig, **kwargs: object) -> fastrecon.Reconstructor:
    """``fastrecon.load`` a test config with random weights (registered only while it loads)."""
    from fastrecon.registry import _REGISTRY, register

    register(config, overwrite=True)
    try:
        return fastrecon.load(config.name, weights=None, **kwargs)  # type: ignore[arg-type]
    finally:
        _REGISTRY.pop(config.name, None)
