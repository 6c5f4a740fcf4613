"""The per-cascade ViT-prior denoiser: layer fusion and a UNETR-style decoder (DESIGN.md section 1).

``D(x) = x - c(x)`` for a complex image ``x``; the correction ``c`` is::

    |x| / p99.5(|x|), clipped to [0, 1]  ->  frozen encoder (shared, blocks 0..5)  ->  6 feature maps
    -> LayerFusion (per-layer LayerNorm, softmax-weighted sum)
    -> 4 upsampling stages at img_size/8, /4, /2, /1 (bilinear resize, DS-conv + InstanceNorm + ReLU),
       the skips from blocks (5, 4, 3) joining stages 1..3 (1x1 projection, bilinear resize, concat)
    -> bilinear resize to the native (H, W), concat with a shallow conv of (re, im) / scale
    -> DS-conv block -> 1x1 head (2 channels, zero-initialised) -> (re + i im) * scale

The scale makes ``D`` positively homogeneous (``D(a x) = a D(x)`` for ``a > 0``) and the zero head
makes the untrained denoiser the identity. The encoder is passed to :meth:`ViTDenoiser.correction`
and is not a submodule: one instance is shared by every cascade.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from fastrecon.errors import InputError, InputTypeError
from fastrecon.physics import complex_abs
from fastrecon.registry import DecoderConfig, EncoderConfig

Encode = Callable[[torch.Tensor], Sequence[torch.Tensor]]
"""Scaled magnitude ``(N, 1, H, W)`` -> one feature map ``(N, D, g, g)`` per encoder block."""
Decode = Callable[[Sequence[torch.Tensor], torch.Tensor], torch.Tensor]
"""Feature maps and the scaled image ``(N, 2, H, W)`` -> scaled correction ``(N, 2, H, W)`` (real)."""


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize ``(B, C, h, w)`` -> ``(B, C, *size)``; a no-op when the size already matches.

    ``size`` may hold symbolic sizes (an export with dynamic H, W): then the no-op test must not add
    a shape guard, so the resize stays in the graph (an exact identity at equal sizes).
    """
    sizes = (*x.shape[-2:], *size)
    if all(isinstance(s, int) for s in sizes):
        if tuple(x.shape[-2:]) == tuple(size):
            return x
    else:  # symbolic: test without guarding (sympy comes with the exporter anyway; not imported eagerly)
        from torch.fx.experimental.symbolic_shapes import statically_known_true

        if statically_known_true(sizes[0] == sizes[2]) and statically_known_true(sizes[1] == sizes[3]):
            return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def _percentile(flat: torch.Tensor, q: float) -> torch.Tensor:
    """Row-wise quantile ``q`` in [0, 1] of ``(N, L)`` with numpy's linear interpolation -> ``(N,)``.

    Two selections (``kthvalue``) instead of ``torch.quantile``'s full sort: linear time, and no
    input-size limit on older torch releases.
    """
    position = q * (flat.shape[1] - 1)
    lower = int(position)
    upper = min(lower + 1, flat.shape[1] - 1)
    low = torch.kthvalue(flat, lower + 1, dim=1).values
    if upper == lower:
        return low
    high = torch.kthvalue(flat, upper + 1, dim=1).values
    return low + (position - lower) * (high - low)


class DSConvBlock(nn.Sequential):
    """Depthwise 3x3 + pointwise 1x1 conv, InstanceNorm, ReLU: ``(B, in_ch, h, w)`` -> ``(B, out_ch, h, w)``.

    No conv biases: the InstanceNorm (no affine) that follows removes any per-channel constant.
    """

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__(
            nn.Conv2d(in_ch, in_ch, kernel_size=3, padding=1, groups=in_ch, bias=False),
            nn.Conv2d(in_ch, out_ch, kernel_size=1, bias=False),
            nn.InstanceNorm2d(out_ch),
            nn.ReLU(inplace=True),
        )


class LayerFusion(nn.Module):
    """Per-layer LayerNorm over the embedding dim and a softmax-weighted sum of the layers.

    The logits start at zero (equal weights). Input: ``num_layers`` maps ``(B, D, g, g)``; output:
    the fused map ``(B, D, g, g)`` and the normalised layers (reused as decoder skips).
    """

    def __init__(self, num_layers: int, dim: int) -> None:
        super().__init__()
        self.norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(num_layers))
        self.logits = nn.Parameter(torch.zeros(num_layers))

    def forward(self, features: Sequence[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        dim = cast(nn.LayerNorm, self.norms[0]).normalized_shape[0]
        if len(features) != len(self.norms) or any(f.ndim != 4 or f.shape[1] != dim for f in features):
            raise InputError(
                f"the encoder gives {len(features)} feature maps of shapes {[tuple(f.shape) for f in features]}; "
                f"this decoder was built for {len(self.norms)} x {dim}-dim maps (B, {dim}, g, g)."
            )
        # LayerNorm acts on the last dim: move channels last and back.
        normed = [
            norm(f.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
            for norm, f in zip(self.norms, features, strict=True)
        ]
        weights = torch.softmax(self.logits, dim=0)
        fused = (torch.stack(normed, dim=0) * weights.view(-1, 1, 1, 1, 1)).sum(dim=0)
        return fused, normed


class ViTDenoiser(nn.Module):
    """The trainable part of one cascade's denoiser (the frozen encoder is passed in).

    Args:
        encoder: the encoder config the features come from (embedding dim, number of blocks, img_size).
        decoder: channels of the four stages, skip layers, input-conv width and scaling percentile.
    """

    def __init__(self, encoder: EncoderConfig, decoder: DecoderConfig) -> None:
        super().__init__()
        num_layers, dim, size = encoder.num_blocks, encoder.embed_dim, encoder.img_size
        for layer in decoder.skip_layers:
            if not 0 <= layer < num_layers:
                raise InputError(
                    f"decoder skip layer {layer} does not exist; the encoder gives layers 0..{num_layers - 1}."
                )
        if not 0.0 < decoder.percentile <= 100.0:
            raise InputError(f"decoder percentile {decoder.percentile} must be in (0, 100].")
        if len(decoder.channels) != 4 or min(decoder.channels) < 1:
            raise InputError(
                f"decoder channels {decoder.channels} must be 4 positive widths (stages at img_size/8, /4, /2, /1)."
            )
        self.embed_dim = dim
        self.num_layers = num_layers
        self.skip_layers = tuple(decoder.skip_layers)
        self.quantile = decoder.percentile / 100.0
        self.stage_sizes = tuple(max(1, size // f) for f in (8, 4, 2, 1))
        c1, c2, c3, c4 = decoder.channels

        self.fusion = LayerFusion(num_layers, dim)
        # 1x1 projections run at the token grid and are resized after: the two commute exactly
        # (bilinear weights sum to 1), and the grid is 16-64x smaller than the stage.
        self.skip_projs = nn.ModuleList(nn.Conv2d(dim, c, kernel_size=1) for c in (c1, c2, c3))
        self.stages = nn.ModuleList(
            [
                DSConvBlock(dim + c1, c1),
                DSConvBlock(c1 + c2, c2),
                DSConvBlock(c2 + c3, c3),
                DSConvBlock(c3, c4),
            ]
        )
        self.input_conv = nn.Sequential(
            nn.Conv2d(2, decoder.input_channels, kernel_size=3, padding=1), nn.ReLU(inplace=True)
        )
        self.refine = DSConvBlock(c4 + decoder.input_channels, c4)
        self.head = nn.Conv2d(c4, 2, kernel_size=1, bias=True)
        # Zero correction: the untrained denoiser is the identity.
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(cast(torch.Tensor, self.head.bias))

    def scale(self, magnitude: torch.Tensor) -> torch.Tensor:
        """Per-sample percentile of ``(N, H, W)`` magnitudes -> ``(N,)``, never zero.

        Falls back to the maximum when the percentile is zero, and to 1 for an all-zero image.
        """
        flat = magnitude.flatten(1).float()
        q = _percentile(flat, self.quantile)
        q = torch.where(q > 0, q, flat.amax(dim=1))
        return torch.where(q > 0, q, torch.ones_like(q))

    def correction(self, image: torch.Tensor, encode: Encode, decode: Decode | None = None) -> torch.Tensor:
        """The correction ``c(x)`` of a complex image ``(N, H, W)`` -> complex ``(N, H, W)``.

        ``encode`` maps the scaled magnitude ``(N, 1, H, W)`` to the encoder's feature maps (the
        model's encoder call, or a :class:`~fastrecon.models.encoders.FrozenEncoder` itself).
        ``decode`` replaces :meth:`decode` (an engine running the same real-valued graph).
        """
        if not image.is_complex():
            raise InputTypeError(
                f"denoiser input must be a complex image (N, H, W), got dtype {image.dtype}."
            )
        if image.ndim != 3:
            raise InputError(f"denoiser input must have shape (N, H, W), got {tuple(image.shape)}.")
        magnitude = complex_abs(image)  # (N, H, W)
        scale = self.scale(magnitude).view(-1, 1, 1, 1)
        features = encode((magnitude.unsqueeze(1) / scale).clamp(0.0, 1.0))
        pixels = torch.view_as_real(image).permute(0, 3, 1, 2) / scale  # (N, 2, H, W): re, im
        out = (decode or self.decode)(tuple(features), pixels)
        # Under reduced-precision autocast the head gives bf16/fp16: back to the image's real dtype.
        out = (out * scale).to(image.real.dtype)  # (N, 2, H, W)
        return torch.complex(out[:, 0], out[:, 1])

    def decode(self, features: Sequence[torch.Tensor], pixels: torch.Tensor) -> torch.Tensor:
        """The real-valued decoder: ``num_layers`` feature maps ``(N, D, g, g)`` and the scaled image
        ``(N, 2, H, W)`` (re, im) -> the scaled correction ``(N, 2, H, W)``."""
        fused, normed = self.fusion(features)
        x = fused
        for i, stage in enumerate(self.stages):
            size = (self.stage_sizes[i], self.stage_sizes[i])
            x = _resize(x, size)
            if i < len(self.skip_projs):
                skip = _resize(self.skip_projs[i](normed[self.skip_layers[i]]), size)
                x = torch.cat([x, skip], dim=1)
            x = stage(x)
        native = (pixels.shape[-2], pixels.shape[-1])  # no int(): keeps H, W symbolic under export
        x = torch.cat([_resize(x, native), self.input_conv(pixels)], dim=1)
        return self.head(self.refine(x))  # type: ignore[no-any-return]

    def forward(self, image: torch.Tensor, encode: Encode) -> torch.Tensor:
        """The denoised image ``D(x) = x - c(x)``, complex ``(N, H, W)``."""
        return image - self.correction(image, encode)
