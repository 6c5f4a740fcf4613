"""Classical CG-SENSE: the no-learning yardstick for the demo table.

Solves ``min_x ||M F S x - y||^2 + lam ||x||^2`` for each slice by conjugate gradients on the normal
equations ``(R M E + lam) x = R M y`` (``E`` = :func:`~fastrecon.physics.coils.sens_expand`, ``R`` =
:func:`~fastrecon.physics.coils.sens_reduce`, ``M`` the sampling mask), with the coil maps given
(in the demo: the true maps of the simulation).
"""

from __future__ import annotations

import torch

from fastrecon.errors import InputError
from fastrecon.physics.coils import rss, sens_expand, sens_reduce
from fastrecon.physics.dc import broadcast_mask


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-slice inner product ``<a, b> = sum conj(a) b`` over ``(H, W)``, real part, shape ``(N, 1, 1)``."""
    return (a.conj() * b).real.sum(dim=(-2, -1), keepdim=True)


def cg_sense(
    kspace: torch.Tensor,
    mask: torch.Tensor,
    maps: torch.Tensor,
    *,
    lam: float = 1e-2,
    iterations: int = 20,
    tol: float = 1e-6,
) -> torch.Tensor:
    """Tikhonov-regularised SENSE by conjugate gradients.

    Args:
        kspace: ``(N, C, H, W)`` complex undersampled k-space (unsampled entries are ignored).
        mask: ``(W,)``, ``(H, W)`` or 4-D broadcastable mask (see :func:`~fastrecon.physics.dc.broadcast_mask`).
        maps: ``(C, H, W)`` or ``(N, C, H, W)`` complex coil sensitivities.
        lam: Tikhonov weight, relative to the normal operator (whose largest eigenvalue is 1 for
            RSS-normalised maps and an orthonormal FFT).
        iterations: at most this many CG iterations; stops earlier when every slice's residual norm
            falls below ``tol`` times that of the right-hand side.

    Returns:
        ``(N, H, W)`` complex64 coil-combined image ``x``.
    """
    if kspace.ndim != 4 or not kspace.is_complex():
        raise InputError(f"kspace must be complex (N, C, H, W), got {tuple(kspace.shape)} {kspace.dtype}.")
    if maps.ndim not in (3, 4) or maps.shape[-3:] != kspace.shape[-3:]:
        raise InputError(f"maps {tuple(maps.shape)} do not match k-space {tuple(kspace.shape)} in (C, H, W).")
    if maps.ndim == 3:
        maps = maps.unsqueeze(0)
    if lam < 0 or iterations < 1:
        raise InputError(f"need lam >= 0 and iterations >= 1, got lam={lam}, iterations={iterations}.")
    sampled = broadcast_mask(mask, kspace.shape)
    zero = torch.zeros((), dtype=kspace.dtype, device=kspace.device)

    def normal(x: torch.Tensor) -> torch.Tensor:
        return sens_reduce(torch.where(sampled, sens_expand(x, maps), zero), maps) + lam * x

    rhs = sens_reduce(torch.where(sampled, kspace, zero), maps)
    x = torch.zeros_like(rhs)
    residual = rhs.clone()
    direction = residual.clone()
    rs = _dot(residual, residual)
    stop = (tol**2) * rs
    tiny = torch.finfo(torch.float32).tiny
    for _ in range(iterations):
        image = normal(direction)
        alpha = rs / _dot(direction, image).clamp_min(tiny)
        x = x + alpha * direction
        residual = residual - alpha * image
        rs_next = _dot(residual, residual)
        if bool((rs_next <= stop).all()):
            break
        direction = residual + (rs_next / rs.clamp_min(tiny)) * direction
        rs = rs_next
    return x


def cg_sense_rss(
    kspace: torch.Tensor, mask: torch.Tensor, maps: torch.Tensor, **kwargs: float | int
) -> torch.Tensor:
    """RSS of the coil images ``S x`` of :func:`cg_sense` ``(N, H, W)`` float: comparable with fastMRI's RSS target."""
    image = cg_sense(kspace, mask, maps, **kwargs)  # type: ignore[arg-type]
    full_maps = maps.unsqueeze(0) if maps.ndim == 3 else maps
    return rss(full_maps * image.unsqueeze(1), dim=1)  # = RSS of ifft2c(E x): the FFT is unitary
