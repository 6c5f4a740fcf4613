"""Coil operators: ``E`` (sens_expand), its adjoint ``R`` (sens_reduce) and root-sum-of-squares.

Shapes: image ``(N, H, W)`` complex, sensitivity maps and k-space ``(N, C, H, W)`` complex.
"""

from __future__ import annotations

import torch

from fastrecon.physics.fft import fft2c, ifft2c


def sens_expand(image: torch.Tensor, sens: torch.Tensor) -> torch.Tensor:
    """``E x``: per-coil k-space ``fft2c(S_c x)``; image ``(N, H, W)``, sens ``(N, C, H, W)`` -> ``(N, C, H, W)``."""
    return fft2c(sens * image.unsqueeze(1))


def sens_reduce(kspace: torch.Tensor, sens: torch.Tensor) -> torch.Tensor:
    """``R y = sum_c conj(S_c) ifft2c(y_c)``; kspace, sens ``(N, C, H, W)`` -> image ``(N, H, W)``."""
    # conj_physical, not the lazy conj view: inside a custom op's kernel traced by AOTAutograd
    # (torch.compile, torch.export) torch drops a lazy conj bit and returns sum(S y) (torch 2.14).
    return (torch.conj_physical(sens) * ifft2c(kspace)).sum(dim=1)


def complex_abs(x: torch.Tensor) -> torch.Tensor:
    """Magnitude of a complex tensor, computed as ``sqrt(re^2 + im^2)`` like fastMRI (real result)."""
    return torch.view_as_real(x).pow(2).sum(dim=-1).sqrt()


def rss(x: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """Root-sum-of-squares over ``dim`` of a complex or real tensor (real result)."""
    power = torch.view_as_real(x).pow(2).sum(dim=-1) if x.is_complex() else x.pow(2)
    return power.sum(dim=dim).sqrt()
