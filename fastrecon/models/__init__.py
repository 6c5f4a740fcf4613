"""Model families: E2E-VarNet and the ViT-prior unrolled network, built from a registry config."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastrecon.models.unrolled import UnrolledNet
    from fastrecon.registry import ModelConfig


def build_model(config: ModelConfig, *, encoder_weights: str | None = None) -> UnrolledNet:
    """Build the (randomly initialised) model a config describes.

    ``encoder_weights`` is a local open_clip/timm checkpoint for the frozen encoder of the ViT-prior
    models (used for training); it is ignored for E2E-VarNet.
    """
    if config.family == "varnet":
        from fastrecon.models.varnet import VarNet

        return VarNet.from_config(config)
    if config.family == "vit_unrolled":
        from fastrecon.models.vit_unrolled import ViTUnrolledNet

        return ViTUnrolledNet.from_config(config, encoder_weights=encoder_weights)
    raise ValueError(f"unknown model family {config.family!r}; expected 'varnet' or 'vit_unrolled'.")
