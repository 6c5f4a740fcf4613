"""fastMRI's U-Net and NormUnet, with a native-complex entry point.

Ported from facebookresearch/fastMRI (``fastmri/models/unet.py`` and the ``NormUnet`` of
``fastmri/models/varnet.py``), Copyright (c) Facebook, Inc. and its affiliates, MIT licence.
Module attribute names are unchanged (``down_sample_layers``, ``conv``, ``up_conv``,
``up_transpose_conv``, ``layers``, ``unet``) so fastMRI state dicts load without renaming.

Changes from fastMRI:

- :meth:`NormUnet.forward` takes a native complex ``(B, H, W)`` image and returns one; the
  arithmetic inside is fastMRI's real 2-channel path (real, imaginary as channels 0 and 1).
  :meth:`NormUnet.forward_chan` keeps fastMRI's ``(B, 1, H, W, 2)`` real layout.
- The group-norm division is guarded: a constant (e.g. all-zero) input has ``std == 0``, which
  gives NaN in fastMRI; here it divides by 1 instead, and the un-normalisation still multiplies by
  the true ``std``, so an all-zero image maps to an all-zero image. Any input with ``std > 0`` gets
  bit-for-bit fastMRI's arithmetic.
- The odd-size padding test in :meth:`Unet.forward` uses Python ints instead of a tensor sum.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from fastrecon.errors import InputError, InputTypeError


class ConvBlock(nn.Module):
    """Two (3x3 conv, InstanceNorm, LeakyReLU(0.2), Dropout2d) stages; ``(N, in, H, W) -> (N, out, H, W)``."""

    def __init__(self, in_chans: int, out_chans: int, drop_prob: float) -> None:
        super().__init__()
        self.in_chans = in_chans
        self.out_chans = out_chans
        self.drop_prob = drop_prob
        self.layers = nn.Sequential(
            nn.Conv2d(in_chans, out_chans, kernel_size=3, padding=1, bias=False),
            nn.InstanceNorm2d(out_chans),
            nn.LeakyReLU(negative_slope=0.2, inplace=True),
            nn.Dropout2d(drop_prob),
            nn.Conv2d(out_chans, out_chans, kernel_size=3, padding=1, bias=False),
            nn.InstanceNorm2d(out_chans),
            nn.LeakyReLU(negative_slope=0.2, inplace=True),
            nn.Dropout2d(drop_prob),
        )

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.layers(image)


class TransposeConvBlock(nn.Module):
    """2x2 stride-2 transposed conv, InstanceNorm, LeakyReLU(0.2); ``(N, in, H, W) -> (N, out, 2H, 2W)``."""

    def __init__(self, in_chans: int, out_chans: int) -> None:
        super().__init__()
        self.in_chans = in_chans
        self.out_chans = out_chans
        self.layers = nn.Sequential(
            nn.ConvTranspose2d(in_chans, out_chans, kernel_size=2, stride=2, bias=False),
            nn.InstanceNorm2d(out_chans),
            nn.LeakyReLU(negative_slope=0.2, inplace=True),
        )

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.layers(image)


class Unet(nn.Module):
    """fastMRI's U-Net (Ronneberger et al., MICCAI 2015); ``(N, in_chans, H, W) -> (N, out_chans, H, W)``.

    ``chans`` is the width of the first level; each of the ``num_pool_layers`` levels doubles it.
    """

    def __init__(
        self,
        in_chans: int,
        out_chans: int,
        chans: int = 32,
        num_pool_layers: int = 4,
        drop_prob: float = 0.0,
    ) -> None:
        super().__init__()
        self.in_chans = in_chans
        self.out_chans = out_chans
        self.chans = chans
        self.num_pool_layers = num_pool_layers
        self.drop_prob = drop_prob

        self.down_sample_layers = nn.ModuleList([ConvBlock(in_chans, chans, drop_prob)])
        ch = chans
        for _ in range(num_pool_layers - 1):
            self.down_sample_layers.append(ConvBlock(ch, ch * 2, drop_prob))
            ch *= 2
        self.conv = ConvBlock(ch, ch * 2, drop_prob)

        self.up_conv = nn.ModuleList()
        self.up_transpose_conv = nn.ModuleList()
        for _ in range(num_pool_layers - 1):
            self.up_transpose_conv.append(TransposeConvBlock(ch * 2, ch))
            self.up_conv.append(ConvBlock(ch * 2, ch, drop_prob))
            ch //= 2
        self.up_transpose_conv.append(TransposeConvBlock(ch * 2, ch))
        self.up_conv.append(
            nn.Sequential(
                ConvBlock(ch * 2, ch, drop_prob),
                nn.Conv2d(ch, self.out_chans, kernel_size=1, stride=1),
            )
        )

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        stack = []
        output = image
        for layer in self.down_sample_layers:
            output = layer(output)
            stack.append(output)
            output = F.avg_pool2d(output, kernel_size=2, stride=2, padding=0)

        output = self.conv(output)

        for transpose_conv, conv in zip(self.up_transpose_conv, self.up_conv, strict=True):
            downsample_layer = stack.pop()
            output = transpose_conv(output)
            # Reflect-pad right/bottom by one where the skip is one larger (odd sizes), as fastMRI.
            pad_right = int(output.shape[-1] != downsample_layer.shape[-1])
            pad_bottom = int(output.shape[-2] != downsample_layer.shape[-2])
            if pad_right or pad_bottom:
                output = F.pad(output, [0, pad_right, 0, pad_bottom], "reflect")
            output = torch.cat([output, downsample_layer], dim=1)
            output = conv(output)
        return output


class NormUnet(nn.Module):
    """fastMRI's normalised U-Net on complex images.

    The real and imaginary parts are two channels, normalised by their own mean and (unbiased)
    standard deviation per sample, zero-padded to multiples of 16, passed through :class:`Unet`,
    cropped back and un-normalised.
    """

    def __init__(
        self,
        chans: int,
        num_pools: int,
        in_chans: int = 2,
        out_chans: int = 2,
        drop_prob: float = 0.0,
    ) -> None:
        super().__init__()
        self.unet = Unet(
            in_chans=in_chans,
            out_chans=out_chans,
            chans=chans,
            num_pool_layers=num_pools,
            drop_prob=drop_prob,
        )

    # --- fastMRI's helpers, on the (B, 2C, H, W) channel layout --------------------------------------

    @staticmethod
    def norm(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Normalise ``(B, 2C, H, W)`` by the mean/std of its real and imaginary halves; returns ``(x, mean, std)``."""
        b, c, h, w = x.shape
        grouped = x.reshape(b, 2, c // 2 * h * w)
        mean = grouped.mean(dim=2).view(b, 2, 1, 1)
        std = grouped.std(dim=2).view(b, 2, 1, 1)
        # A constant input has std 0: divide by 1 there (x - mean is 0 anyway) instead of making NaN.
        safe_std = torch.where(std > 0, std, torch.ones_like(std))
        return (x - mean) / safe_std, mean, std

    @staticmethod
    def unnorm(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
        return x * std + mean

    @staticmethod
    def pad(x: torch.Tensor) -> tuple[torch.Tensor, tuple[list[int], list[int], int, int]]:
        """Zero-pad H and W symmetrically up to multiples of 16 (fastMRI's split: floor left, ceil right)."""
        _, _, h, w = x.shape
        w_mult = ((w - 1) | 15) + 1
        h_mult = ((h - 1) | 15) + 1
        w_pad = [math.floor((w_mult - w) / 2), math.ceil((w_mult - w) / 2)]
        h_pad = [math.floor((h_mult - h) / 2), math.ceil((h_mult - h) / 2)]
        return F.pad(x, w_pad + h_pad), (h_pad, w_pad, h_mult, w_mult)

    @staticmethod
    def unpad(x: torch.Tensor, h_pad: list[int], w_pad: list[int], h_mult: int, w_mult: int) -> torch.Tensor:
        return x[..., h_pad[0] : h_mult - h_pad[1], w_pad[0] : w_mult - w_pad[1]]

    def _forward_chan2(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 2, H, W)`` real (channel 0 real, 1 imaginary) -> same layout."""
        x, mean, std = self.norm(x)
        x, pad_sizes = self.pad(x)
        x = self.unet(x)
        x = self.unpad(x, *pad_sizes)
        return self.unnorm(x, mean, std)

    # --- entry points --------------------------------------------------------------------------------

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Complex ``(B, H, W)`` image -> complex ``(B, H, W)`` output (fastMRI's arithmetic inside)."""
        if not image.is_complex():
            raise InputTypeError(
                f"NormUnet expects a complex (B, H, W) image, got dtype {image.dtype}; "
                "use forward_chan for fastMRI's real (B, 1, H, W, 2) layout."
            )
        if image.ndim != 3:
            raise InputError(
                f"NormUnet expects a complex image of shape (B, H, W), got {tuple(image.shape)}."
            )
        chan = torch.view_as_real(image).permute(0, 3, 1, 2)  # (B, 2, H, W)
        out = self._forward_chan2(chan).permute(0, 2, 3, 1).contiguous()  # (B, H, W, 2)
        return torch.view_as_complex(out)

    def forward_chan(self, x: torch.Tensor) -> torch.Tensor:
        """fastMRI's layout: real ``(B, C, H, W, 2)`` -> real ``(B, C, H, W, 2)`` (C = in_chans / 2)."""
        if x.ndim != 5 or x.shape[-1] != 2:
            raise InputError(f"forward_chan expects a real (B, C, H, W, 2) tensor, got {tuple(x.shape)}.")
        b, c, h, w, _ = x.shape
        chan = x.permute(0, 4, 1, 2, 3).reshape(b, 2 * c, h, w)
        out = self._forward_chan2(chan)
        return out.view(b, 2, c, h, w).permute(0, 2, 3, 4, 1).contiguous()
