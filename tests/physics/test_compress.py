"""SVD coil compression (fastrecon/physics/compress.py) and its use by ``reconstruct(coil_compress=True)``."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import fastrecon
from fastrecon.cli import main
from fastrecon.data.fastmri import write_fastmri
from fastrecon.data.simulate import (
    birdcage_maps,
    shepp_logan_image,
    simulate_image,
    simulate_multicoil,
    simulate_slice,
)
from fastrecon.errors import InputError
from fastrecon.physics import fft2c, ifft2c, rss
from fastrecon.physics.compress import apply_compression, coil_compress, compression_matrix


def _low_rank_kspace(coils: int, rank: int, size: tuple[int, int] = (40, 36), seed: int = 0) -> torch.Tensor:
    """``(2, coils, H, W)`` k-space whose coil profiles are ``rank`` birdcage maps mixed by a random matrix."""
    gen = torch.Generator().manual_seed(seed)
    image = torch.randn(2, *size, generator=gen, dtype=torch.complex128)
    mix = torch.randn(coils, rank, generator=gen, dtype=torch.complex128)
    maps = torch.einsum("cr,rhw->chw", mix, birdcage_maps(rank, size).to(torch.complex128))
    return fft2c(maps * image[:, None])


def test_rows_orthonormal_and_dominant_first() -> None:
    kspace = _low_rank_kspace(12, 5)
    matrix = compression_matrix(kspace, 7)
    assert matrix.shape == (7, 12) and matrix.dtype == torch.complex128
    torch.testing.assert_close(matrix @ matrix.mH, torch.eye(7, dtype=torch.complex128), rtol=0, atol=1e-12)
    energy = apply_compression(kspace, matrix).abs().pow(2).sum(dim=(0, 2, 3))
    assert bool((energy[:-1] >= energy[1:]).all())


def test_subspace_equals_numpy_svd() -> None:
    """The kept subspace is that of numpy's SVD of the (C, samples) matrix (float64 oracle)."""
    kspace = _low_rank_kspace(10, 10, seed=1) + 0.01 * _low_rank_kspace(10, 10, seed=2)
    samples = kspace.permute(1, 0, 2, 3).reshape(10, -1).numpy()
    u, _, _ = np.linalg.svd(samples, full_matrices=False)
    expected = u[:, :4] @ u[:, :4].conj().T  # the projector is free of the vectors' phases
    matrix = compression_matrix(kspace, 4).numpy()
    np.testing.assert_allclose(matrix.conj().T @ matrix, expected, atol=1e-10)


def test_low_rank_data_compress_without_loss() -> None:
    """32 coils seen through 8 independent profiles: 8 virtual coils keep every image exactly (RSS equal);
    fewer lose energy."""
    kspace = _low_rank_kspace(32, 8)
    full = rss(ifft2c(kspace), dim=1)
    compressed = coil_compress(kspace, 8)
    assert compressed.shape == (2, 8, 40, 36)
    torch.testing.assert_close(rss(ifft2c(compressed), dim=1), full, rtol=1e-9, atol=1e-12)
    fewer = rss(ifft2c(coil_compress(kspace, 4)), dim=1)
    assert float((full - fewer).norm() / full.norm()) > 1e-2
    # Keeping every channel is a unitary change of basis.
    torch.testing.assert_close(rss(ifft2c(coil_compress(kspace, 32)), dim=1), full, rtol=1e-9, atol=1e-12)


def test_mask_ignores_junk_outside() -> None:
    kspace = _low_rank_kspace(6, 3).to(torch.complex64)
    mask = torch.zeros(36, dtype=torch.bool)
    mask[::3] = True
    junk = torch.where(mask, kspace, torch.full((), complex("nan"), dtype=torch.complex64))
    out = coil_compress(junk, 3, mask)
    torch.testing.assert_close(out, coil_compress(kspace * mask, 3))
    assert out.dtype == torch.complex64 and bool((out[..., ~mask] == 0).all())


def test_bad_arguments() -> None:
    kspace = _low_rank_kspace(4, 2)
    for bad in (0, 5, 2.0, True):
        with pytest.raises(InputError, match="num_virtual"):
            compression_matrix(kspace, bad)  # type: ignore[arg-type]
    with pytest.raises(InputError, match=r"expected complex \(N, C, H, W\)"):
        compression_matrix(kspace[0], 2)


def test_odd_coil_counts_and_every_shared_mask_layout() -> None:
    """7 coils of rank 3 to 3 virtual coils: lossless for a column, 2-D and per-slice mask alike, and the
    zero pattern outside each mask survives."""
    kspace = _low_rank_kspace(7, 3, size=(9, 11)).to(torch.complex64)
    gen = torch.Generator().manual_seed(1)
    masks = {
        "columns": torch.rand(11, generator=gen) > 0.5,
        "2-D": torch.rand(9, 11, generator=gen) > 0.5,
        "per slice": torch.rand(2, 1, 1, 11, generator=gen) > 0.5,
        "per slice 2-D": torch.rand(2, 1, 9, 11, generator=gen) > 0.5,
    }
    for name, mask in masks.items():
        full = mask.reshape(-1, 1, *mask.shape[-2:]) if mask.ndim == 4 else mask
        kept = torch.where(full, kspace, 0)
        out = coil_compress(kspace, 3, mask)
        assert out.shape == (2, 3, 9, 11), name
        assert not bool(torch.where(full, 0, out).abs().amax()), name  # still zero outside the mask
        energy = kept.abs().pow(2).sum(dim=1)
        assert torch.allclose(
            out.abs().pow(2).sum(dim=1), energy, rtol=1e-4, atol=1e-6 * float(energy.max())
        ), name


def test_a_mask_per_coil_is_refused(demo: fastrecon.Reconstructor) -> None:
    """Compression mixes coils: a mask that has a coil dimension cannot describe the virtual coils."""
    kspace = _low_rank_kspace(33, 3, size=(32, 24)).to(torch.complex64)  # demo-x8 takes up to 32
    per_coil = torch.ones(2, 33, 32, 24, dtype=torch.bool)
    with pytest.raises(InputError, match="one per coil"):
        coil_compress(kspace, 3, per_coil)
    with pytest.raises(InputError, match="one per coil"):
        demo.reconstruct(kspace, per_coil, coil_compress=True)


# --- through the API: a 32-coil acquisition on a model made for 8 coils --------------------------------


@pytest.fixture(scope="module")
def demo() -> fastrecon.Reconstructor:
    return fastrecon.load("demo-x8", device="cpu")


def _psnr(reference: torch.Tensor, image: torch.Tensor) -> float:
    mse = float((reference.double() - image.double()).pow(2).mean())
    return 10 * math.log10(float(reference.max()) ** 2 / mse)


def test_32_coils_to_an_8_coil_model(demo: fastrecon.Reconstructor) -> None:
    sim = simulate_slice((96, 96), num_coils=32, seed=4)  # cardiac phantom, 30 dB SNR
    mask = torch.zeros(96, dtype=torch.bool)
    mask[::8] = True
    mask[43:53] = True  # x8 with 10 ACS lines, demo-x8's own setting
    eight = dataclasses.replace(
        demo,
        config=dataclasses.replace(
            demo.config, contract=dataclasses.replace(demo.config.contract, max_coils=8)
        ),
    )
    with pytest.raises(InputError, match=r"32 coils; demo-x8 accepts 1..8.*coil_compress=True"):
        eight.reconstruct(sim.kspace, mask)
    compressed = eight.reconstruct(sim.kspace, mask, coil_compress=True)
    uncompressed = demo.reconstruct(sim.kspace, mask)  # the same weights on all 32 coils
    target = sim.target
    psnr_compressed, psnr_uncompressed = _psnr(target, compressed), _psnr(target, uncompressed)
    # Measured (CPU): 8 virtual coils 32.3 dB and all 32 coils 32.3 dB against the fully sampled 32-coil
    # RSS; the two reconstructions agree to 59 dB; zero-filled is 23.9 dB.
    assert psnr_compressed > 31.0 and psnr_compressed > psnr_uncompressed - 0.5
    assert _psnr(uncompressed, compressed) > 50.0
    assert _psnr(target, rss(ifft2c(sim.kspace * mask), dim=1)) < psnr_compressed - 5.0
    # Data that fits the model is left alone.
    few, _ = simulate_multicoil(sim.image[..., ::3, ::3], maps=birdcage_maps(8, (32, 32)))
    small = torch.zeros(32, dtype=torch.bool)
    small[::4] = True
    small[12:20] = True
    torch.testing.assert_close(
        eight.reconstruct(few, small, coil_compress=True), eight.reconstruct(few, small), rtol=0, atol=0
    )


def test_cli_coil_compress(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sim = simulate_image(shepp_logan_image((32, 32)), num_coils=40, snr_db=40.0, seed=1)  # demo-x8 takes 32
    source = write_fastmri(tmp_path / "many.h5", sim.kspace, target=sim.target)
    args = ["reconstruct", str(source), "--model", "demo-x8", "--device", "cpu", "--accel", "4"]
    assert main([*args, "--out", str(tmp_path / "a.h5")]) == 2
    assert "--coil-compress" in capsys.readouterr().err
    assert main([*args, "--out", str(tmp_path / "b.h5"), "--coil-compress"]) == 0
    assert (tmp_path / "b.h5").is_file()


def test_evaluate_cli_coil_compress(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sim = simulate_image(shepp_logan_image((32, 32)), num_coils=40, snr_db=40.0, seed=2)
    write_fastmri(tmp_path / "data" / "many.h5", sim.kspace, target=sim.target)
    args = [
        "evaluate",
        "--model",
        "demo-x8",
        "--device",
        "cpu",
        "--data",
        str(tmp_path / "data"),
        "--accel",
        "4",
    ]
    assert main([*args, "--out", str(tmp_path / "a")]) == 2
    assert "--coil-compress" in capsys.readouterr().err
    assert main([*args, "--out", str(tmp_path / "b"), "--coil-compress"]) == 0
    assert (tmp_path / "b.json").is_file()
