"""Image sources for simulation and for `fastrecon demo --image`: phantoms, photographs, real MR, user files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from fastrecon.data import sources
from fastrecon.data.simulate import birdcage_maps, gaussian_coil_maps, simulate_image
from fastrecon.errors import InputError
from fastrecon.physics import rss


def _check_unit(image: torch.Tensor, shape: tuple[int, int]) -> None:
    assert image.shape == shape and image.dtype == torch.float32
    assert float(image.min()) >= 0 and float(image.max()) == pytest.approx(1.0)
    assert torch.isfinite(image).all()


def test_random_phantom_is_seeded_and_varied() -> None:
    a = sources.random_phantom((48, 40), np.random.default_rng(1))
    b = sources.random_phantom((48, 40), np.random.default_rng(1))
    c = sources.random_phantom((48, 40), np.random.default_rng(2))
    _check_unit(a, (48, 40))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert len(torch.unique((a * 50).round())) > 10  # textures and contrasts, not a few flat levels


def test_natural_image() -> None:
    image = sources.natural_image((40, 56), np.random.default_rng(0), name="camera")
    _check_unit(image, (40, 56))
    with pytest.raises(InputError, match="unknown natural image 'nope'"):
        sources.natural_image((40, 40), np.random.default_rng(0), name="nope")


def test_mni_t1_slices_are_real_anatomy() -> None:
    assert sources.mni_t1_volume().shape == (197, 233, 189)
    images = [sources.mni_t1_slice((64, 48), np.random.default_rng(seed)) for seed in range(3)]
    for image in images:
        _check_unit(image, (64, 48))
        assert len(torch.unique((image * 20).round())) > 12
    assert not torch.equal(images[0], images[1])


def test_held_out_epi_volume() -> None:
    assert sources.epi_volume().shape == (128, 96, 24)
    image = sources.epi_slice(12)
    _check_unit(image, (96, 128))
    assert float((image > 0.1).float().mean()) > 0.2  # a brain fills the slice
    _check_unit(sources.epi_slice(3, (64, 64)), (64, 64))
    with pytest.raises(InputError, match="0..23, got 24"):
        sources.epi_slice(24)


def test_load_image_file_formats(tmp_path: Path) -> None:
    import matplotlib.image

    ramp = np.outer(np.linspace(0, 1, 30), np.linspace(0.2, 1, 40)).astype(np.float32)
    np.save(tmp_path / "a.npy", ramp * 7.0)
    np.save(tmp_path / "complex.npy", (ramp * np.exp(1j * ramp)).astype(np.complex64))
    np.save(tmp_path / "stack.npy", np.stack([ramp, ramp * 2, ramp]))
    matplotlib.image.imsave(tmp_path / "a.png", np.stack([ramp] * 3, axis=-1))
    for name in ("a.npy", "complex.npy", "stack.npy", "a.png"):
        image = sources.load_image_file(tmp_path / name)
        _check_unit(image, (30, 40))
        torch.testing.assert_close(image, torch.from_numpy(ramp), atol=0.01, rtol=0)


def test_load_nifti_and_dicom(tmp_path: Path) -> None:
    import nibabel
    import pydicom.data as pydicom_data

    volume = np.random.default_rng(0).random((20, 24, 5)).astype(np.float32)
    nibabel.save(nibabel.Nifti1Image(volume, np.eye(4)), str(tmp_path / "v.nii.gz"))
    image = sources.load_image_file(tmp_path / "v.nii.gz")
    _check_unit(image, (24, 20))  # middle slice, rotated as the demo shows NIfTI slices
    torch.testing.assert_close(
        image, torch.from_numpy(np.rot90(volume[:, :, 2]) / volume[:, :, 2].max()).float()
    )
    dcm = pydicom_data.get_testdata_file("MR_small.dcm", download=False)
    _check_unit(sources.load_image_file(dcm), (64, 64))


def test_load_image_file_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing.png"):
        sources.load_image_file(tmp_path / "missing.png")
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(InputError, match=r"x.txt: unknown suffix; expected one of .png"):
        sources.load_image_file(tmp_path / "x.txt")
    np.save(tmp_path / "line.npy", np.ones(50))
    with pytest.raises(InputError, match=r"shape \(50,\)"):
        sources.load_image_file(tmp_path / "line.npy")
    np.save(tmp_path / "zeros.npy", np.zeros((20, 20)))
    with pytest.raises(InputError, match="positive maximum"):
        sources.load_image_file(tmp_path / "zeros.npy")


def test_gaussian_coil_maps() -> None:
    maps = gaussian_coil_maps(12, (40, 36), np.random.default_rng(0))
    assert maps.shape == (12, 40, 36) and maps.dtype == torch.complex64
    torch.testing.assert_close(rss(maps.unsqueeze(0))[0], torch.ones(40, 36), atol=1e-5, rtol=0)
    raw = gaussian_coil_maps(4, (40, 36), np.random.default_rng(0), normalize=False)
    assert float(raw.abs().amax(dim=(1, 2)).min()) > 0.1
    assert not torch.equal(maps, gaussian_coil_maps(12, (40, 36), np.random.default_rng(1)))
    with pytest.raises(InputError, match="num_coils must be >= 1, got 0"):
        gaussian_coil_maps(0, (40, 36), np.random.default_rng(0))


def test_birdcage_rotation() -> None:
    torch.testing.assert_close(birdcage_maps(6, (32, 32), rotation=0.0), birdcage_maps(6, (32, 32)))
    turned = birdcage_maps(6, (32, 32), rotation=0.4)
    assert not torch.allclose(turned, birdcage_maps(6, (32, 32)))
    torch.testing.assert_close(rss(turned.unsqueeze(0))[0], torch.ones(32, 32), atol=1e-5, rtol=0)


def test_simulate_image() -> None:
    image = sources.random_phantom((36, 28), np.random.default_rng(0))
    sim = simulate_image(image, 5, snr_db=None, seed=3)
    assert sim.kspace.shape == (1, 5, 36, 28)
    torch.testing.assert_close(sim.target[0], image, atol=1e-5, rtol=0)
    with pytest.raises(InputError, match="real"):
        simulate_image(image.to(torch.complex64))
