"""Sampling masks seen from the data: infer the mask from k-space, find the autocalibration (ACS) block."""

from __future__ import annotations

import numbers

import torch

from fastrecon.errors import InputError


def infer_mask(kspace: torch.Tensor) -> torch.Tensor:
    """The sampling mask implied by the zero pattern of k-space ``(N, C, H, W)``, slice by slice.

    A point counts as sampled when any coil holds a non-zero value there. When all slices share one
    pattern: a 1-D ``(W,)`` mask if every phase-encode column is either fully sampled or empty (the
    usual Cartesian case), else the 2-D ``(H, W)`` pattern. When slices differ (different masks
    per frame or file): ``(N, 1, 1, W)`` or ``(N, 1, H, W)``, so no slice borrows another's lines.
    """
    sampled = (kspace != 0).any(dim=1)  # (N, H, W)
    columns = sampled.any(dim=1)  # (N, W)
    cartesian = bool((sampled == columns.unsqueeze(1)).all())
    if bool((sampled == sampled[:1]).all()):
        return columns[0] if cartesian else sampled[0]
    return columns[:, None, None, :] if cartesian else sampled[:, None]


def slice_columns(mask: torch.Tensor, *, fully: bool = False) -> torch.Tensor:
    """Sampled phase-encode columns per slice, ``(S, W)`` bool; ``S`` is the mask's leading dimension
    for a 4-D mask (1 when it is shared), 1 for 1-D and 2-D masks.

    ``fully=False``: a column counts if any entry in it is set. ``fully=True``: only if every row of it
    is set (what autocalibration needs: a 2-D mask sampling one row of a column has no ACS line there).
    """
    mask = mask != 0
    if mask.ndim == 1:
        return mask.unsqueeze(0)
    # (S, rows, W): a 2-D mask is one slice; a 4-D mask keeps its slices, coils and rows flattened together.
    mask = mask.unsqueeze(0) if mask.ndim == 2 else mask.reshape(mask.shape[0], -1, mask.shape[-1])
    return mask.all(dim=1) if fully else mask.any(dim=1)


def mask_columns(mask: torch.Tensor) -> torch.Tensor:
    """Phase-encode columns ``(W,)`` sampled anywhere in a 1-D, 2-D or 4-D mask (any slice, any row)."""
    return slice_columns(mask).any(dim=0)


def _centred_block(columns: torch.Tensor) -> tuple[int, int, int]:
    """fastMRI's ``get_pad_and_num_low_freqs`` for one ``(W,)`` column pattern: ``(start, stop, count)``,
    ``count`` being the symmetric number of sampled centre columns (0 when the centre is not a block)."""
    width = columns.shape[0]
    centre = width // 2
    # Count consecutive sampled columns left of the centre (exclusive) and right of it (inclusive).
    left = int(torch.cumprod(columns[:centre].flip(0).to(torch.int64), 0).sum())
    right = int(torch.cumprod(columns[centre:].to(torch.int64), 0).sum())
    count = 2 * min(left, right)
    num_low = max(count, 1)  # fastMRI keeps one column rather than none
    start = (width - num_low + 1) // 2
    return start, start + num_low, count


def acs_masks(mask: torch.Tensor, min_lines: int = 0) -> torch.Tensor:
    """The centred autocalibration columns of every slice of ``mask``, ``(S, W)`` bool (see :func:`acs_bounds`)."""
    columns = slice_columns(mask, fully=True).cpu()
    index = torch.arange(columns.shape[-1])
    out = torch.zeros_like(columns)
    for s, row in enumerate(columns):
        start, stop = _check_lines(row, min_lines, s, columns.shape[0])
        out[s] = (index >= start) & (index < stop)
    return out.to(mask.device)


def _check_lines(row: torch.Tensor, min_lines: int, slice_index: int, slices: int) -> tuple[int, int]:
    """The centred block of one ``(W,)`` pattern, refusing fewer than ``min_lines`` sampled columns in it."""
    start, stop, num = _centred_block(row)
    if num < min_lines:
        where = f" in slice {slice_index}" if slices > 1 else ""
        raise InputError(
            f"the mask has {num} contiguous autocalibration (ACS) lines around the centre column {row.shape[0] // 2}"
            f"{where}; at least {min_lines} are needed to estimate coil sensitivities. Sample a fully-sampled centre block."
        )
    return start, stop


def acs_count_masks(mask: torch.Tensor, num_low_frequencies: int, min_lines: int = 0) -> torch.Tensor:
    """The ACS columns for a known count, ``(S, W)`` bool: fastMRI's ``get_pad_and_num_low_freqs`` when
    ``num_low_frequencies`` is passed (as its VarNet training and validation do with the mask function's
    count): ``num_low_frequencies`` columns from ``(W - n + 1) // 2``, the block the mask functions sample.

    Refuses a count outside ``[max(min_lines, 1), W]`` and a block with a column that is not fully sampled in
    every slice of ``mask`` (``S`` as in :func:`slice_columns`), so the coil maps never see unmeasured lines.
    """
    columns = slice_columns(mask, fully=True).cpu()
    width = int(columns.shape[-1])
    count = num_low_frequencies
    if isinstance(count, bool) or not isinstance(count, numbers.Integral):
        raise InputError(
            f"num_low_frequencies is {count!r}; expected a whole number of ACS lines (or None to find them in the mask)."
        )
    count = int(count)
    low = max(min_lines, 1)
    if not low <= count <= width:
        raise InputError(
            f"num_low_frequencies is {count}; expected {low}..{width} ACS lines for W={width} phase-encode columns"
            + (f" (this model needs at least {min_lines})." if min_lines > 1 else ".")
        )
    start = (width - count + 1) // 2
    block = columns[:, start : start + count]
    if not bool(block.all()):
        slice_index, offset = (int(i[0]) for i in torch.nonzero(~block, as_tuple=True))
        where = f" in slice {slice_index}" if columns.shape[0] > 1 else ""
        raise InputError(
            f"num_low_frequencies={count} asks for the ACS columns {start}..{start + count - 1}, but column "
            f"{start + offset} is not fully sampled{where}; pass the mask's own count or None to find it."
        )
    out = torch.zeros_like(columns)
    out[:, start : start + count] = True
    return out.to(mask.device)


def acs_bounds(mask: torch.Tensor, min_lines: int = 0) -> tuple[int, int]:
    """``(start, stop)`` of the contiguous, centred block of fully sampled columns (the ACS lines).

    Follows fastMRI's ``get_pad_and_num_low_freqs``: the block is symmetric around ``W // 2`` and
    its width is ``2 * min(left, right)`` where left/right count sampled columns from the centre.
    For a mask with several slices, the columns sampled in every slice count. Raises
    :class:`InputError` when fewer than ``min_lines`` ACS lines exist.
    """
    return _check_lines(slice_columns(mask, fully=True).all(dim=0).cpu(), min_lines, 0, 1)
