"""Simulation: determinism, the physics of the simulated k-space, coil maps, noise level, motion."""

from __future__ import annotations

import math

import pytest
import skimage.data  # noqa: F401 - a dev dependency: a broken environment must fail, not skip
import torch

from fastrecon.data.simulate import (
    birdcage_maps,
    cardiac_phantom,
    shepp_logan_image,
    simulate_cine,
    simulate_multicoil,
    simulate_slice,
    smooth_phase,
)
from fastrecon.errors import InputError
from fastrecon.physics import fft2c, ifft2c, rss


def test_deterministic_per_seed() -> None:
    a, b = (
        simulate_cine((48, 40), frames=4, num_coils=4, seed=3),
        simulate_cine((48, 40), frames=4, num_coils=4, seed=3),
    )
    assert torch.equal(a.kspace, b.kspace) and torch.equal(a.target, b.target)
    c = simulate_cine((48, 40), frames=4, num_coils=4, seed=4)
    assert not torch.equal(a.kspace, c.kspace)
    state = torch.random.get_rng_state()
    simulate_slice((32, 32), 2, seed=0)
    assert torch.equal(state, torch.random.get_rng_state())  # torch's global RNG untouched


def test_shapes_and_dtypes_odd_sizes() -> None:
    sim = simulate_cine((37, 29), frames=3, num_coils=5, seed=0)
    assert sim.kspace.shape == (3, 5, 37, 29) and sim.kspace.dtype == torch.complex64
    assert sim.target.shape == (3, 37, 29) and sim.target.dtype == torch.float32
    assert sim.image.shape == (3, 37, 29) and sim.maps.shape == (5, 37, 29)
    one = simulate_slice((40, 36), 3, seed=1)
    assert one.kspace.shape == (1, 3, 40, 36) and one.target.shape == (1, 40, 36)


def test_noise_free_kspace_is_the_forward_model() -> None:
    sim = simulate_cine((32, 28), frames=2, num_coils=6, snr_db=None, seed=0)
    torch.testing.assert_close(ifft2c(sim.kspace), sim.maps * sim.image.unsqueeze(1), atol=1e-5, rtol=1e-5)
    # RSS-normalised maps: the noise-free RSS target is the magnitude of the object.
    torch.testing.assert_close(sim.target, sim.image.abs(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(sim.target, rss(ifft2c(sim.kspace)), atol=0, rtol=0)
    assert sim.noise_std == 0.0


def test_birdcage_maps() -> None:
    maps = birdcage_maps(8, (40, 30))
    assert maps.shape == (8, 40, 30) and maps.dtype == torch.complex64
    torch.testing.assert_close(rss(maps.unsqueeze(0))[0], torch.ones(40, 30), atol=1e-5, rtol=0)
    raw = birdcage_maps(8, (40, 30), normalize=False)
    assert float(rss(raw.unsqueeze(0)).std()) > 0.05  # unnormalised maps vary over the field of view
    # Each coil is brightest near its own position on the circle: the maps differ between coils.
    peaks = {int(m.abs().argmax()) for m in raw}
    assert len(peaks) == 8


@pytest.mark.parametrize("snr_db", [10.0, 30.0])
def test_noise_level_matches_snr(snr_db: float) -> None:
    image = cardiac_phantom((64, 64), frames=2, seed=0).to(torch.complex64)
    clean, maps = simulate_multicoil(image, 4, seed=0)
    noisy, _ = simulate_multicoil(image, 4, snr_db=snr_db, seed=0, maps=maps)
    signal_rms = float(clean.abs().pow(2).mean().sqrt())
    measured = float((noisy - clean).abs().pow(2).mean().sqrt())
    assert measured == pytest.approx(signal_rms / 10 ** (snr_db / 20), rel=0.03)
    noisy2, _ = simulate_multicoil(image, 4, noise_std=0.5, seed=1, maps=maps)
    assert float((noisy2 - clean).abs().pow(2).mean().sqrt()) == pytest.approx(0.5, rel=0.03)
    # Real and imaginary parts share the variance.
    diff = torch.view_as_real(noisy2 - clean)
    assert float(diff[..., 0].std()) == pytest.approx(0.5 / math.sqrt(2), rel=0.05)


def test_phantom_contracts_and_expands() -> None:
    frames = 12
    movie = cardiac_phantom((96, 96), frames=frames, seed=0)
    assert movie.shape == (frames, 96, 96) and float(movie.min()) >= 0 and float(movie.max()) <= 1
    bright = (movie > 0.8).flatten(1).sum(dim=1).float()  # blood pools
    assert float(bright.min()) < 0.75 * float(bright.max())
    # One cardiac cycle: the first and last frames are close, the motion is periodic.
    assert float((movie[0] - movie[-1]).abs().mean()) < float((movie[0] - movie[frames // 2]).abs().mean())
    assert not torch.equal(cardiac_phantom((96, 96), 2, seed=1), cardiac_phantom((96, 96), 2, seed=2))


def test_smooth_phase() -> None:
    phase = smooth_phase((50, 40), seed=2, max_phase=1.0)
    assert phase.shape == (50, 40) and float(phase.abs().max()) == pytest.approx(1.0, abs=1e-6)
    # Smooth: neighbouring pixels differ by a small fraction of the range.
    assert float(phase.diff(dim=0).abs().max()) < 0.2
    assert torch.equal(phase, smooth_phase((50, 40), seed=2, max_phase=1.0))


def test_shepp_logan_source() -> None:
    image = shepp_logan_image((64, 48))
    assert image.shape == (64, 48) and float(image.max()) == pytest.approx(1.0)
    sim = simulate_slice((64, 48), 4, source="shepp-logan", seed=0)
    assert sim.kspace.shape == (1, 4, 64, 48)


def test_real_mr_source() -> None:
    from fastrecon.data.simulate import mr_image

    image = mr_image((96, 80))
    assert image.shape == (96, 80) and float(image.max()) == pytest.approx(1.0) and float(image.min()) >= 0
    # A real MR slice: many grey levels (not a flat or piecewise-constant phantom).
    assert len(torch.unique((image * 20).round())) > 15
    assert 0.05 < float(image.std()) < 0.5
    sim = simulate_slice((96, 80), 6, source="mr", seed=1, snr_db=None)
    assert sim.kspace.shape == (1, 6, 96, 80)
    torch.testing.assert_close(sim.target[0], image, rtol=0, atol=1e-4)  # RSS-normalised maps, no noise


def test_simulation_uses_fastrecon_fft() -> None:
    image = torch.zeros(1, 16, 16, dtype=torch.complex64)
    image[0, 8, 8] = 1.0  # a centred point: flat k-space
    maps = torch.ones(1, 16, 16, dtype=torch.complex64)
    kspace, _ = simulate_multicoil(image, maps=maps)
    torch.testing.assert_close(kspace[0, 0], fft2c(image[0]))
    torch.testing.assert_close(kspace.abs(), torch.full_like(kspace.abs(), 1 / 16))


@pytest.mark.parametrize(
    "call",
    [
        lambda: cardiac_phantom((4, 4)),
        lambda: cardiac_phantom((32, 32), frames=0),
        lambda: birdcage_maps(0, (16, 16)),
        lambda: simulate_multicoil(torch.zeros(2, 16, 16), 2, snr_db=20, noise_std=1.0),
        lambda: simulate_multicoil(torch.zeros(2, 2, 16, 16), 2),
        lambda: simulate_multicoil(torch.zeros(1, 16, 16), maps=torch.ones(2, 8, 8, dtype=torch.complex64)),
        lambda: simulate_slice((32, 32), source="brain"),  # type: ignore[arg-type]
    ],
)
def test_bad_arguments(call) -> None:
    with pytest.raises(InputError):
        call()
