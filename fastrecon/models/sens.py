"""Coil-sensitivity estimation from the autocalibration (ACS) lines: E2E-VarNet's ``SensitivityModel``.

After fastMRI's ``SensitivityModel`` (facebookresearch/fastMRI, ``fastmri/models/varnet.py``,
Copyright (c) Facebook, Inc. and its affiliates, MIT licence), on native complex64 tensors. The
attribute ``norm_unet`` keeps fastMRI's name, so the ``sens_net.norm_unet.*`` keys of a fastMRI
``VarNet`` state dict load unchanged.

Differences from fastMRI, all confined to cases where fastMRI returns NaN or a degenerate block:

- The RSS division is guarded (``rss.clamp_min(eps)``): a pixel where every coil is zero gives 0.
- :class:`~fastrecon.models.unet.NormUnet` maps an all-zero coil image to zero instead of NaN.
- The ACS block comes from :func:`fastrecon.physics.acs_masks` (fastMRI's centred block, found per
  slice for a 4-D per-slice mask, from fully sampled columns only). A mask with fewer than ``min_acs_lines`` centred lines
  raises :class:`~fastrecon.errors.InputError`; fastMRI would silently use one line (and, when
  every column on one side of the centre is sampled, its ``argmin`` miscounts the block).
"""

from __future__ import annotations

import torch
from torch import nn

from fastrecon.errors import InputError, InputTypeError
from fastrecon.models.unet import NormUnet
from fastrecon.physics import acs_masks, ifft2c, rss


class SensitivityModel(nn.Module):
    """Estimate normalised coil maps ``(N, C, H, W)`` complex from masked k-space and its mask.

    Args:
        chans: width of the first U-Net level (fastMRI's ``sens_chans``, 8).
        pools: number of U-Net down/up-sampling levels (fastMRI's ``sens_pools``, 4).
        eps: floor of the RSS over coils in the normalisation; pixels with all coils zero give 0.
        min_acs_lines: fewest centred, fully sampled phase-encode columns accepted.
    """

    def __init__(self, chans: int = 8, pools: int = 4, eps: float = 1e-12, *, min_acs_lines: int = 2) -> None:
        super().__init__()
        self.eps = eps
        self.min_acs_lines = min_acs_lines
        self.norm_unet = NormUnet(chans, pools)

    def acs_mask(self, mask: torch.Tensor, width: int) -> torch.Tensor:
        """Bool ``(S, 1, 1, W)``: the centred ACS columns of each slice of ``mask`` (1-D, 2-D or 4-D,
        last dim W; S = 1 for a mask shared by all slices)."""
        if mask.shape[-1] != width:
            raise InputError(
                f"mask has {mask.shape[-1]} phase-encode columns (last dim of shape {tuple(mask.shape)}); "
                f"expected W={width} to match the k-space."
            )
        return acs_masks(mask, min_lines=self.min_acs_lines)[:, None, None, :]

    def forward(
        self, kspace0: torch.Tensor, mask: torch.Tensor, acs: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Sensitivity maps from masked k-space.

        Args:
            kspace0: complex ``(N, C, H, W)`` masked k-space.
            mask: bool (or 0/1) mask broadcastable to ``(N, C, H, W)``, or 1-D ``(W,)``; only its
                phase-encode columns matter here, and only when ``acs`` is not given.
            acs: bool ``(S, 1, 1, W)`` (S = 1 or N), the ACS columns, as the caller already knows
                them (:func:`fastrecon.physics.acs_masks`). Given, the forward does no host
                synchronisation; omitted, they are searched for in ``mask`` on the host.

        Returns:
            complex ``(N, C, H, W)`` maps, normalised so their RSS over coils is 1 wherever the
            estimate is non-zero.
        """
        if not kspace0.is_complex():
            raise InputTypeError(f"kspace0 must be complex (N, C, H, W), got dtype {kspace0.dtype}.")
        if kspace0.ndim != 4:
            raise InputError(f"kspace0 must have shape (N, C, H, W), got {tuple(kspace0.shape)}.")
        n, c, h, w = kspace0.shape
        if acs is None:
            acs = self.acs_mask(mask, w)
        zero = torch.zeros((), dtype=kspace0.dtype, device=kspace0.device)
        low_res = torch.where(acs, kspace0, zero)

        images = ifft2c(low_res).reshape(n * c, h, w)  # coils to batch
        maps = self.norm_unet(images).reshape(n, c, h, w)  # batch to coils

        # Divide real and imaginary parts by the same real RSS (fastMRI's exact arithmetic).
        norm = rss(maps, dim=1).clamp_min(self.eps).unsqueeze(1).unsqueeze(-1)  # (N, 1, H, W, 1)
        return torch.view_as_complex(torch.view_as_real(maps) / norm)
