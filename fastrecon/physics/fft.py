"""Centred, orthonormal 2-D FFTs over the last two dimensions, equal to fastMRI's ``fft2c``/``ifft2c``.

fastMRI shifts with ``ifftshift`` before and ``fftshift`` after the transform (numpy's convention,
which differs between the forward and inverse shift for odd sizes); ``torch.fft.fftshift`` follows
the same convention, so these match fastMRI for even and odd H, W.
"""

from __future__ import annotations

import torch

_DIMS = (-2, -1)


def fft2c(image: torch.Tensor) -> torch.Tensor:
    """Centred orthonormal 2-D FFT of a complex tensor ``(..., H, W)`` -> k-space ``(..., H, W)``."""
    shifted = torch.fft.ifftshift(image, dim=_DIMS)
    return torch.fft.fftshift(torch.fft.fft2(shifted, dim=_DIMS, norm="ortho"), dim=_DIMS)


def ifft2c(kspace: torch.Tensor) -> torch.Tensor:
    """Centred orthonormal 2-D inverse FFT of complex k-space ``(..., H, W)`` -> image ``(..., H, W)``."""
    shifted = torch.fft.ifftshift(kspace, dim=_DIMS)
    return torch.fft.fftshift(torch.fft.ifft2(shifted, dim=_DIMS, norm="ortho"), dim=_DIMS)


def fftc(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Centred orthonormal 1-D FFT along ``dim`` (``fft2c`` is this along -2 then -1)."""
    shifted = torch.fft.ifftshift(x, dim=dim)
    return torch.fft.fftshift(torch.fft.fft(shifted, dim=dim, norm="ortho"), dim=dim)


def ifftc(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Centred orthonormal 1-D inverse FFT along ``dim``."""
    shifted = torch.fft.ifftshift(x, dim=dim)
    return torch.fft.fftshift(torch.fft.ifft(shifted, dim=dim, norm="ortho"), dim=dim)


def centred_dft_matrix(
    n: int, *, inverse: bool = False, dtype: torch.dtype = torch.complex128
) -> torch.Tensor:
    """The ``(n, n)`` matrix ``D`` with ``fftc(x, -1) = x @ D`` (``ifftc`` with ``inverse=True``),
    centring shifts and the orthonormal scale folded in; built in float64, then cast to ``dtype``."""
    eye = torch.eye(n, dtype=torch.complex128)
    matrix = ifftc(eye, dim=-1) if inverse else fftc(eye, dim=-1)
    return matrix.to(dtype)
