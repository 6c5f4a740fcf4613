"""The prepared input: one chunk of validated k-space, its mask and ACS block, ready for any backend.

Everything that needs the host (mask inference, the ACS search, finiteness checks, the choice of
scale) happens here, once per chunk, so a model's forward takes tensors only and compiles to one
graph. :func:`prepare` also normalises each slice's scale: k-space is multiplied by a power of two
(exact in floating point) that brings its largest magnitude into [0.5, 1), before any cast to
complex64. The models are scale-equivariant, so :meth:`PreparedInput.unscale` gives the same image
for any finite input (complex128 at 1e300 included) and keeps reduced-precision networks in range.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fastrecon._arrays import check_finite
from fastrecon.errors import InputError
from fastrecon.physics import acs_count_masks, acs_masks, broadcast_mask, infer_mask


@dataclass(frozen=True)
class PreparedInput:
    """One chunk of ``B`` slices on the model's device.

    Attributes:
        kspace: ``(B, C, H, W)`` complex64, zero outside the mask, slice ``i`` multiplied by ``scale[i]``.
        mask: bool, broadcastable to ``kspace``: ``(1 or B, 1, 1 or H, W)``.
        acs: bool ``(1 or B, 1, 1, W)``: the centred autocalibration columns.
        scale: ``(B,)`` float64 powers of two applied to each slice.
        dtype: the input's complex dtype (complex64 or complex128): the output's precision.
    """

    kspace: torch.Tensor
    mask: torch.Tensor
    acs: torch.Tensor
    scale: torch.Tensor
    dtype: torch.dtype

    @property
    def batch(self) -> int:
        return int(self.kspace.shape[0])

    @property
    def column_mask(self) -> bool:
        """True when the mask selects whole phase-encode columns (varies along W only)."""
        return int(self.mask.shape[-2]) == 1

    def padded(self, batch: int) -> PreparedInput:
        """The chunk padded to ``batch`` slices by repeating its last slice (for static-shape backends)."""
        extra = batch - self.batch
        if extra <= 0:
            return self

        def pad(t: torch.Tensor) -> torch.Tensor:
            return torch.cat([t, t[-1:].expand(extra, *t.shape[1:])])

        def pad_per_slice(t: torch.Tensor) -> torch.Tensor:
            # A mask shared by the chunk (leading 1) broadcasts to any batch; a per-slice one is padded.
            return pad(t) if t.shape[0] == self.batch and self.batch > 1 else t

        return PreparedInput(
            pad(self.kspace), pad_per_slice(self.mask), pad_per_slice(self.acs), pad(self.scale), self.dtype
        )

    def unscale(self, image: torch.Tensor) -> torch.Tensor:
        """Undo the per-slice scale of a model output ``(B', H, W)`` (B' <= B drops padding), in the
        input's precision (float32/complex64 for complex64 input, float64/complex128 for complex128)."""
        real = torch.float64 if self.dtype == torch.complex128 else torch.float32
        target = (
            (torch.complex128 if real == torch.float64 else torch.complex64) if image.is_complex() else real
        )
        scale = self.scale[: image.shape[0]].to(real).view(-1, 1, 1)
        return image.to(target) / scale


def _slice_scale(kspace: torch.Tensor) -> torch.Tensor:
    """Per-slice power of two ``2^-e`` with ``max |k| * 2^-e`` in [0.5, 1); 1 for an all-zero slice."""
    peak = kspace.abs().flatten(1).amax(dim=1).to(torch.float64)
    _, exponent = torch.frexp(peak)
    scale = torch.ldexp(torch.ones_like(peak), -exponent.to(torch.float64))
    return torch.where(peak > 0, scale, torch.ones_like(scale))


def prepare(
    kspace: torch.Tensor,
    mask: torch.Tensor | None,
    *,
    min_acs_lines: int,
    device: torch.device,
    num_low_frequencies: int | None = None,
) -> PreparedInput:
    """Validate and prepare one chunk.

    Args:
        kspace: ``(B, C, H, W)`` complex64 or complex128, on any device (copied to ``device`` here).
        mask: the user's bool mask for this chunk, already shape-checked (``(W,)``, ``(H, W)`` or
            ``(B or 1, 1, 1 or H, W)``); ``None`` infers it from the zero pattern, slice by slice.
        min_acs_lines: the model's fewest accepted ACS lines.
        device: the model's device.
        num_low_frequencies: the number of ACS lines when the caller knows it (fastMRI passes the mask
            function's count); None finds the centred block in the mask (fastMRI's rule without it).
    """
    dtype = kspace.dtype
    kspace = kspace.to(device)
    if mask is None:
        check_finite(kspace, "k-space")
        mask_t = infer_mask(kspace)
    else:
        mask_t = mask.to(device)
        zero = torch.zeros((), dtype=kspace.dtype, device=kspace.device)
        kspace = torch.where(broadcast_mask(mask_t, kspace.shape), kspace, zero)
        check_finite(kspace, "k-space (inside the mask)")
    if not bool(kspace.ne(0).any()):
        raise InputError("k-space is all zeros (after masking); there is nothing to reconstruct.")
    mask_b = broadcast_mask(mask_t, kspace.shape)
    if num_low_frequencies is None:
        acs = acs_masks(mask_t, min_lines=min_acs_lines)[:, None, None, :]
    else:
        acs = acs_count_masks(mask_t, num_low_frequencies, min_lines=min_acs_lines)[:, None, None, :]
    scale = _slice_scale(kspace)
    if kspace.dtype == torch.complex64 and not bool(((scale >= 2.0**-126) & (scale <= 2.0**126)).all()):
        kspace = kspace.to(torch.complex128)  # a scale outside float32's normal range: multiply in float64
    scaled = (kspace * scale.to(kspace.real.dtype).view(-1, 1, 1, 1)).to(torch.complex64)
    if not bool(torch.isfinite(torch.view_as_real(scaled)).all()):
        raise InputError(
            "k-space could not be brought into complex64 range; its values span too many decades."
        )
    return PreparedInput(kspace=scaled, mask=mask_b, acs=acs, scale=scale, dtype=dtype)
