"""Sampling masks seen from the data: infer the mask from k-space, find the autocalibration (ACS) block."""

from __future__ import annotations

import torch

from fastrecon.errors import InputError


def infer_mask(kspace: torch.Tensor) -> torch.Tensor:
    """The sampling mask implied by the zero pattern of k-space ``(N, C, H, W)``.

    Returns a 1-D ``(W,)`` bool mask when every phase-encode column is either fully sampled or
    empty (the usual Cartesian case), else the 2-D ``(H, W)`` pattern.
    """
    sampled = (kspace != 0).flatten(0, -3).any(dim=0)  # (H, W)
    columns = sampled.any(dim=0)
    if bool((sampled == columns.unsqueeze(0)).all()):
        return columns
    return sampled


def mask_columns(mask: torch.Tensor) -> torch.Tensor:
    """Sampled phase-encode columns ``(W,)`` of a 1-D, 2-D or 4-D mask (a column counts if any entry is set)."""
    mask = mask != 0
    if mask.ndim == 1:
        return mask
    return mask.reshape(-1, mask.shape[-1]).any(dim=0)


def acs_bounds(mask: torch.Tensor, min_lines: int = 0) -> tuple[int, int]:
    """``(start, stop)`` of the contiguous, centred block of sampled columns (the ACS lines).

    Follows fastMRI's ``get_pad_and_num_low_freqs``: the block is symmetric around ``W // 2`` and
    its width is ``2 * min(left, right)`` where left/right count sampled columns from the centre.
    Raises :class:`InputError` when fewer than ``min_lines`` ACS lines exist.
    """
    columns = mask_columns(mask).cpu()
    width = columns.shape[0]
    centre = width // 2
    # Count consecutive sampled columns left of the centre (exclusive) and right of it (inclusive).
    left = int(torch.cumprod(columns[:centre].flip(0).to(torch.int64), 0).sum())
    right = int(torch.cumprod(columns[centre:].to(torch.int64), 0).sum())
    num_low = 2 * min(left, right)
    if num_low < min_lines:
        raise InputError(
            f"the mask has {num_low} contiguous autocalibration (ACS) lines around the centre column {centre}; "
            f"at least {min_lines} are needed to estimate coil sensitivities. Sample a fully-sampled centre block."
        )
    num_low = max(num_low, 1)
    start = (width - num_low + 1) // 2
    return start, start + num_low
