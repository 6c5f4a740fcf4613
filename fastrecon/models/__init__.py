"""Model families: E2E-VarNet and the ViT-prior unrolled network, built from a registry config."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastrecon.models.unrolled import UnrolledNet
    from fastrecon.registry import ModelConfig


def build_model(
    config: ModelConfig, *, encoder_weights: str | None = None, warn_random_encoder: bool = True
) -> UnrolledNet:
    """Build the (randomly initialised) model a config describes.

    ``encoder_weights`` is a local open_clip/timm checkpoint for the frozen encoder of the ViT-prior
    models (used for training); it is ignored for E2E-VarNet. Building a ViT model whose encoder has
    published weights without ``encoder_weights`` warns, unless ``warn_random_encoder=False`` (the
    caller loads a full checkpoint next, encoder included).
    """
    if config.family == "varnet":
        from fastrecon.models.varnet import VarNet

        return VarNet.from_config(config)
    if config.family == "vit_unrolled":
        from fastrecon.models.vit_unrolled import ViTUnrolledNet

        warn = warn_random_encoder and config.encoder is not None and config.encoder.pretrained is not None
        return ViTUnrolledNet.from_config(config, encoder_weights=encoder_weights, warn_random_encoder=warn)
    raise ValueError(f"unknown model family {config.family!r}; expected 'varnet' or 'vit_unrolled'.")
