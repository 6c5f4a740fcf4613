"""The frozen ViT encoder shared by every cascade of a ViT-prior model (DESIGN.md sections 1, 5, 6).

Only blocks ``0 .. num_blocks-1`` (0..5 for the registered models) ever run: the encoder asks the
library for those intermediates with ``stop_early=True`` and, by default, prunes the later blocks,
the final norm and the head, so neither the state dict nor an exported graph carries them.

Weights come from a local file (open_clip or timm state dict, ``.safetensors`` or a torch file read
with ``weights_only=True``), from the library's own pretrained tag when explicitly asked for with
``weights="pretrained"`` (needs the network once), or are random (``weights=None``, for tests).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol, cast

import torch
import torch.nn.functional as F
from torch import nn

from fastrecon.errors import InputError, UnknownNameError, WeightsError
from fastrecon.registry import EncoderConfig

PRETRAINED = "pretrained"
"""Pass as ``weights`` to load the library's published weights (``config.pretrained``); needs the network."""

# Parts of the full backbones that pruning removes; their keys in a full checkpoint are expected extras.
_PRUNED_KEYS = {
    "open_clip": (re.compile(r"^transformer\.resblocks\.(\d+)\."), re.compile(r"^(ln_post\.|proj$)")),
    "timm": (re.compile(r"^blocks\.(\d+)\."), re.compile(r"^(norm\.|fc_norm\.|head\.|head_drop\.)")),
}


class _IntermediatesViT(Protocol):
    """The two methods open_clip's and timm's ViTs share and this module relies on."""

    def forward_intermediates(
        self,
        x: torch.Tensor,
        *,
        indices: list[int],
        stop_early: bool,
        intermediates_only: bool,
        output_fmt: str,
    ) -> Any: ...

    def prune_intermediate_layers(
        self, indices: list[int], prune_norm: bool, prune_head: bool
    ) -> list[int]: ...


class FrozenEncoder(nn.Module):
    """A frozen ViT of which only the first ``config.num_blocks`` blocks run.

    Input: magnitude images already scaled to ``[0, 1]``, ``(B, 1, H, W)`` float. The module repeats
    them to 3 channels, resizes them bilinearly to ``config.img_size`` and normalises them with
    ``config.mean`` / ``config.std``. Output: one feature map per block, a tuple of
    ``config.num_blocks`` tensors ``(B, D, g, g)`` with ``D = config.embed_dim`` and
    ``g = img_size // patch_size`` (class and register tokens dropped).

    The parameters never require grad and the module stays in eval mode whatever its parent's
    ``train()`` says (no dropout, no drop-path). Gradients still flow through it to its input.
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, backbone: nn.Module, config: EncoderConfig) -> None:
        super().__init__()
        if config.source not in _PRUNED_KEYS:
            raise UnknownNameError(f"unknown encoder source {config.source!r}. Available: open_clip, timm.")
        self.config = config
        self.backbone = backbone
        self.indices = list(range(config.num_blocks))
        num_blocks = len(self.blocks)
        if not 0 < config.num_blocks <= num_blocks:
            raise InputError(
                f"encoder {config.arch!r} has {num_blocks} blocks; num_blocks={config.num_blocks} must be in 1..{num_blocks}."
            )
        # Config-derived constants: not persistent, so state dicts hold only the ViT's own weights.
        self.reset_constant_buffers(None)
        self.requires_grad_(False)
        self.train(False)

    def reset_constant_buffers(self, device: torch.device | None) -> None:
        """(Re)compute the non-persistent ``mean``/``std`` buffers from the config on ``device``
        (default: the current default device). Called after a meta-device build is loaded
        (:func:`fastrecon.models.materialize_buffers`), since state dicts do not carry them."""
        for name, values in (("mean", self.config.mean), ("std", self.config.std)):
            tensor = torch.tensor(values, dtype=torch.float32, device=device).view(1, 3, 1, 1)
            self.register_buffer(name, tensor, persistent=False)

    @property
    def grid_size(self) -> int:
        """Side ``g`` of the token grid: ``img_size // patch_size``."""
        return self.config.img_size // self.config.patch_size

    @property
    def embed_dim(self) -> int:
        return self.config.embed_dim

    @property
    def blocks(self) -> nn.ModuleList | nn.Sequential:
        """The backbone's transformer blocks (all 12 before pruning, ``num_blocks`` after)."""
        if self.config.source == "open_clip":
            blocks = getattr(self.backbone.transformer, "resblocks", None)
        else:
            blocks = getattr(self.backbone, "blocks", None)
        if not isinstance(blocks, nn.ModuleList | nn.Sequential):
            raise InputError(f"encoder {self.config.arch!r} has no list of transformer blocks; is it a ViT?")
        return blocks

    @property
    def is_pruned(self) -> bool:
        """True when the blocks after ``num_blocks - 1`` have been removed."""
        return len(self.blocks) == self.config.num_blocks

    def prune(self) -> FrozenEncoder:
        """Remove the blocks after ``num_blocks - 1``, the final norm and the head (in place)."""
        cast(_IntermediatesViT, self.backbone).prune_intermediate_layers(
            self.indices, prune_norm=True, prune_head=True
        )
        return self

    def train(self, mode: bool = True) -> FrozenEncoder:
        """Always eval: a frozen encoder never switches dropout or drop-path on."""
        return super().train(False)

    def preprocess(self, magnitude: torch.Tensor) -> torch.Tensor:
        """``(B, 1, H, W)`` float in ``[0, 1]`` -> normalised ``(B, 3, img_size, img_size)``."""
        if magnitude.ndim != 4 or magnitude.shape[1] != 1:
            raise InputError(
                f"encoder input has shape {tuple(magnitude.shape)}; expected (B, 1, H, W) magnitude in [0, 1]."
            )
        if magnitude.is_complex() or not magnitude.is_floating_point():
            raise InputError(
                f"encoder input has dtype {magnitude.dtype}; expected a real floating-point magnitude."
            )
        size = self.config.img_size
        x = magnitude.expand(-1, 3, -1, -1)
        if tuple(x.shape[-2:]) != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
        return (x - self.mean) / self.std

    def features(self, pixels: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Run blocks ``0 .. num_blocks-1`` on normalised pixels ``(B, 3, S, S)`` -> ``num_blocks`` x ``(B, D, g, g)``."""
        # Pass the list: an int n means "the last n blocks" and would run all of them.
        out = cast(_IntermediatesViT, self.backbone).forward_intermediates(
            pixels, indices=self.indices, stop_early=True, intermediates_only=True, output_fmt="NLC"
        )
        tokens: list[torch.Tensor] = out["image_intermediates"] if isinstance(out, dict) else out
        batch, grid = pixels.shape[0], self.grid_size
        maps = []
        for t in tokens:  # (B, g*g, D), prefix tokens already dropped by the library
            if t.shape[1] != grid * grid:
                raise InputError(
                    f"encoder returned {t.shape[1]} patch tokens; expected {grid}x{grid} for img_size {self.config.img_size}."
                )
            maps.append(t.transpose(1, 2).reshape(batch, t.shape[2], grid, grid))
        return tuple(maps)

    def forward(self, magnitude: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``(B, 1, H, W)`` magnitude in ``[0, 1]`` -> ``num_blocks`` feature maps ``(B, D, g, g)``."""
        return self.features(self.preprocess(magnitude))


def build_encoder(
    config: EncoderConfig, weights: str | Path | None = None, *, prune: bool = True, warn_random: bool = True
) -> FrozenEncoder:
    """Build the frozen encoder a config describes.

    ``weights``: ``None`` (random initialisation, warns), a local checkpoint path, or
    ``"pretrained"`` for the library's published weights named by ``config.pretrained`` (needs the
    network; never used in tests). Local files may be a full open_clip checkpoint (keys
    ``visual.*``; BiomedCLIP's ``visual.trunk.*``), a visual-only / timm state dict, or a pruned
    encoder's own state dict. ``prune=False`` keeps blocks ``num_blocks..`` (never run) in the module.
    ``warn_random=False`` silences the random-initialisation warning, for callers that load a full
    model checkpoint (encoder included) right after building.
    """
    if weights is not None and str(weights) == PRETRAINED:
        backbone = _build_pretrained(config)
    else:
        backbone = _build_random(config)
    encoder = FrozenEncoder(backbone, config)
    if prune:
        encoder.prune()
    if weights is None:
        if warn_random:
            warnings.warn(
                f"encoder {config.kind!r} ({config.arch}) is random-initialised (no weights given); "
                "pass a checkpoint path or weights='pretrained' for real features.",
                UserWarning,
                stacklevel=2,
            )
    elif str(weights) != PRETRAINED:
        load_encoder_weights(encoder, weights)
    return encoder


def load_encoder_weights(encoder: FrozenEncoder, path: str | Path) -> None:
    """Load a local checkpoint into ``encoder`` (see :func:`build_encoder` for the accepted layouts).

    Raises :class:`WeightsError` when the file is missing, unreadable or does not match the architecture.
    """
    state = _read_state_dict(Path(path))
    source = encoder.config.source
    if source == "open_clip":
        state = _strip_prefix(state, ("visual.",))
    else:
        import timm.models.vision_transformer as vit

        state = _strip_prefix(state, ("visual.trunk.", "trunk."))
        if isinstance(encoder.backbone, vit.VisionTransformer):
            # timm's own converter: resamples pos_embed to the model's grid, converts Meta's DINOv2 layout.
            state = vit.checkpoint_filter_fn(state, encoder.backbone)
    expected = encoder.backbone.state_dict()
    pruned_blocks, pruned_misc = _PRUNED_KEYS[source]
    unexpected = []
    for key in list(state):
        if key in expected:
            continue
        block = pruned_blocks.match(key)
        is_pruned_part = (
            block is not None and int(block.group(1)) >= len(encoder.blocks)
        ) or pruned_misc.match(key)
        if is_pruned_part and encoder.is_pruned:
            del state[key]
        else:
            unexpected.append(key)
    missing = sorted(set(expected) - set(state))
    if missing or unexpected:
        raise WeightsError(
            f"{path} does not match encoder {encoder.config.arch!r} ({source}): "
            f"missing {len(missing)} keys {missing[:5]}, unexpected {len(unexpected)} keys {unexpected[:5]}."
        )
    for key, value in state.items():
        if tuple(value.shape) != tuple(expected[key].shape):
            raise WeightsError(
                f"{path}: {key!r} has shape {tuple(value.shape)}; encoder {encoder.config.arch!r} expects {tuple(expected[key].shape)}."
            )
    encoder.backbone.load_state_dict(state, strict=True)


def _build_random(config: EncoderConfig) -> nn.Module:
    if config.source == "open_clip":
        import open_clip

        return open_clip.create_model(config.arch, pretrained=None, device=torch.get_default_device()).visual  # type: ignore[no-any-return]
    if config.source == "timm":
        import timm

        return timm.create_model(config.arch, pretrained=False, **config.timm_kwargs)
    raise UnknownNameError(f"unknown encoder source {config.source!r}. Available: open_clip, timm.")


def _build_pretrained(config: EncoderConfig) -> nn.Module:
    """The library's published weights (network access once, then the library's cache)."""
    if config.pretrained is None:
        raise WeightsError(
            f"encoder {config.kind!r} ({config.arch}) has no published weights tag; pass a local checkpoint path."
        )
    if config.source == "open_clip":
        import open_clip

        return open_clip.create_model(config.arch, pretrained=config.pretrained).visual  # type: ignore[no-any-return]
    import timm

    if config.pretrained.startswith("hf-hub:"):
        # An open_clip hub model whose visual tower is a timm trunk (BiomedCLIP).
        import open_clip

        clip = open_clip.create_model(config.pretrained)
        backbone = timm.create_model(config.arch, pretrained=False, **config.timm_kwargs)
        state = _strip_prefix(clip.state_dict(), ("visual.trunk.",))
        backbone.load_state_dict({k: v for k, v in state.items() if k in backbone.state_dict()}, strict=True)
        return backbone
    return timm.create_model(f"{config.arch}.{config.pretrained}", pretrained=True, **config.timm_kwargs)


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise WeightsError(f"encoder weights file {str(path)!r} does not exist.")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            data: Any = load_file(str(path), device="cpu")
        else:
            data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any read failure is a weights problem for the caller
        raise WeightsError(f"cannot read encoder weights {str(path)!r}: {exc}") from exc
    for wrapper in ("state_dict", "model"):
        if isinstance(data, Mapping) and isinstance(data.get(wrapper), Mapping):
            data = data[wrapper]
    if not isinstance(data, Mapping) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise WeightsError(f"{str(path)!r} is not a state dict of tensors.")
    state = dict(data)
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def _strip_prefix(state: Mapping[str, torch.Tensor], prefixes: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """Keep the keys under the first prefix any key carries, without it; no prefix found: keep all."""
    for prefix in prefixes:
        if any(k.startswith(prefix) for k in state):
            return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    return dict(state)
