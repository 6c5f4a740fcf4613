"""Plain-torch baselines for the DC benchmark, and the byte models its GB/s figures use.

- :class:`BestTorch`: the best 2-D k-space torch we could write (checkerboard instead of rolls for even
  sizes, unnormalised FFTs with the scale folded into small tensors, ``lerp``/``addcmul``/``vecdot``);
  its step is a module-level function so ``torch.compile(dynamic=True)`` compiles it once.
- :class:`HybridTorch`: the exact hybrid-space form (DESIGN.md section 3): with a column mask the
  centred inverse FFT along H commutes with the mask, so the state is ``h = ifftc_H(k)`` and each
  cascade needs only 1-D FFTs along W (contiguous rows: one memory pass each).
- the centred DFT as complex GEMMs (shifts folded into the matrices).
"""

from __future__ import annotations

import math

import torch

Tensor = torch.Tensor


def _checker(n: int, device: torch.device) -> Tensor:
    return (1 - 2 * (torch.arange(n, device=device) % 2)).to(torch.complex64)  # (-1)^i


def best_step(
    kspace: Tensor,
    kspace0: Tensor,
    weight: Tensor,
    sens: Tensor,
    correction: Tensor,
    c_scaled: Tensor,
    minus_sc: Tensor,
    c: Tensor,
    sc_scaled: Tensor,
) -> tuple[Tensor, Tensor]:
    """Even H, W: ``k' = lerp(k, k0, w M) - s C fft2(S C x) / sqrt(HW)``; ``x' = s C sum conj(S) ifft2(C k') / sqrt(HW)``."""
    y = torch.fft.fft2(sens * (correction * c_scaled).unsqueeze(1))
    kspace_next = torch.addcmul(torch.lerp(kspace, kspace0, weight), y, minus_sc)
    coils = torch.fft.ifft2(kspace_next * c, norm="forward")  # unnormalised inverse
    return kspace_next, torch.linalg.vecdot(sens, coils, dim=1) * sc_scaled


class BestTorch:
    """Native complex64; for even H, W the centring shifts are a checkerboard ``C[i, j] = (-1)^(i+j)``
    with a global sign ``s = (-1)^(H/2 + W/2)`` folded into small (H, W) tensors. Odd sizes use shifts."""

    def __init__(self, h: int, w: int, device: torch.device) -> None:
        self.even = h % 2 == 0 and w % 2 == 0
        self.scale = 1.0 / math.sqrt(h * w)
        checker = _checker(h, device).unsqueeze(1) * _checker(w, device).unsqueeze(0)
        sign = -1.0 if (h // 2 + w // 2) % 2 else 1.0
        self.c = checker
        self.c_scaled = checker * self.scale
        self.sc = checker * sign
        self.minus_sc = -self.sc
        self.sc_scaled = self.sc * self.scale

    def sens_expand(self, image: Tensor, sens: Tensor) -> Tensor:
        if not self.even:
            return torch.fft.fftshift(
                torch.fft.fft2(torch.fft.ifftshift(sens * image.unsqueeze(1), dim=(-2, -1)), norm="ortho"),
                dim=(-2, -1),
            )
        return torch.fft.fft2(sens * (image * self.c_scaled).unsqueeze(1)) * self.sc

    def sens_reduce(self, kspace: Tensor, sens: Tensor) -> Tensor:
        if not self.even:
            coils = torch.fft.fftshift(
                torch.fft.ifft2(torch.fft.ifftshift(kspace, dim=(-2, -1)), norm="ortho"), dim=(-2, -1)
            )
            return torch.linalg.vecdot(sens, coils, dim=1)
        coils = torch.fft.ifft2(kspace * self.c, norm="forward")
        return torch.linalg.vecdot(sens, coils, dim=1) * self.sc_scaled

    def soft_dc(self, kspace: Tensor, kspace0: Tensor, mask: Tensor, dc_weight: Tensor) -> Tensor:
        weight = (mask * dc_weight).to(torch.complex64)  # small: (W,) or (H, W)
        return torch.lerp(kspace, kspace0, weight)  # k + w M (k0 - k), one pass

    def step_args(self, mask: Tensor, dc_weight: Tensor) -> tuple[Tensor, ...]:
        return (
            (mask * dc_weight).to(torch.complex64),
            self.c_scaled,
            self.minus_sc,
            self.c,
            self.sc_scaled,
        )

    def cascade_step(
        self,
        kspace: Tensor,
        kspace0: Tensor,
        mask: Tensor,
        dc_weight: Tensor,
        sens: Tensor,
        correction: Tensor,
    ) -> tuple[Tensor, Tensor]:
        if not self.even:
            kspace_next = self.soft_dc(kspace, kspace0, mask, dc_weight) - self.sens_expand(correction, sens)
            return kspace_next, self.sens_reduce(kspace_next, sens)
        weight, c_scaled, minus_sc, c, sc_scaled = self.step_args(mask, dc_weight)
        return best_step(kspace, kspace0, weight, sens, correction, c_scaled, minus_sc, c, sc_scaled)


def fftc_1d(x: Tensor, dim: int, inverse: bool = False) -> Tensor:
    """Centred orthonormal 1-D FFT along ``dim`` (shifts), any size."""
    fn = torch.fft.ifft if inverse else torch.fft.fft
    return torch.fft.fftshift(fn(torch.fft.ifftshift(x, dim=dim), dim=dim, norm="ortho"), dim=dim)


class HybridTorch:
    """Hybrid-space DC on ``h = ifftc_H(k)`` (column masks only): per cascade
    ``h' = lerp(h, h0, w M) - fftc_W(S x)`` and ``x' = sum_c conj(S_c) ifftc_W(h'_c)``.
    Even W folds the centring into a ``(-1)^j`` ramp and a sign, as in :class:`BestTorch`."""

    def __init__(self, w: int, device: torch.device) -> None:
        self.even = w % 2 == 0
        scale = 1.0 / math.sqrt(w)
        checker = _checker(w, device)
        sign = -1.0 if (w // 2) % 2 else 1.0
        self.c_scaled = checker * scale
        self.minus_sc = -checker * sign
        self.c = checker
        self.sc_scaled = checker * sign * scale

    @staticmethod
    def to_hybrid(kspace: Tensor) -> Tensor:
        return fftc_1d(kspace, dim=-2, inverse=True)

    @staticmethod
    def to_kspace(hybrid: Tensor) -> Tensor:
        return fftc_1d(hybrid, dim=-2)

    def cascade_step(
        self,
        hybrid: Tensor,
        hybrid0: Tensor,
        mask: Tensor,
        dc_weight: Tensor,
        sens: Tensor,
        correction: Tensor,
    ) -> tuple[Tensor, Tensor]:
        weight = (mask * dc_weight).to(hybrid.dtype)
        if not self.even:
            h_next = torch.lerp(hybrid, hybrid0, weight) - fftc_1d(sens * correction.unsqueeze(1), dim=-1)
            return h_next, torch.linalg.vecdot(sens, fftc_1d(h_next, dim=-1, inverse=True), dim=1)
        dt = hybrid.dtype
        y = torch.fft.fft(sens * (correction * self.c_scaled.to(dt)).unsqueeze(1), dim=-1)
        h_next = torch.addcmul(torch.lerp(hybrid, hybrid0, weight), y, self.minus_sc.to(dt))
        coils = torch.fft.ifft(h_next * self.c.to(dt), dim=-1, norm="forward")
        return h_next, torch.linalg.vecdot(sens, coils, dim=1) * self.sc_scaled.to(dt)


def centred_dft_matrix(n: int, device: torch.device, inverse: bool = False) -> Tensor:
    """``F_c`` with ``fft2c(x) = F_c(H) @ x @ F_c(W)^T``: fftshift . DFT . ifftshift, orthonormal, float64-built."""
    eye = torch.eye(n, dtype=torch.complex128)
    fn = torch.fft.ifft if inverse else torch.fft.fft
    mat = torch.fft.fftshift(fn(torch.fft.ifftshift(eye, dim=0), dim=0, norm="ortho"), dim=0)
    return mat.to(device=device, dtype=torch.complex64)


def dft_gemm_fft2c(x: Tensor, f_h: Tensor, f_w_t: Tensor) -> Tensor:
    return f_h @ (x @ f_w_t)


# ----------------------------------------------------------------------------------------------------
# Bytes
# ----------------------------------------------------------------------------------------------------

SECTOR_BYTES = 32
COMPLEX64_BYTES = 8


def sector_fraction(mask: Tensor) -> float:
    """Fraction of 32-byte sectors a masked complex64 read touches: a column mask along the contiguous
    W axis groups 4 columns per sector, and a sector is read when any of its columns is sampled."""
    per = SECTOR_BYTES // COMPLEX64_BYTES
    cols = mask.reshape(-1, mask.shape[-1]).any(dim=0).cpu()
    pad = (-cols.numel()) % per
    cols = torch.cat([cols, torch.zeros(pad, dtype=torch.bool)])
    return float(cols.reshape(-1, per).any(dim=1).float().mean())


def io_bytes(op: str, n: int, c: int, h: int, w: int) -> int:
    """Each input read once and each output written once (complex64 = 8 bytes; masks ignored)."""
    e, img = n * c * h * w * 8, n * h * w * 8
    return {
        "soft_dc": 3 * e,  # k, k0 in; k' out
        "sens_expand": 2 * e + img,  # S, x in; k out
        "sens_reduce": 2 * e + img,  # k, S in; x out
        "cascade_step": 4 * e + 2 * img,  # k, k0, S, x in; k', x' out
        # residual form: S read twice (two kernels), x, c, Phi in, x' out; rho (Mp/W of e) in and out
        # twice are not counted here (the mask's fraction is in the row's `sampled`).
        "cascade_step_residual": 2 * e + 4 * img,
        "fft2": 2 * e,
        "copy": 2 * e,
    }[op]


def triton_model_bytes(op: str, n: int, c: int, h: int, w: int, sectors: float) -> int:
    """Traffic of the three-kernel Triton pipeline's passes. A 2-D cuFFT of a 1-2 MB coil image makes
    two memory passes (an SM holds 228 KB): 4E. k0 is read by 32-byte sectors where sampled
    (``sectors`` from :func:`sector_fraction`). About 16E per cascade step."""
    e, img = n * c * h * w * 8, n * h * w * 8
    expand = 2 * e + img  # S, x -> X
    dc = 2 * e + int(sectors * e)  # k (+ k0 sectors) -> k'
    reduce = 2 * e + img  # Z, S -> x
    fft = 4 * e
    return {
        "soft_dc": dc,
        "sens_expand": expand + fft,
        "sens_reduce": fft + reduce,
        "cascade_step": expand + fft + (dc + e) + fft + reduce,  # dc also reads Y
    }[op]


def hybrid_model_bytes(n: int, c: int, h: int, w: int, sectors: float) -> int:
    """The hybrid cascade step in plain torch: rows of W are contiguous, so each 1-D FFT is one pass
    (2E); expand (2E + img), FFT (2E), lerp (2E + k0 sectors), addcmul (3E), ramp multiply (2E),
    inverse FFT (2E), vecdot (2E + img)."""
    e, img = n * c * h * w * 8, n * h * w * 8
    return (2 * e + img) + 2 * e + (2 * e + int(sectors * e)) + 3 * e + 2 * e + 2 * e + (2 * e + img)
