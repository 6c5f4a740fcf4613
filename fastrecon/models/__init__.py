"""Model families: E2E-VarNet and the ViT-prior unrolled network, built from a registry config."""

from __future__ import annotations

from itertools import chain
from typing import TYPE_CHECKING

import torch

from fastrecon.errors import ConfigError, FastreconError, WeightsError

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
    raise ConfigError(f"unknown model family {config.family!r}; expected 'varnet' or 'vit_unrolled'.")


def build_empty_model(config: ModelConfig) -> UnrolledNet:
    """The architecture ``config`` describes on the meta device: every shape, no memory, no initialisation.

    For comparing a checkpoint's tensors with what its config implies before anything big is built,
    and as the first step of :func:`fastrecon.weights.build_from_checkpoint`. A config the libraries
    cannot build (e.g. an unknown timm architecture) raises :class:`~fastrecon.errors.ConfigError`.
    """
    try:
        with torch.device("meta"):
            return build_model(config, warn_random_encoder=False)
    except FastreconError:
        raise
    except (AssertionError, AttributeError, KeyError, RuntimeError, TypeError, ValueError) as exc:
        # timm/open_clip refuse inconsistent arguments with assorted exception types.
        raise ConfigError(f"config {config.name!r} cannot be built: {type(exc).__name__}: {exc}") from None


def materialize_buffers(model: torch.nn.Module, device: torch.device | str) -> None:
    """Recompute on ``device`` the buffers a state dict does not carry (config constants), after a meta build.

    Every submodule with a ``reset_constant_buffers(device)`` method recomputes its own. A parameter or
    buffer still on the meta device afterwards raises :class:`~fastrecon.errors.WeightsError`.
    """
    for module in model.modules():
        reset = getattr(module, "reset_constant_buffers", None)
        if callable(reset):
            reset(torch.device(device))
    left = [name for name, tensor in chain(model.named_parameters(), model.named_buffers()) if tensor.is_meta]
    if left:
        raise WeightsError(
            f"after loading, {len(left)} tensors hold no data ({left[:5]}); the weights do not fill this model."
        )
