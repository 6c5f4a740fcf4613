"""fastMRI's arithmetic on real ``(..., 2)`` tensors: the one shipped copy the benchmarks compare against.

From facebookresearch/fastMRI (``fastmri/fftc.py``, ``fastmri/math.py``, ``fastmri/models/varnet.py``),
Copyright (c) Facebook, Inc. and its affiliates, MIT licence. Every tensor operation is fastMRI's
(roll-based shifts by ``narrow`` + ``cat``, ortho FFTs, ``complex_mul`` by stacking), so a benchmark
row labelled ``fastmri`` measures what an E2E-VarNet cascade does today. (The tests keep their own
vendored oracle, ``tests/models/_fastmri_oracle.py``, so they stay independent of this package.)
"""

from __future__ import annotations

import torch

Tensor = torch.Tensor


def roll_one_dim(x: Tensor, shift: int, dim: int) -> Tensor:
    shift = shift % x.size(dim)
    if shift == 0:
        return x
    left = x.narrow(dim, 0, x.size(dim) - shift)
    right = x.narrow(dim, x.size(dim) - shift, shift)
    return torch.cat((right, left), dim=dim)


def _shift(x: Tensor, dims: list[int], inverse: bool) -> Tensor:
    for dim in dims:
        size = x.shape[dim]
        x = roll_one_dim(x, (size + 1) // 2 if inverse else size // 2, dim)
    return x


def fft2c(data: Tensor, inverse: bool = False) -> Tensor:
    """fastMRI's ``fft2c`` (``inverse=True``: ``ifft2c``) on ``(..., H, W, 2)``."""
    data = _shift(data, [-3, -2], inverse=True)
    fft = torch.fft.ifftn if inverse else torch.fft.fftn
    data = torch.view_as_real(fft(torch.view_as_complex(data), dim=(-2, -1), norm="ortho"))
    return _shift(data, [-3, -2], inverse=False)


def complex_mul(x: Tensor, y: Tensor) -> Tensor:
    re = x[..., 0] * y[..., 0] - x[..., 1] * y[..., 1]
    im = x[..., 0] * y[..., 1] + x[..., 1] * y[..., 0]
    return torch.stack((re, im), dim=-1)


def complex_conj(x: Tensor) -> Tensor:
    return torch.stack((x[..., 0], -x[..., 1]), dim=-1)


def sens_expand(image: Tensor, sens: Tensor) -> Tensor:
    """``(N, H, W, 2)`` image, ``(N, C, H, W, 2)`` maps -> k-space ``(N, C, H, W, 2)``."""
    return fft2c(complex_mul(image.unsqueeze(1), sens))


def sens_reduce(kspace: Tensor, sens: Tensor) -> Tensor:
    return complex_mul(fft2c(kspace, inverse=True), complex_conj(sens)).sum(dim=1)


def soft_dc(kspace: Tensor, kspace0: Tensor, mask: Tensor, dc_weight: Tensor) -> Tensor:
    zero = torch.zeros(1, 1, 1, 1, 1, dtype=kspace.dtype, device=kspace.device)
    return kspace - torch.where(mask, kspace - kspace0, zero) * dc_weight


def cascade_step(
    kspace: Tensor, kspace0: Tensor, mask: Tensor, dc_weight: Tensor, sens: Tensor, correction: Tensor
) -> tuple[Tensor, Tensor]:
    """One VarNet block's DC with the image-domain correction, then the next image (real layout)."""
    zero = torch.zeros(1, 1, 1, 1, 1, dtype=kspace.dtype, device=kspace.device)
    dc = torch.where(mask, kspace - kspace0, zero) * dc_weight
    kspace_next = kspace - dc - sens_expand(correction, sens)
    return kspace_next, sens_reduce(kspace_next, sens)
