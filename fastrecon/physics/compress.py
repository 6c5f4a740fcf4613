"""Coil compression: many receive channels -> fewer virtual coils, from the data itself.

SVD (principal-component) compression: the virtual coils are the ``V`` dominant left singular vectors
of the ``(C, samples)`` matrix that holds every measured sample of the volume (all slices, all sampled
points). The matrix :math:`A` is ``(V, C)`` with orthonormal rows, so ``A A^H = I``; the compressed
k-space is ``A k`` channel-wise. Keeping every channel (``V = C``) is a unitary change of basis (the RSS
image does not change); dropping the weakest components loses only their energy, which is small when
the coils are correlated (a 32- or 64-channel array seen through a few independent profiles).

One matrix per volume (per call): the same virtual coils on every slice, as a volume's slices share
their receive array. The singular vectors come from the ``C x C`` sample covariance, accumulated slice
by slice in complex128, so the extra memory stays at one slice.
"""

from __future__ import annotations

import torch

from fastrecon.errors import InputError
from fastrecon.physics.dc import broadcast_mask


def _check_mask(mask: torch.Tensor | None, shape: torch.Size) -> None:
    """Compression mixes the coils, so the sampling must be one pattern shared by them: a mask with a coil
    dimension (``(N, C, H, W)``) is refused with :class:`~fastrecon.errors.InputError`."""
    if mask is None:
        return
    full = broadcast_mask(mask, shape)
    if full.ndim == 4 and full.shape[1] > 1:
        raise InputError(
            f"mask has shape {tuple(mask.shape)}, one per coil; coil compression mixes the coils, so it needs one "
            "sampling pattern for all of them: (W,), (H, W), or per slice (N, 1, 1, W) / (N, 1, H, W)."
        )


def _masked(kspace: torch.Tensor, mask: torch.Tensor | None, index: int) -> torch.Tensor:
    """Slice ``index`` ``(C, H, W)`` of ``kspace``, zero outside ``mask`` (broadcastable to ``kspace``)."""
    samples = kspace[index]
    if mask is None:
        return samples
    full = broadcast_mask(mask.to(kspace.device), kspace.shape)
    keep = full[index if full.shape[0] > 1 else 0]
    return torch.where(keep, samples, torch.zeros((), dtype=samples.dtype, device=samples.device))


def _samples(kspace: torch.Tensor, mask: torch.Tensor | None, index: int) -> torch.Tensor:
    """The measured samples of slice ``index`` as ``(C, P)``: the points inside ``mask`` (or, without a
    mask, the points where any coil is non-zero); unmeasured zeros add nothing to the covariance."""
    coils = kspace.shape[1]
    flat = kspace[index].reshape(coils, -1)
    if mask is None:
        keep = (flat != 0).any(dim=0)
    else:
        full = broadcast_mask(mask.to(kspace.device), kspace.shape)
        keep = full[index if full.shape[0] > 1 else 0].expand(1, *kspace.shape[-2:]).reshape(-1)
    return flat[:, keep]


def _peak(samples: torch.Tensor) -> float:
    return float(samples.abs().amax()) if samples.numel() else 0.0


def compression_matrix(
    kspace: torch.Tensor, num_virtual: int, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """The ``(V, C)`` compression matrix of ``kspace`` ``(N, C, H, W)`` (rows: dominant first).

    Args:
        kspace: complex k-space; only the sampled points (inside ``mask``, or non-zero) contribute.
        num_virtual: ``V``, the number of virtual coils, ``1 <= V <= C``.
        mask: optional bool mask broadcastable to ``kspace`` (entries outside it are ignored, junk included).

    Returns:
        complex128 ``(V, C)`` with orthonormal rows, on ``kspace``'s device.
    """
    if kspace.ndim != 4 or not kspace.is_complex():
        raise InputError(
            f"k-space has shape {tuple(kspace.shape)} and dtype {kspace.dtype}; expected complex (N, C, H, W)."
        )
    num, coils = int(kspace.shape[0]), int(kspace.shape[1])
    _check_mask(mask, kspace.shape)
    if isinstance(num_virtual, bool) or not isinstance(num_virtual, int) or not 1 <= num_virtual <= coils:
        raise InputError(f"num_virtual is {num_virtual!r}; expected a whole number of coils in 1..{coils}.")
    # Every sample keeps its weight (strong slices count more than weak ones, as in one big SVD). complex64
    # values squared cannot overflow float64; complex128 ones can, so they get one global scale first (any
    # positive number keeps the eigenvectors).
    scale = 1.0
    if kspace.dtype == torch.complex128:
        peak = max((_peak(_samples(kspace, mask, n)) for n in range(num)), default=0.0)
        scale = 1.0 / peak if peak > 0 else 1.0
    cov = torch.zeros(coils, coils, dtype=torch.complex128, device=kspace.device)
    for n in range(num):
        flat = _samples(kspace, mask, n).to(torch.complex128) * scale
        cov += flat @ flat.mH
    _, vectors = torch.linalg.eigh(cov)  # ascending eigenvalues
    return vectors[:, -num_virtual:].flip(-1).mH.resolve_conj().contiguous()


def apply_compression(
    kspace: torch.Tensor, matrix: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """``(N, C, H, W)`` -> ``(N, V, H, W)``: virtual coil ``v`` is ``sum_c matrix[v, c] * kspace[:, c]``,
    in ``kspace``'s dtype; with ``mask``, points outside it are zeroed first (they may hold junk)."""
    num, coils, height, width = kspace.shape
    if matrix.ndim != 2 or matrix.shape[1] != coils:
        raise InputError(f"compression matrix {tuple(matrix.shape)} does not fit {coils} coils.")
    _check_mask(mask, kspace.shape)
    weights = matrix.to(device=kspace.device, dtype=kspace.dtype)
    out = torch.empty((num, weights.shape[0], height, width), dtype=kspace.dtype, device=kspace.device)
    for n in range(num):  # one slice at a time: no (N, C, H, W)-sized temporary
        out[n] = (weights @ _masked(kspace, mask, n).reshape(coils, -1)).reshape(-1, height, width)
    return out


def coil_compress(kspace: torch.Tensor, num_virtual: int, mask: torch.Tensor | None = None) -> torch.Tensor:
    """SVD coil compression of a volume ``(N, C, H, W)`` to ``(N, V, H, W)`` virtual coils.

    With ``mask`` (broadcastable to ``kspace``) the points outside it are zeroed first (they may hold
    junk); the zero pattern survives compression, so the same mask still describes the result.
    """
    return apply_compression(kspace, compression_matrix(kspace, num_virtual, mask), mask)
