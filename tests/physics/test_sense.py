"""CG-SENSE on fastrecon's own operators: exact on full sampling, better than zero-filled when undersampled."""

from __future__ import annotations

import pytest
import torch

from fastrecon.data.simulate import simulate_slice
from fastrecon.errors import InputError
from fastrecon.metrics import evaluate_fastmri
from fastrecon.physics import ifft2c, rss
from fastrecon.physics.masks import EquispacedMaskFractionFunc
from fastrecon.physics.sense import cg_sense, cg_sense_rss


def test_fully_sampled_noise_free_recovers_the_image() -> None:
    sim = simulate_slice((40, 34), 4, snr_db=None, seed=0)
    full = torch.ones(34, dtype=torch.bool)
    image = cg_sense(sim.kspace, full, sim.maps, lam=0.0, iterations=5)
    torch.testing.assert_close(image, sim.image, atol=1e-4, rtol=0)
    torch.testing.assert_close(
        cg_sense_rss(sim.kspace, full, sim.maps, lam=0.0), sim.target, atol=1e-4, rtol=0
    )


def test_undersampled_beats_zero_filled() -> None:
    sim = simulate_slice((64, 64), 8, seed=1)
    mask = EquispacedMaskFractionFunc([0.16], [4]).sample(64, seed=1).mask
    masked = sim.kspace * mask
    zero_filled = evaluate_fastmri(sim.target, rss(ifft2c(masked), dim=1))
    sense = evaluate_fastmri(sim.target, cg_sense_rss(masked, mask, sim.maps))
    assert sense.psnr > zero_filled.psnr + 1.5 and sense.ssim > zero_filled.ssim + 0.03


def test_per_slice_batches_match_single_slices() -> None:
    a, b = simulate_slice((32, 32), 4, seed=2), simulate_slice((32, 32), 4, seed=3)
    mask = EquispacedMaskFractionFunc([0.125], [4]).sample(32, seed=0).mask
    kspace = torch.cat([a.kspace, b.kspace]) * mask
    maps = torch.stack([a.maps, b.maps])
    both = cg_sense(kspace, mask, maps, iterations=8)
    torch.testing.assert_close(
        both[1:], cg_sense(kspace[1:], mask, b.maps, iterations=8), atol=1e-5, rtol=1e-4
    )


def test_bad_arguments() -> None:
    sim = simulate_slice((16, 16), 2, seed=0)
    mask = torch.ones(16, dtype=torch.bool)
    with pytest.raises(InputError, match="complex"):
        cg_sense(sim.kspace.real, mask, sim.maps)
    with pytest.raises(InputError, match=r"maps \(3, 16, 16\)"):
        cg_sense(sim.kspace, mask, torch.ones(3, 16, 16, dtype=torch.complex64))
    with pytest.raises(InputError, match="iterations=0"):
        cg_sense(sim.kspace, mask, sim.maps, iterations=0)
