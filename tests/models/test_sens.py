"""Sensitivity network: fastMRI parity, normalisation, zero-coil safety, ACS checks, odd sizes."""

from __future__ import annotations

import pytest
import torch

from fastrecon.errors import InputError, InputTypeError
from fastrecon.models.sens import SensitivityModel
from fastrecon.physics import rss

from . import _fastmri_oracle as fm


def _pair(chans: int = 4, pools: int = 2) -> tuple[fm.SensitivityModel, SensitivityModel]:
    oracle = fm.SensitivityModel(chans=chans, num_pools=pools).eval()
    ours = SensitivityModel(chans=chans, pools=pools).eval()
    ours.load_state_dict(oracle.state_dict(), strict=True)
    return oracle, ours


@pytest.mark.parametrize(("height", "width"), [(32, 24), (37, 29), (20, 33)])
def test_matches_fastmri_and_rss_is_one(height: int, width: int) -> None:
    oracle, ours = _pair()
    mask = fm.column_mask(width, accel=3, acs=6)
    kspace = fm.masked_kspace(2, 4, height, width, mask)
    with torch.no_grad():
        expected = torch.view_as_complex(oracle(*fm.to_oracle(kspace, mask)))
        actual = ours(kspace, mask)
    assert actual.dtype == torch.complex64 and actual.shape == (2, 4, height, width)
    assert fm.rel_err(actual, expected) < 1e-5
    torch.testing.assert_close(rss(actual, dim=1), torch.ones(2, height, width), rtol=0, atol=1e-5)


def test_only_acs_lines_are_used() -> None:
    _, ours = _pair()
    mask = fm.column_mask(24, accel=3, acs=6)
    kspace = fm.masked_kspace(1, 3, 16, 24, mask)
    start, stop = 9, 15  # the 6 centred columns of a width-24 mask
    outside = kspace.clone()
    outside[..., :start] *= 5.0
    outside[..., stop:] = 0
    with torch.no_grad():
        torch.testing.assert_close(ours(outside, mask), ours(kspace, mask), rtol=0, atol=0)
        changed = kspace.clone()
        changed[..., start] *= 5.0
        assert fm.rel_err(ours(changed, mask), ours(kspace, mask)) > 1e-3


def test_all_zero_coil_gives_zero_map_and_finite_others() -> None:
    _, ours = _pair()
    mask = fm.column_mask(24)
    kspace = fm.masked_kspace(2, 4, 16, 24, mask)
    kspace[1, 2] = 0
    with torch.no_grad():
        maps = ours(kspace, mask)
    assert torch.isfinite(torch.view_as_real(maps)).all()
    assert torch.equal(maps[1, 2], torch.zeros_like(maps[1, 2]))
    torch.testing.assert_close(rss(maps, dim=1), torch.ones(2, 16, 24), rtol=0, atol=1e-5)


def test_all_zero_kspace_gives_zero_maps_not_nan() -> None:
    _, ours = _pair()
    mask = fm.column_mask(24)
    with torch.no_grad():
        maps = ours(torch.zeros(1, 3, 16, 24, dtype=torch.complex64), mask)
    assert torch.equal(maps, torch.zeros_like(maps))


@pytest.mark.parametrize(
    "mask",
    [
        torch.zeros(24, dtype=torch.bool),  # nothing sampled
        torch.arange(24) % 2 == 0,  # no contiguous centre block
        torch.arange(24) == 12,  # one centre column: not a symmetric block
    ],
    ids=["empty", "alternating", "single"],
)
def test_too_few_acs_lines_raise(mask: torch.Tensor) -> None:
    _, ours = _pair()
    with pytest.raises(InputError, match=r"0 contiguous autocalibration \(ACS\) lines.*at least 2"):
        ours(torch.ones(1, 2, 16, 24, dtype=torch.complex64) * mask, mask)


def test_min_acs_lines_is_configurable() -> None:
    mask = fm.column_mask(24, accel=4, acs=4, offset=1)
    kspace = fm.masked_kspace(1, 2, 16, 24, mask)
    SensitivityModel(4, 2, min_acs_lines=4)(kspace, mask)
    with pytest.raises(InputError, match="at least 6"):
        SensitivityModel(4, 2, min_acs_lines=6)(kspace, mask)


def test_mask_layouts_agree_and_bad_inputs_are_named() -> None:
    _, ours = _pair()
    mask = fm.column_mask(24)
    kspace = fm.masked_kspace(2, 3, 16, 24, mask)
    with torch.no_grad():
        one_d = ours(kspace, mask)
        torch.testing.assert_close(ours(kspace, mask.expand(16, 24)), one_d, rtol=0, atol=0)
        torch.testing.assert_close(ours(kspace, mask.reshape(1, 1, 1, 24)), one_d, rtol=0, atol=0)
    with pytest.raises(InputError, match=r"25 phase-encode columns.*W=24"):
        ours(kspace, torch.ones(25, dtype=torch.bool))
    with pytest.raises(InputTypeError, match="complex"):
        ours(torch.view_as_real(kspace), mask)
    with pytest.raises(InputError, match=r"\(N, C, H, W\)"):
        ours(kspace[0], mask)
