"""The ViT-prior unrolled network ("clip-x8", "dinov2-x4", "biomedclip-x10", ...), DESIGN.md section 1.

Sensitivity maps from the ACS lines, then ``num_cascades`` cascades of soft data consistency and a
denoiser correction (see :mod:`fastrecon.models.unrolled`). Every cascade has its own decoder and DC
weight; the frozen encoder is one instance, stored once as ``encoder`` and handed to each cascade.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from fastrecon.errors import InputError, InputTypeError
from fastrecon.models.denoiser import ViTDenoiser
from fastrecon.models.encoders import FrozenEncoder, build_encoder
from fastrecon.models.sens import SensitivityModel
from fastrecon.models.unrolled import Cascade, UnrolledNet
from fastrecon.registry import DecoderConfig, EncoderConfig, ModelConfig, SensConfig


class ViTCascade(Cascade):
    """One cascade: a learned soft-DC weight ``(1,)`` (init 1) and a per-cascade :class:`ViTDenoiser`."""

    def __init__(self, encoder: EncoderConfig, decoder: DecoderConfig) -> None:
        super().__init__()
        self.dc_weight = nn.Parameter(torch.ones(1))
        self.denoiser = ViTDenoiser(encoder, decoder)

    def correction(self, image: torch.Tensor, shared: nn.Module | None) -> torch.Tensor:
        """``c(x) = x - D(x)`` of the coil-combined image ``(N, H, W)`` complex; ``shared`` is the encoder."""
        if not isinstance(shared, FrozenEncoder):
            raise InputTypeError(
                f"a ViT cascade needs the shared FrozenEncoder, got {type(shared).__name__}."
            )
        return self.denoiser.correction(image, shared)


class ViTUnrolledNet(UnrolledNet):
    """Sensitivity model + shared frozen encoder + ``num_cascades`` :class:`ViTCascade`.

    Input: masked k-space ``(N, C, H, W)`` complex and its mask; output: RSS image ``(N, H, W)``.
    ``train()`` leaves the encoder in eval mode and its parameters never require grad.
    """

    def __init__(
        self,
        encoder: FrozenEncoder,
        decoder: DecoderConfig,
        num_cascades: int = 12,
        sens: SensConfig | None = None,
    ) -> None:
        super().__init__()
        if num_cascades < 1:
            raise InputError(f"num_cascades={num_cascades}; expected at least 1.")
        sens = sens or SensConfig()
        self.sens_net = SensitivityModel(sens.chans, sens.pools, sens.eps)
        self.encoder = encoder
        self.cascades = nn.ModuleList(ViTCascade(encoder.config, decoder) for _ in range(num_cascades))

    @classmethod
    def from_config(
        cls,
        config: ModelConfig,
        encoder_weights: str | Path | None = None,
        *,
        warn_random_encoder: bool = True,
    ) -> ViTUnrolledNet:
        """Build from a registry config; ``encoder_weights`` as in :func:`~fastrecon.models.encoders.build_encoder`.

        Pass ``warn_random_encoder=False`` when a full checkpoint (encoder included) is loaded next.
        """
        if config.family != "vit_unrolled" or config.encoder is None or config.decoder is None:
            raise InputError(
                f"model {config.name!r} (family {config.family!r}) is not a ViT-prior model with encoder and decoder configs."
            )
        encoder = build_encoder(config.encoder, encoder_weights, warn_random=warn_random_encoder)
        return cls(encoder, config.decoder, num_cascades=config.num_cascades, sens=config.sens)

    def shared_module(self) -> FrozenEncoder:
        return self.encoder

    def trainable_parameters(self) -> int:
        """Number of parameters that require grad (decoders, DC weights, sensitivity model)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)
