"""Data consistency in k-space: the learned soft step (E2E-VarNet) and the hard projection."""

from __future__ import annotations

import torch

from fastrecon.errors import InputError
from fastrecon.physics.coils import sens_expand, sens_reduce


def broadcast_mask(mask: torch.Tensor, kspace_shape: torch.Size | tuple[int, ...]) -> torch.Tensor:
    """A boolean mask shaped to broadcast against k-space ``(N, C, H, W)``.

    Accepted: 1-D ``(W,)`` (phase-encode columns), 2-D ``(H, W)``, or any 4-D shape that
    broadcasts to ``(N, C, H, W)`` (e.g. ``(N, 1, 1, W)`` for one mask per slice).
    """
    height, width = kspace_shape[-2], kspace_shape[-1]
    if mask.ndim == 1:
        if mask.shape[0] != width:
            raise InputError(
                f"1-D mask has {mask.shape[0]} entries; expected one per phase-encode column (W={width})."
            )
        mask = mask.reshape(1, 1, 1, width)
    elif mask.ndim == 2:
        if tuple(mask.shape) != (height, width):
            raise InputError(
                f"2-D mask has shape {tuple(mask.shape)}; expected (H, W) = ({height}, {width})."
            )
        mask = mask.reshape(1, 1, height, width)
    elif mask.ndim == 4:
        try:
            torch.broadcast_shapes(mask.shape, tuple(kspace_shape))
        except RuntimeError:
            raise InputError(
                f"4-D mask of shape {tuple(mask.shape)} does not broadcast to k-space {tuple(kspace_shape)}."
            ) from None
    else:
        raise InputError(
            f"mask has {mask.ndim} dimensions {tuple(mask.shape)}; expected (W,), (H, W) or 4-D broadcastable to (N, C, H, W)."
        )
    return mask if mask.dtype == torch.bool else mask != 0


def soft_dc(
    kspace: torch.Tensor, kspace0: torch.Tensor, mask: torch.Tensor, dc_weight: torch.Tensor | float
) -> torch.Tensor:
    """``k - dc_weight * M (k - k0)``: the learned soft data-consistency step of E2E-VarNet."""
    mask = broadcast_mask(mask, kspace.shape)
    zero = torch.zeros((), dtype=kspace.dtype, device=kspace.device)
    return kspace - torch.where(mask, kspace - kspace0, zero) * dc_weight


def hard_dc(kspace: torch.Tensor, kspace0: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Projection onto the measured data: sampled entries become ``k0``, the others stay ``k``."""
    return torch.where(broadcast_mask(mask, kspace.shape), kspace0, kspace)


def cascade_step(
    kspace: torch.Tensor,
    kspace0: torch.Tensor,
    mask: torch.Tensor,
    dc_weight: torch.Tensor | float,
    sens: torch.Tensor,
    correction: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One cascade's k-space update in fastMRI's order of operations (the fp32 eager reference).

    ``k' = k - w M (k - k0) - fft2c(S correction)``; returns ``(k', R F^-1 k')``. kspace, kspace0,
    sens ``(N, C, H, W)``, correction ``(N, H, W)``, mask broadcastable to k-space.
    """
    kspace_next = soft_dc(kspace, kspace0, mask, dc_weight) - sens_expand(correction, sens)
    return kspace_next, sens_reduce(kspace_next, sens)
