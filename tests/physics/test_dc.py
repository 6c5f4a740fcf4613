"""Soft and hard data consistency, mask broadcasting."""

from __future__ import annotations

import pytest
import torch

from fastrecon.errors import InputError
from fastrecon.physics import broadcast_mask, hard_dc, soft_dc


def test_soft_dc_formula_1d_and_2d_masks() -> None:
    k = torch.randn(2, 3, 5, 6, dtype=torch.complex64)
    k0 = torch.randn(2, 3, 5, 6, dtype=torch.complex64)
    mask1 = torch.tensor([1, 0, 1, 1, 0, 0], dtype=torch.bool)
    expected = k - 0.3 * mask1.reshape(1, 1, 1, 6) * (k - k0)
    torch.testing.assert_close(soft_dc(k, k0, mask1, 0.3), expected)
    mask2 = torch.rand(5, 6) > 0.5
    expected2 = k - 0.7 * mask2 * (k - k0)
    torch.testing.assert_close(soft_dc(k, k0, mask2, torch.tensor([0.7])), expected2)


def test_dc_on_fully_sampled_is_identity_or_projection() -> None:
    k0 = torch.randn(1, 4, 6, 7, dtype=torch.complex64)
    full = torch.ones(7, dtype=torch.bool)
    # Consistent data is a fixed point of both steps.
    torch.testing.assert_close(soft_dc(k0, k0, full, 1.0), k0)
    k = torch.randn_like(k0)
    # Weight 1 on a fully sampled mask returns the measurements; hard DC always does.
    torch.testing.assert_close(soft_dc(k, k0, full, 1.0), k0)
    torch.testing.assert_close(hard_dc(k, k0, full), k0)
    none = torch.zeros(7, dtype=torch.bool)
    torch.testing.assert_close(hard_dc(k, k0, none), k)


@pytest.mark.parametrize(
    ("mask", "message"),
    [
        (torch.ones(5, dtype=torch.bool), "W=7"),
        (torch.ones(6, 6, dtype=torch.bool), r"\(H, W\) = \(6, 7\)"),
        (torch.ones(2, 2, 2, dtype=torch.bool), "3 dimensions"),
        (torch.ones(3, 1, 1, 7, dtype=torch.bool), "does not broadcast"),
    ],
)
def test_bad_masks_raise_clear_errors(mask: torch.Tensor, message: str) -> None:
    with pytest.raises(InputError, match=message):
        broadcast_mask(mask, (2, 4, 6, 7))
