"""The ViT-prior unrolled network ("clip-x8", "dinov2-x4", "biomedclip-x10", ...), DESIGN.md section 1.

Sensitivity maps from the ACS lines, then ``num_cascades`` cascades of soft data consistency and a
denoiser correction (see :mod:`fastrecon.models.unrolled`). Every cascade has its own decoder and DC
weight; the frozen encoder is one instance, stored once as ``encoder`` and handed to each cascade.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import cast

import torch
from torch import nn

from fastrecon.errors import InputError, InputTypeError
from fastrecon.models.denoiser import Decode, ViTDenoiser
from fastrecon.models.encoders import FrozenEncoder, build_encoder
from fastrecon.models.sens import SensitivityModel
from fastrecon.models.unrolled import Cascade, Correction, Encode, UnrolledNet
from fastrecon.registry import DecoderConfig, EncoderConfig, ModelConfig, SensConfig

Features = Callable[[torch.Tensor], Sequence[torch.Tensor]]
"""Normalised pixels ``(B, 3, S, S)`` -> one feature map ``(B, D, g, g)`` per used encoder block."""


class ViTCascade(Cascade):
    """One cascade: a learned soft-DC weight ``(1,)`` (init 1) and a per-cascade :class:`ViTDenoiser`."""

    def __init__(self, encoder: EncoderConfig, decoder: DecoderConfig) -> None:
        super().__init__()
        self.dc_weight = nn.Parameter(torch.ones(1))
        self.denoiser = ViTDenoiser(encoder, decoder)

    def correction(
        self, image: torch.Tensor, encode: Encode | None, decode: Decode | None = None
    ) -> torch.Tensor:
        """``c(x) = x - D(x)`` of the coil-combined image ``(N, H, W)`` complex; ``encode`` is the
        model's encoder call (magnitude ``(B, 1, H, W)`` -> feature maps); ``decode`` an optional
        replacement of the denoiser's real-valued decoder (an engine)."""
        if encode is None:
            raise InputTypeError("a ViT cascade needs the model's encoder call for its features, got None.")
        return self.denoiser.correction(image, encode, decode)


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
        if decoder.skip_layers and max(decoder.skip_layers) >= encoder.config.num_blocks:
            raise InputError(
                f"decoder skip layers {decoder.skip_layers} need encoder blocks the encoder "
                f"({encoder.config.num_blocks} blocks) does not give."
            )
        self.encoder = encoder
        # A replacement for ``encoder.features`` (an engine); set with set_encoder_features.
        self._features: Features | None = None
        # Replacements for each cascade's ``denoiser.decode`` (engines); set with set_decoders.
        self._decoders: list[Decode] | None = None
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

    def encoder_call(self) -> Encode:
        """The one encoder call site: torch pre-processing, then ``features`` (or its engine)."""
        features = self._features if self._features is not None else self.encoder.features
        preprocess = self.encoder.preprocess

        def encode(magnitude: torch.Tensor) -> Sequence[torch.Tensor]:
            return features(preprocess(magnitude))

        return encode

    def correction_calls(self) -> list[Correction]:
        encode = self.encoder_call()
        decoders: list[Decode | None] = (
            list(self._decoders) if self._decoders else [None] * len(self.cascades)
        )
        return [
            functools.partial(cast(ViTCascade, c).correction, encode=encode, decode=d)
            for c, d in zip(self.cascades, decoders, strict=True)
        ]

    def reset_backend(self) -> None:
        super().reset_backend()
        self._features = None
        self._decoders = None

    def backend_objects(self) -> list[object]:
        return [*super().backend_objects(), self._features, *(self._decoders or [])]

    def set_decoders(self, decoders: Sequence[Decode] | None) -> None:
        """Replace each cascade's real-valued ``denoiser.decode`` (one callable per cascade, in order);
        ``None`` restores the modules' own decoders."""
        if decoders is not None and len(decoders) != len(self.cascades):
            raise InputError(f"got {len(decoders)} decoders for {len(self.cascades)} cascades.")
        self._decoders = list(decoders) if decoders is not None else None

    @property
    def features_replaced(self) -> bool:
        """True when an engine runs the encoder's blocks instead of ``encoder.features``."""
        return self._features is not None

    def set_encoder_features(self, features: Features | None, *, check_batch: int = 2) -> None:
        """Replace ``encoder.features`` with ``features``: normalised pixels ``(B, 3, S, S)`` float ->
        ``num_blocks`` maps ``(B, D, g, g)`` (S = ``img_size``, g = ``img_size // patch_size``).

        Dimensions are checked once, here, on a batch of ``check_batch`` images on the encoder's
        device; ``None`` restores the encoder's own blocks.
        """
        if features is None:
            self._features = None
            return
        config = self.encoder.config
        grid = self.encoder.grid_size
        probe = torch.zeros(check_batch, 3, config.img_size, config.img_size, device=self.encoder.mean.device)
        with torch.inference_mode():
            maps = list(features(probe))
        expected = (check_batch, config.embed_dim, grid, grid)
        shapes = [tuple(m.shape) for m in maps]
        if len(maps) != config.num_blocks or any(shape != expected for shape in shapes):
            raise InputError(
                f"encoder replacement gives {len(maps)} maps of shapes {shapes}; expected {config.num_blocks} "
                f"maps of shape {expected} for pixels {tuple(probe.shape)}."
            )
        self._features = features

    def trainable_parameters(self) -> int:
        """Number of parameters that require grad (decoders, DC weights, sensitivity model)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)
