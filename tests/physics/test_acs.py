"""ACS detection and mask inference."""

from __future__ import annotations

import pytest
import torch

from fastrecon.errors import InputError
from fastrecon.physics import acs_bounds, infer_mask


def fastmri_num_low_freqs(mask: torch.Tensor) -> tuple[int, int]:
    # fastMRI's VarNet.get_pad_and_num_low_freqs for one mask row.
    squeezed = mask.to(torch.int8).unsqueeze(0)
    cent = squeezed.shape[1] // 2
    left = torch.argmin(squeezed[:, :cent].flip(1), dim=1)
    right = torch.argmin(squeezed[:, cent:], dim=1)
    num_low = int(torch.max(2 * torch.min(left, right), torch.ones_like(left)))
    pad = (mask.shape[-1] - num_low + 1) // 2
    return pad, pad + num_low


@pytest.mark.parametrize(
    ("width", "acs"),
    [
        (w, a) for w in (20, 21, 368, 33) for a in (2, 4, 9, 24) if a <= w - 2
    ],  # the block must leave room around it
)
def test_acs_bounds_match_fastmri(width: int, acs: int) -> None:
    generator = torch.Generator().manual_seed(width * 100 + acs)
    mask = torch.rand(width, generator=generator) < 0.2
    start = (width - acs + 1) // 2
    mask[start : start + acs] = True
    mask[max(start - 1, 0)] = False  # bound the block so left/right are defined
    mask[min(start + acs, width - 1)] = False
    assert acs_bounds(mask) == fastmri_num_low_freqs(mask)


def test_too_few_acs_lines() -> None:
    mask = torch.zeros(16, dtype=torch.bool)
    mask[::4] = True
    with pytest.raises(InputError, match="ACS"):
        acs_bounds(mask, min_lines=2)


def test_infer_mask_1d_and_2d() -> None:
    k = torch.randn(2, 3, 6, 10, dtype=torch.complex64)
    cols = torch.tensor([1, 0, 0, 1, 1, 1, 0, 0, 1, 0], dtype=torch.bool)
    assert torch.equal(infer_mask(k * cols), cols)
    pattern = torch.rand(6, 10) > 0.5
    inferred = infer_mask(k * pattern)
    assert inferred.shape == (6, 10)
    assert torch.equal(inferred, pattern)


def test_acs_count_masks_is_fastmris_block_for_a_count() -> None:
    from fastrecon.physics import acs_count_masks

    mask = torch.zeros(368, dtype=torch.bool)
    mask[::4] = True
    mask[170:199] = True  # EquispacedMaskFractionFunc's 29 centre lines of a 368-wide knee at x4
    block = acs_count_masks(mask, 29)
    assert block.shape == (1, 368) and int(block.sum()) == 29 and bool(block[0, 170:199].all())
    per_slice = torch.stack([mask, mask.roll(1)])[:, None, None, :]  # slice 1: the block moved by one
    with pytest.raises(InputError, match="column 170 is not fully sampled in slice 1"):
        acs_count_masks(per_slice, 29)
    assert int(acs_count_masks(per_slice, 26).sum()) == 52  # columns 171..196, sampled in both
    with pytest.raises(InputError, match="expected 4..368"):
        acs_count_masks(mask, 3, min_lines=4)
