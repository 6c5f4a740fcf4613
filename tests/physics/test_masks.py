"""Mask functions: equal to fastMRI's draw for draw, effective accelerations, ACS lines, determinism."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fastrecon.errors import InputError, UnknownNameError
from fastrecon.physics.acs import acs_bounds
from fastrecon.physics.masks import (
    CMRxUniformMask,
    EquispacedMaskFractionFunc,
    EquiSpacedMaskFunc,
    RandomMaskFunc,
    create_mask_for_mask_type,
    seed_from_name,
)
from tests.physics import _fastmri_subsample as ref

PAIRS = [([0.08], [4]), ([0.04], [8]), ([0.08, 0.04], [4, 8]), ([0.08, 0.04, 0.03], [4, 8, 10])]
NAMES = ["file1000001.h5", "file_brain_AXT2_200_2000019.h5", "P001/cine_sax.mat"]


def _oracle_mask(
    func: ref.MaskFunc, width: int, seed: Any, offset: int | None = None
) -> tuple[torch.Tensor, int]:
    mask, num_low = func((1, 640, width, 2), offset, seed)
    return mask.reshape(-1).to(torch.bool), num_low


@pytest.mark.parametrize(
    "ours_cls, ref_cls",
    [
        (RandomMaskFunc, ref.RandomMaskFunc),
        (EquispacedMaskFractionFunc, ref.EquispacedMaskFractionFunc),
        (EquiSpacedMaskFunc, ref.EquiSpacedMaskFunc),
    ],
)
@pytest.mark.parametrize("fractions, accels", PAIRS)
@pytest.mark.parametrize("width", [368, 372, 133, 246])
def test_equals_fastmri_for_per_file_seeds(ours_cls, ref_cls, fractions, accels, width) -> None:
    ours, oracle = ours_cls(fractions, accels), ref_cls(fractions, accels)
    for name in NAMES:
        seed = seed_from_name(name)
        drawn = ours.sample(width, seed=seed)
        expected, num_low = _oracle_mask(oracle, width, seed)
        assert drawn.mask.dtype == torch.bool and drawn.mask.shape == (width,)
        assert torch.equal(drawn.mask, expected), name
        assert drawn.num_low_frequencies == num_low


@pytest.mark.parametrize(
    "ours_cls, ref_cls",
    [(RandomMaskFunc, ref.RandomMaskFunc), (EquispacedMaskFractionFunc, ref.EquispacedMaskFractionFunc)],
)
def test_equals_fastmri_unseeded_sequence_and_any_combination(ours_cls, ref_cls) -> None:
    # seed=None advances the function's own generator exactly as fastMRI's does.
    for any_combination in (False, True):
        ours = ours_cls([0.08, 0.04], [4, 8], allow_any_combination=any_combination, seed=123)
        oracle = ref_cls([0.08, 0.04], [4, 8], allow_any_combination=any_combination, seed=123)
        for _ in range(6):
            assert torch.equal(ours((2, 15, 640, 368)), _oracle_mask(oracle, 368, None)[0])


def test_equals_fastmri_with_offset() -> None:
    ours, oracle = EquispacedMaskFractionFunc([0.08], [4]), ref.EquispacedMaskFractionFunc([0.08], [4])
    for offset in range(3):
        assert torch.equal(
            ours(368, seed=(1, 2), offset=offset), _oracle_mask(oracle, 368, (1, 2), offset)[0]
        )


def test_per_call_seed_leaves_own_state_untouched() -> None:
    func = RandomMaskFunc([0.08], [4], seed=7)
    first = func(100)
    func2 = RandomMaskFunc([0.08], [4], seed=7)
    func2(100, seed=seed_from_name("x.h5"))  # temporary reseed must restore the state
    assert torch.equal(func2(100), first)


@settings(max_examples=60, deadline=None)
@given(
    width=st.integers(96, 640),
    accel=st.sampled_from([2, 3, 4, 6, 8, 10, 12]),
    fraction=st.sampled_from([0.02, 0.04, 0.08]),
    name=st.text(min_size=1, max_size=12),
)
def test_equispaced_fraction_hits_target_and_keeps_centre(width, accel, fraction, name) -> None:
    func = EquispacedMaskFractionFunc([fraction], [accel])
    num_low = round(width * fraction)
    if num_low * accel >= width - 1:  # the centre alone reaches the target: a clear error, tested below
        return
    drawn = func.sample(width, seed=seed_from_name(name))
    sampled = int(drawn.mask.sum())
    # The outer lines are rounded positions of a fractional grid: the total count equals W/R up to
    # rounding of the grid length and overlaps with the centre block (at most ~2 columns either way).
    assert abs(sampled - width / accel) <= 2.0
    start, stop = acs_bounds(drawn.mask)
    assert stop - start >= drawn.num_low_frequencies - 2  # fastMRI counting loses 2 for odd W, even n
    pad = (width - num_low + 1) // 2
    assert bool(drawn.mask[pad : pad + num_low].all())
    assert torch.equal(drawn.mask, func(width, seed=seed_from_name(name)))


def test_random_mask_acceleration_on_average() -> None:
    width, accel = 368, 4
    func = RandomMaskFunc([0.08], [accel])
    counts = np.array([int(func(width, seed=s).sum()) for s in range(400)])
    # Expected count W/R exactly; the standard error of the mean is ~0.4 columns here.
    assert abs(counts.mean() - width / accel) < 2.0
    assert counts.std() > 1.0  # the draw is actually random between seeds


@settings(max_examples=40, deadline=None)
@given(width=st.integers(64, 512), accel=st.sampled_from([4, 8, 10]), name=st.text(min_size=1, max_size=8))
def test_random_mask_keeps_centre_and_is_deterministic(width, accel, name) -> None:
    func = RandomMaskFunc([0.08], [accel])
    drawn = func.sample(width, seed=seed_from_name(name))
    num_low = drawn.num_low_frequencies
    pad = (width - num_low + 1) // 2
    assert bool(drawn.mask[pad : pad + num_low].all())
    start, stop = acs_bounds(drawn.mask)
    assert stop - start >= num_low - 2
    assert torch.equal(drawn.mask, func(width, seed=seed_from_name(name)))


@settings(max_examples=60, deadline=None)
@given(width=st.integers(48, 512), accel=st.sampled_from([2, 4, 8, 10]), acs=st.sampled_from([16, 24]))
def test_cmrx_uniform_mask(width, accel, acs) -> None:
    drawn = CMRxUniformMask(accel, acs_lines=acs).sample(width)
    mask = drawn.mask
    expected = np.zeros(width, dtype=bool)
    expected[::accel] = True  # MATLAB mask(:, 1:R:end) = 1
    start = width // 2 - acs // 2  # MATLAB zpad placement of the ACS block
    expected[start : start + acs] = True
    assert np.array_equal(mask.numpy(), expected)
    assert drawn.num_low_frequencies == acs
    lo, hi = acs_bounds(mask)
    assert hi - lo >= acs - 2  # fastMRI-style symmetric count around W // 2
    assert bool(mask[lo:hi].all()) or width % 2 == 1
    # Effective acceleration: outer lines ~ (W - acs) / R plus the ACS block.
    assert abs(int(mask.sum()) - (acs + (width - acs) / accel)) <= 2
    assert torch.equal(mask, CMRxUniformMask(accel, acs_lines=acs)(width, seed=123))


def test_cmrx_even_width_block_equals_fastmri_centre() -> None:
    mask = CMRxUniformMask(4, 24)(246)
    pad = (246 - 24 + 1) // 2
    assert bool(mask[pad : pad + 24].all())
    assert acs_bounds(mask)[1] - acs_bounds(mask)[0] >= 24


def test_shape_argument_uses_last_dimension() -> None:
    func = RandomMaskFunc([0.08], [4])
    assert torch.equal(func((3, 10, 640, 100), seed=1), func(100, seed=1))
    assert CMRxUniformMask(4)(torch.Size([2, 10, 64, 80])).shape == (80,)


@pytest.mark.parametrize(
    "build",
    [
        lambda: RandomMaskFunc([0.08, 0.04], [4]),
        lambda: RandomMaskFunc([], []),
        lambda: RandomMaskFunc([1.5], [4]),
        lambda: RandomMaskFunc([0.08], [0.5]),
        lambda: CMRxUniformMask(0),
        lambda: CMRxUniformMask(4, acs_lines=-1),
    ],
)
def test_bad_arguments_raise_input_error(build) -> None:
    with pytest.raises(InputError):
        build()


def test_centre_too_large_for_target_is_a_clear_error() -> None:
    with pytest.raises(InputError, match="centre alone"):
        EquispacedMaskFractionFunc([0.3], [8])(100, seed=0)
    with pytest.raises(InputError, match="do not fit"):
        CMRxUniformMask(4, acs_lines=24)(16)
    with pytest.raises(InputError, match="at least 1"):
        RandomMaskFunc([0.08], [4])(0)


def test_create_mask_for_mask_type() -> None:
    assert isinstance(create_mask_for_mask_type("random", [0.08], [4]), RandomMaskFunc)
    assert isinstance(
        create_mask_for_mask_type("equispaced_fraction", [0.08], [4]), EquispacedMaskFractionFunc
    )
    cmrx = create_mask_for_mask_type("cmrx_uniform", [0.08], [8])
    assert isinstance(cmrx, CMRxUniformMask) and cmrx.acceleration == 8 and cmrx.acs_lines == 24
    with pytest.raises(UnknownNameError, match="equispaced"):
        create_mask_for_mask_type("equispace", [0.08], [4])
