"""Centred orthonormal FFTs against a float64 numpy oracle, for even and odd sizes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fastrecon.physics import fft2c, ifft2c

SIZES = [(8, 8), (7, 9), (5, 6), (6, 11), (1, 4), (33, 20)]


def numpy_fft2c(x: np.ndarray) -> np.ndarray:
    # fastMRI's definition: ifftshift -> fft2 (ortho) -> fftshift, over the last two axes.
    axes = (-2, -1)
    return np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(x, axes=axes), norm="ortho"), axes=axes)


def numpy_ifft2c(x: np.ndarray) -> np.ndarray:
    axes = (-2, -1)
    return np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(x, axes=axes), norm="ortho"), axes=axes)


def random_complex(*shape: int, dtype: torch.dtype = torch.complex64) -> torch.Tensor:
    return torch.randn(*shape, dtype=dtype)


@pytest.mark.parametrize("size", SIZES)
def test_fft2c_matches_float64_numpy(size: tuple[int, int]) -> None:
    x = random_complex(2, 3, *size)
    expected = numpy_fft2c(x.numpy().astype(np.complex128))
    np.testing.assert_allclose(fft2c(x).numpy(), expected, rtol=0, atol=2e-6 * np.abs(expected).max())
    expected_inv = numpy_ifft2c(x.numpy().astype(np.complex128))
    np.testing.assert_allclose(
        ifft2c(x).numpy(), expected_inv, rtol=0, atol=2e-6 * np.abs(expected_inv).max()
    )


@pytest.mark.parametrize("size", SIZES)
def test_inverse_and_orthonormal(size: tuple[int, int]) -> None:
    x = random_complex(3, *size, dtype=torch.complex128)
    torch.testing.assert_close(ifft2c(fft2c(x)), x)
    torch.testing.assert_close(fft2c(ifft2c(x)), x)
    # Parseval: orthonormal scaling keeps the energy (a wrong scale would fail here).
    torch.testing.assert_close(fft2c(x).abs().pow(2).sum(), x.abs().pow(2).sum())


@pytest.mark.parametrize("size", SIZES)
def test_adjointness(size: tuple[int, int]) -> None:
    x = random_complex(2, *size, dtype=torch.complex128)
    y = random_complex(2, *size, dtype=torch.complex128)
    lhs = torch.vdot(fft2c(x).flatten(), y.flatten())
    rhs = torch.vdot(x.flatten(), ifft2c(y).flatten())
    torch.testing.assert_close(lhs, rhs)


def test_dc_component_sits_at_centre() -> None:
    # A constant image has all its energy at k-space index (H//2, W//2), as in fastMRI.
    image = torch.ones(7, 10, dtype=torch.complex128)
    k = fft2c(image)
    assert k.abs().argmax().item() == (7 // 2) * 10 + 10 // 2
    assert k.abs().max().item() == pytest.approx(np.sqrt(70))
