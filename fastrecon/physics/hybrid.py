"""Data consistency in hybrid space and on the sampled columns: exact reformulations of the 2-D form
for masks that select whole phase-encode columns (DESIGN.md section 3).

**Hybrid space.** A column mask ``M`` commutes with the centred inverse FFT along H, so the loop can
run on ``h = ifftc_H(k)`` (H in image space, W in k-space); each cascade then needs only 1-D FFTs
along W: ``x = R ifftc_W(h)``, ``h' = h - w M (h - h0) - fftc_W(S c)``, output ``rss(ifftc_W(h_T))``.

**Residual on the sampled columns.** With ``P`` the 0/1 selection of the ``Mp`` sampled columns and
``Phi = sum_c |S_c|^2``, the state is the coil-combined image ``x`` and ``rho = P (h - h0)``::

    x'   = x - R ifftc_W(P^T (w rho)) - Phi c
    rho' = (1 - w) rho - P fftc_W(S c)              rho_0 = 0, x_0 = R ifftc_W(h0)

accumulating ``A = sum_t w_t rho_t`` and ``B = sum_t c_t``; the final coil images are
``ifftc_W(h0 - P^T A) - S B``. The per-cascade transforms are partial DFTs between the W columns and
the Mp sampled ones: dense ``(Mp, W)`` / ``(W, Mp)`` matrices built in float64 once per chunk (the
form the fused kernels run with ``tl.dot``).

Both are exact in exact arithmetic; in fp32 they differ from the 2-D form by rounding only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from fastrecon.errors import InputError
from fastrecon.physics.coils import rss
from fastrecon.physics.dc import broadcast_mask
from fastrecon.physics.fft import centred_dft_matrix, fftc, ifftc
from fastrecon.physics.plan import KSPACE_2D, DCForm, DCPlan

_H, _W = -2, -1


def _column_mask(mask: torch.Tensor, shape: torch.Size, form: str) -> torch.Tensor:
    """The mask as bool ``(1 or N, 1, 1, W)``; a mask that varies along H is refused."""
    mask = broadcast_mask(mask, shape)
    if mask.ndim != 4 or mask.shape[-2] != 1 or mask.shape[1] != 1:
        raise InputError(
            f"DC form {form!r} needs a mask that selects whole phase-encode columns, (W,) or (N, 1, 1, W); "
            f"got shape {tuple(mask.shape)}. Use dc='2d' (or 'auto') for 2-D sampling patterns."
        )
    return mask


def _reduce(coil_images: torch.Tensor, sens: torch.Tensor) -> torch.Tensor:
    # conj_physical: a lazy conj bit is lost inside custom ops traced by AOTAutograd (see coils.sens_reduce).
    return (torch.conj_physical(sens) * coil_images).sum(dim=1)


def residual_x_update(
    x: torch.Tensor,
    rho: torch.Tensor,
    dc_weight: torch.Tensor,
    inverse_p: torch.Tensor,
    sens: torch.Tensor,
    phi: torch.Tensor,
    correction: torch.Tensor,
) -> torch.Tensor:
    """``x' = x - R ifftc_W(P^T (w rho)) - Phi c``.

    x, phi, correction ``(N, H, W)``; rho ``(N, C, H, Mp)``; inverse_p ``(S, Mp, W)`` (S = 1 or N), the
    partial inverse DFT from the sampled columns; sens ``(N, C, H, W)``; dc_weight a 1-element tensor.
    """
    back = (rho * dc_weight) @ inverse_p.unsqueeze(1)  # (N, C, H, W)
    return x - _reduce(back, sens) - phi * correction


def residual_rho_update(
    rho: torch.Tensor,
    dc_weight: torch.Tensor,
    forward_p: torch.Tensor,
    sens: torch.Tensor,
    correction: torch.Tensor,
) -> torch.Tensor:
    """``rho' = (1 - w) rho - P fftc_W(S c)``; forward_p ``(S, W, Mp)``, the partial forward DFT."""
    projected = (sens * correction.unsqueeze(1)) @ forward_p.unsqueeze(1)  # (N, C, H, Mp)
    return rho - rho * dc_weight - projected


XUpdate = Callable[
    [torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
    torch.Tensor,
]
RhoUpdate = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


class HybridPlan:
    """Loop state ``h = ifftc_H(k)``: 1-D FFTs along W only."""

    def __init__(self, kspace0: torch.Tensor, mask: torch.Tensor, sens: torch.Tensor) -> None:
        self.mask = _column_mask(mask, kspace0.shape, "hybrid")
        self.sens = sens
        self.h0 = ifftc(kspace0, _H)
        self.h = self.h0
        self._image = _reduce(ifftc(self.h0, _W), sens)

    def image(self) -> torch.Tensor:
        return self._image

    def step(self, correction: torch.Tensor, dc_weight: torch.Tensor) -> None:
        zero = torch.zeros((), dtype=self.h.dtype, device=self.h.device)
        dc = torch.where(self.mask, self.h - self.h0, zero) * dc_weight
        self.h = self.h - dc - fftc(self.sens * correction.unsqueeze(1), _W)
        self._image = _reduce(ifftc(self.h, _W), self.sens)

    def rss_image(self) -> torch.Tensor:
        return rss(ifftc(self.h, _W), dim=1)

    def combined_image(self) -> torch.Tensor:
        return self._image


class ResidualPlan:
    """Loop state: the combined image ``x`` and the residual ``rho`` on the ``Mp`` sampled columns."""

    def __init__(
        self,
        kspace0: torch.Tensor,
        mask: torch.Tensor,
        sens: torch.Tensor,
        x_update: XUpdate = residual_x_update,
        rho_update: RhoUpdate = residual_rho_update,
    ) -> None:
        self._x_update = x_update
        self._rho_update = rho_update
        mask = _column_mask(mask, kspace0.shape, "residual")
        columns = mask[:, 0, 0, :]  # (S, W), S = 1 or N
        counts = columns.sum(dim=1)
        mp = int(counts.max())
        if mp == 0:
            raise InputError("DC form 'residual' got a mask with no sampled column.")
        width = kspace0.shape[-1]
        # Column indices per slice, padded with a dummy column whose weight is 0 (slices may differ).
        order = torch.argsort((~columns).to(torch.int8), dim=1, stable=True)[:, :mp]  # sampled first
        valid = torch.arange(mp, device=mask.device).unsqueeze(0) < counts.unsqueeze(1)  # (S, Mp)
        forward = centred_dft_matrix(width).to(kspace0.device)  # (W, W): x @ D = fftc_W(x)
        inverse = centred_dft_matrix(width, inverse=True).to(kspace0.device)
        weight = valid.to(torch.float64)
        # (S, W, Mp): fftc_W then select; (S, Mp, W): place on the sampled columns then ifftc_W.
        self.forward_p = (
            (forward[:, order].permute(1, 0, 2) * weight[:, None, :]).to(kspace0.dtype).contiguous()
        )
        self.inverse_p = (inverse[order, :] * weight[:, :, None]).to(kspace0.dtype).contiguous()
        self.sens = sens
        self.phi = (sens.abs() ** 2).sum(dim=1)  # (N, H, W): 1 where the maps are non-zero
        h0 = ifftc(kspace0, _H)
        self.h0 = h0
        self.x = _reduce(ifftc(h0, _W), sens)
        shape = (*kspace0.shape[:-1], mp)
        self.rho = torch.zeros(shape, dtype=kspace0.dtype, device=kspace0.device)
        self.acc_rho = torch.zeros_like(self.rho)  # A = sum_t w_t rho_t
        self.acc_c = torch.zeros_like(self.x)  # B = sum_t c_t

    def _back_project(self, values: torch.Tensor) -> torch.Tensor:
        """``ifftc_W(P^T values)``: ``(N, C, H, Mp)`` -> ``(N, C, H, W)``."""
        return values @ self.inverse_p.unsqueeze(1)

    def image(self) -> torch.Tensor:
        return self.x

    def step(self, correction: torch.Tensor, dc_weight: torch.Tensor) -> None:
        self.x = self._x_update(self.x, self.rho, dc_weight, self.inverse_p, self.sens, self.phi, correction)
        self.acc_rho = self.acc_rho + self.rho * dc_weight
        self.rho = self._rho_update(self.rho, dc_weight, self.forward_p, self.sens, correction)
        self.acc_c = self.acc_c + correction

    def coil_images(self) -> torch.Tensor:
        """``ifftc_W(h0 - P^T A) - S B``: the final coil images ``(N, C, H, W)``."""
        return ifftc(self.h0, _W) - self._back_project(self.acc_rho) - self.sens * self.acc_c.unsqueeze(1)

    def rss_image(self) -> torch.Tensor:
        return rss(self.coil_images(), dim=1)

    def combined_image(self) -> torch.Tensor:
        return self.x


@dataclass(frozen=True)
class HybridForm:
    name: str = "hybrid"

    def bind(self, kspace0: torch.Tensor, mask: torch.Tensor, sens: torch.Tensor) -> HybridPlan:
        return HybridPlan(kspace0, mask, sens)


@dataclass(frozen=True)
class ResidualForm:
    """The residual form with swappable updates (the fused kernels provide their own)."""

    name: str = "residual"
    x_update: XUpdate = field(default=residual_x_update)
    rho_update: RhoUpdate = field(default=residual_rho_update)

    def bind(self, kspace0: torch.Tensor, mask: torch.Tensor, sens: torch.Tensor) -> ResidualPlan:
        return ResidualPlan(kspace0, mask, sens, self.x_update, self.rho_update)


@dataclass(frozen=True)
class AutoForm:
    """``column`` for a column mask (varies along W only), ``fallback`` (a 2-D form) otherwise."""

    column: HybridForm | ResidualForm = HybridForm()
    name: str = "auto"
    fallback: DCForm = KSPACE_2D

    def bind(self, kspace0: torch.Tensor, mask: torch.Tensor, sens: torch.Tensor) -> DCPlan:
        mask = broadcast_mask(mask, kspace0.shape)
        if mask.shape[-2] == 1 and mask.shape[1] == 1:
            return self.column.bind(kspace0, mask, sens)
        return self.fallback.bind(kspace0, mask, sens)


HYBRID = HybridForm()
RESIDUAL = ResidualForm()
AUTO_HYBRID = AutoForm(HYBRID, name="auto:hybrid")
