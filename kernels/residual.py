"""Fused Triton kernels for the residual data-consistency form (:mod:`fastrecon.physics.hybrid`).

With a column mask, each cascade's transforms are partial DFTs between the W columns and the ``Mp``
sampled ones: small dense matrices multiplied with ``tl.dot``. Two kernels per cascade:

- ``residual_x_update``: ``x' = x - R ifftc_W(P^T (w rho)) - Phi c``: the back-projection of the
  weighted residual through the partial inverse DFT, conj(S) and the coil sum, fused with the x update
  (reads rho (``Mp/W`` of a k-space tensor) and S once, writes one image).
- ``residual_rho_update``: ``rho' = (1 - w) rho - P fftc_W(S c)``: ``S c``, the partial forward DFT
  and the rho update (reads S once, rho once, writes rho).

Complex products are four real ``tl.dot`` calls on the real and imaginary planes. Precision: fp32
inputs with ``input_precision="ieee"`` on the GPU (TF32's ~3e-4 relative error per product compounds
over 12 cascades and fails the 100 dB gate; DESIGN.md section 3); the interpreter computes in fp32.
Compiled for sm_90 with Triton 3.6 (no GPU; ptxas -v): ``ieee`` dots lower to FP32 FMA, not tensor
cores (``tf32``/``tf32x3`` would use mma); the x update uses 126 registers at 8 warps (247 at 4), the
rho update 127 at 4 warps, no spills at the shipped tiles (BLOCK_W 64 or BLOCK_K 32 spill).
Each kernel's pure-torch twin (``*_ref``, same signature) is the physics function it fuses.

Inference only: the custom ops in :mod:`fastrecon.kernels.ops` refuse gradients with a clear error
(training uses the eager form).
"""

from __future__ import annotations

import torch

from fastrecon.errors import InputError, InputTypeError
from fastrecon.physics.hybrid import residual_rho_update, residual_x_update

from .dc import LAUNCHES, MAX_GRID_SLICES, _jit, _on_device, _real, _require_runtime, tl, triton

__all__ = [
    "residual_rho_update_ref",
    "residual_rho_update_triton",
    "residual_x_update_ref",
    "residual_x_update_triton",
    "validate_residual_rho_update",
    "validate_residual_x_update",
]

LAUNCHES.setdefault("residual_x", 0)
LAUNCHES.setdefault("residual_rho", 0)

BLOCK_H = 16  # rows of H per program (tl.dot needs >= 16 on GPUs)
BLOCK_W = 32  # image columns per program (x update) / W chunk of the forward DFT (rho update)
BLOCK_K = 16  # sampled columns per dot step


def residual_x_update_ref(
    x: torch.Tensor,
    rho: torch.Tensor,
    dc_weight: torch.Tensor,
    inverse_p: torch.Tensor,
    sens: torch.Tensor,
    phi: torch.Tensor,
    correction: torch.Tensor,
) -> torch.Tensor:
    """``x - R ifftc_W(P^T (w rho)) - Phi c`` (:func:`fastrecon.physics.hybrid.residual_x_update`)."""
    return residual_x_update(x, rho, dc_weight, inverse_p, sens, phi, correction)


def residual_rho_update_ref(
    rho: torch.Tensor,
    dc_weight: torch.Tensor,
    forward_p: torch.Tensor,
    sens: torch.Tensor,
    correction: torch.Tensor,
) -> torch.Tensor:
    """``(1 - w) rho - P fftc_W(S c)`` (:func:`fastrecon.physics.hybrid.residual_rho_update`)."""
    return residual_rho_update(rho, dc_weight, forward_p, sens, correction)


# ----------------------------------------------------------------------------------------------------
# Validation (shapes, dtypes, devices only: shared with the custom ops' fake implementations)
# ----------------------------------------------------------------------------------------------------


def _check(name: str, t: object, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> None:
    if not isinstance(t, torch.Tensor):
        raise InputTypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}.")
    if t.dtype != dtype:
        raise InputTypeError(f"{name} has dtype {t.dtype}; expected {dtype}.")
    if tuple(t.shape) != shape:
        raise InputError(f"{name} has shape {tuple(t.shape)}; expected {shape}.")
    if t.device != device:
        raise InputError(f"{name} is on {t.device}; every input must be on {device}.")


def _check_weight(dc_weight: object, device: torch.device) -> None:
    if not isinstance(dc_weight, torch.Tensor) or dc_weight.numel() != 1 or dc_weight.is_complex():
        raise InputTypeError(f"dc_weight must be a real 1-element tensor, got {dc_weight!r}.")
    if dc_weight.device != device:
        raise InputError(f"dc_weight is on {dc_weight.device}; expected {device}.")


def _check_matrix(name: str, t: object, n: int, shape: tuple[int, int], device: torch.device) -> None:
    if not isinstance(t, torch.Tensor) or t.ndim != 3 or t.shape[0] not in (1, n):
        raise InputError(
            f"{name} must be (1 or N={n}, {shape[0]}, {shape[1]}), got {getattr(t, 'shape', t)}."
        )
    _check(name, t, (int(t.shape[0]), *shape), torch.complex64, device)


def _check_common(
    rho: torch.Tensor, dc_weight: torch.Tensor, sens: torch.Tensor, correction: torch.Tensor
) -> tuple[int, int, int, int, int, torch.device]:
    """Check what both updates take; returns ``(N, C, H, W, Mp, device)``."""
    if not isinstance(sens, torch.Tensor) or sens.ndim != 4:
        raise InputError(f"sens must be (N, C, H, W) complex64, got {getattr(sens, 'shape', sens)}.")
    n, c, h, w = sens.shape
    device = sens.device
    _check("sens", sens, (n, c, h, w), torch.complex64, device)
    _check("correction", correction, (n, h, w), torch.complex64, device)
    if not isinstance(rho, torch.Tensor) or rho.ndim != 4:
        raise InputError(f"rho must be (N, C, H, Mp) complex64, got {getattr(rho, 'shape', rho)}.")
    mp = int(rho.shape[-1])
    _check("rho", rho, (n, c, h, mp), torch.complex64, device)
    _check_weight(dc_weight, device)
    return n, c, h, w, mp, device


def validate_residual_x_update(
    x: torch.Tensor,
    rho: torch.Tensor,
    dc_weight: torch.Tensor,
    inverse_p: torch.Tensor,
    sens: torch.Tensor,
    phi: torch.Tensor,
    correction: torch.Tensor,
) -> None:
    n, _, h, w, mp, device = _check_common(rho, dc_weight, sens, correction)
    _check("x", x, (n, h, w), torch.complex64, device)
    _check("phi", phi, (n, h, w), torch.float32, device)
    _check_matrix("inverse_p", inverse_p, n, (mp, w), device)


def validate_residual_rho_update(
    rho: torch.Tensor,
    dc_weight: torch.Tensor,
    forward_p: torch.Tensor,
    sens: torch.Tensor,
    correction: torch.Tensor,
) -> None:
    n, _, _, w, mp, device = _check_common(rho, dc_weight, sens, correction)
    _check_matrix("forward_p", forward_p, n, (w, mp), device)


# ----------------------------------------------------------------------------------------------------
# Kernels
# ----------------------------------------------------------------------------------------------------


@_jit
def _load_planes(ptr, offs, mask):
    """Real and imaginary planes of complex64 values at complex-element offsets ``offs``."""
    return tl.load(ptr + offs * 2, mask=mask, other=0.0), tl.load(ptr + offs * 2 + 1, mask=mask, other=0.0)


@_jit
def _x_update_kernel(
    out_ptr,  # x' (N, H, W) complex64, contiguous, real view
    x_ptr,  # x (N, H, W) real view; strides in complex elements follow
    x_n,
    x_h,
    x_w,
    rho_ptr,  # rho (N, C, H, Mp) real view
    rho_n,
    rho_c,
    rho_h,
    rho_k,
    inv_ptr,  # inverse_p (S, Mp, W) real view; inv_n = 0 when one matrix serves every slice
    inv_n,
    inv_k,
    inv_w,
    sens_ptr,  # S (N, C, H, W) real view
    s_n,
    s_c,
    s_h,
    s_w,
    phi_ptr,  # Phi (N, H, W) fp32
    phi_n,
    phi_h,
    phi_w,
    c_ptr,  # correction (N, H, W) real view
    c_n,
    c_h,
    c_w,
    w_ptr,  # dc_weight: one fp32 on the device
    C,
    H,
    W,
    MP,
    tiles_w,
    BLOCK_H: tl.constexpr,
    BLOCK_W: tl.constexpr,
    BLOCK_K: tl.constexpr,
    PRECISION: tl.constexpr,
):
    """One (BLOCK_H, BLOCK_W) tile of one slice: ``x - sum_c conj(S_c) ((w rho_c) @ inv) - Phi c``."""
    tile = tl.program_id(0)
    n = tl.program_id(1).to(tl.int64)  # int64: every slice offset below is an int64 product
    i = (tile // tiles_w) * BLOCK_H + tl.arange(0, BLOCK_H)
    j = (tile % tiles_w) * BLOCK_W + tl.arange(0, BLOCK_W)
    in_h = i < H
    in_w = j < W
    inside = in_h[:, None] & in_w[None, :]
    weight = tl.load(w_ptr)
    acc_re = tl.zeros((BLOCK_H, BLOCK_W), dtype=tl.float32)
    acc_im = tl.zeros((BLOCK_H, BLOCK_W), dtype=tl.float32)
    for c in range(0, C):
        t_re = tl.zeros((BLOCK_H, BLOCK_W), dtype=tl.float32)
        t_im = tl.zeros((BLOCK_H, BLOCK_W), dtype=tl.float32)
        for k0 in range(0, MP, BLOCK_K):
            k = k0 + tl.arange(0, BLOCK_K)
            in_k = k < MP
            r_offs = n * rho_n + c * rho_c + i[:, None] * rho_h + k[None, :] * rho_k
            r_re, r_im = _load_planes(rho_ptr, r_offs, in_h[:, None] & in_k[None, :])
            # Same order as the reference: weight the residual first, then transform.
            r_re = r_re * weight
            r_im = r_im * weight
            v_offs = n * inv_n + k[:, None] * inv_k + j[None, :] * inv_w
            v_re, v_im = _load_planes(inv_ptr, v_offs, in_k[:, None] & in_w[None, :])
            t_re += tl.dot(r_re, v_re, input_precision=PRECISION) - tl.dot(
                r_im, v_im, input_precision=PRECISION
            )
            t_im += tl.dot(r_re, v_im, input_precision=PRECISION) + tl.dot(
                r_im, v_re, input_precision=PRECISION
            )
        s_offs = n * s_n + c * s_c + i[:, None] * s_h + j[None, :] * s_w
        s_re, s_im = _load_planes(sens_ptr, s_offs, inside)
        acc_re += s_re * t_re + s_im * t_im  # conj(S) * t
        acc_im += s_re * t_im - s_im * t_re
    x_re, x_im = _load_planes(x_ptr, n * x_n + i[:, None] * x_h + j[None, :] * x_w, inside)
    c_re, c_im = _load_planes(c_ptr, n * c_n + i[:, None] * c_h + j[None, :] * c_w, inside)
    phi = tl.load(phi_ptr + n * phi_n + i[:, None] * phi_h + j[None, :] * phi_w, mask=inside, other=0.0)
    o_offs = n * H * W + i[:, None] * W + j[None, :]
    tl.store(out_ptr + o_offs * 2, x_re - acc_re - phi * c_re, mask=inside)
    tl.store(out_ptr + o_offs * 2 + 1, x_im - acc_im - phi * c_im, mask=inside)


@_jit
def _rho_update_kernel(
    out_ptr,  # rho' (N, C, H, Mp) complex64, contiguous, real view
    rho_ptr,  # rho (N, C, H, Mp) real view
    rho_n,
    rho_c,
    rho_h,
    rho_k,
    fwd_ptr,  # forward_p (S, W, Mp) real view; fwd_n = 0 when shared
    fwd_n,
    fwd_w,
    fwd_k,
    sens_ptr,  # S (N, C, H, W) real view
    s_n,
    s_c,
    s_h,
    s_w,
    c_ptr,  # correction (N, H, W) real view
    c_n,
    c_h,
    c_w,
    w_ptr,
    C,
    H,
    W,
    MP,
    tiles_k,
    BLOCK_H: tl.constexpr,
    BLOCK_W: tl.constexpr,
    BLOCK_K: tl.constexpr,
    PRECISION: tl.constexpr,
):
    """One (BLOCK_H, BLOCK_K) tile of one slice and coil: ``rho - w rho - (S c) @ fwd``."""
    tile = tl.program_id(0)
    nc = tl.program_id(1).to(tl.int64)
    n = nc // C
    c = nc % C
    i = (tile // tiles_k) * BLOCK_H + tl.arange(0, BLOCK_H)
    k = (tile % tiles_k) * BLOCK_K + tl.arange(0, BLOCK_K)
    in_h = i < H
    in_k = k < MP
    acc_re = tl.zeros((BLOCK_H, BLOCK_K), dtype=tl.float32)
    acc_im = tl.zeros((BLOCK_H, BLOCK_K), dtype=tl.float32)
    for j0 in range(0, W, BLOCK_W):
        j = j0 + tl.arange(0, BLOCK_W)
        in_w = j < W
        tile_mask = in_h[:, None] & in_w[None, :]
        s_re, s_im = _load_planes(
            sens_ptr, n * s_n + c * s_c + i[:, None] * s_h + j[None, :] * s_w, tile_mask
        )
        c_re, c_im = _load_planes(c_ptr, n * c_n + i[:, None] * c_h + j[None, :] * c_w, tile_mask)
        u_re = s_re * c_re - s_im * c_im  # S c
        u_im = s_re * c_im + s_im * c_re
        f_offs = n * fwd_n + j[:, None] * fwd_w + k[None, :] * fwd_k
        f_re, f_im = _load_planes(fwd_ptr, f_offs, in_w[:, None] & in_k[None, :])
        acc_re += tl.dot(u_re, f_re, input_precision=PRECISION) - tl.dot(
            u_im, f_im, input_precision=PRECISION
        )
        acc_im += tl.dot(u_re, f_im, input_precision=PRECISION) + tl.dot(
            u_im, f_re, input_precision=PRECISION
        )
    inside = in_h[:, None] & in_k[None, :]
    r_re, r_im = _load_planes(
        rho_ptr, n * rho_n + c * rho_c + i[:, None] * rho_h + k[None, :] * rho_k, inside
    )
    weight = tl.load(w_ptr)
    o_offs = nc * H * MP + i[:, None] * MP + k[None, :]
    # Same order as the reference: rho - rho w - projected.
    tl.store(out_ptr + o_offs * 2, r_re - r_re * weight - acc_re, mask=inside)
    tl.store(out_ptr + o_offs * 2 + 1, r_im - r_im * weight - acc_im, mask=inside)


# ----------------------------------------------------------------------------------------------------
# Launchers
# ----------------------------------------------------------------------------------------------------


def _precision(device: torch.device) -> str:
    # Full fp32 products on GPUs (TF32 fails the gate); the interpreter ignores it (numpy fp32).
    return "ieee"


def _weight(dc_weight: torch.Tensor) -> torch.Tensor:
    return dc_weight.reshape(1).to(torch.float32)


def _matrix_strides(t: torch.Tensor) -> tuple[int, ...]:
    _, strides = _real(t)
    return (0 if t.shape[0] == 1 else strides[0], *strides[1:])


def residual_x_update_triton(
    x: torch.Tensor,
    rho: torch.Tensor,
    dc_weight: torch.Tensor,
    inverse_p: torch.Tensor,
    sens: torch.Tensor,
    phi: torch.Tensor,
    correction: torch.Tensor,
) -> torch.Tensor:
    """Fused :func:`residual_x_update_ref`: one launch, grid (H tiles x W tiles, N)."""
    validate_residual_x_update(x, rho, dc_weight, inverse_p, sens, phi, correction)
    n, c, h, w = sens.shape
    out = torch.empty((n, h, w), dtype=torch.complex64, device=sens.device)
    if out.numel() == 0:
        return out
    _require_runtime(sens.device)
    mp = int(rho.shape[-1])
    tiles_w = triton.cdiv(w, BLOCK_W)
    grid_tiles = triton.cdiv(h, BLOCK_H) * tiles_w
    for start in range(0, n, MAX_GRID_SLICES):  # CUDA caps grid axis 1 at 65,535
        block = slice(start, min(start + MAX_GRID_SLICES, n))
        inv = inverse_p[block] if inverse_p.shape[0] > 1 else inverse_p
        x_r, x_st = _real(x[block])
        rho_r, rho_st = _real(rho[block])
        inv_r, _ = _real(inv)
        s_r, s_st = _real(sens[block])
        c_r, c_st = _real(correction[block])
        phi_b = phi[block]
        with _on_device(sens.device):
            _x_update_kernel[(grid_tiles, block.stop - block.start)](
                torch.view_as_real(out[block]), x_r, *x_st, rho_r, *rho_st, inv_r, *_matrix_strides(inv),
                s_r, *s_st, phi_b, *phi_b.stride(), c_r, *c_st, _weight(dc_weight), c, h, w, mp, tiles_w,
                BLOCK_H=BLOCK_H, BLOCK_W=BLOCK_W, BLOCK_K=BLOCK_K, PRECISION=_precision(sens.device),
                num_warps=8,  # 126 registers (4 warps: 247, two blocks per SM)
            )  # fmt: skip
        LAUNCHES["residual_x"] += 1
    return out


def residual_rho_update_triton(
    rho: torch.Tensor,
    dc_weight: torch.Tensor,
    forward_p: torch.Tensor,
    sens: torch.Tensor,
    correction: torch.Tensor,
) -> torch.Tensor:
    """Fused :func:`residual_rho_update_ref`: one launch, grid (H tiles x Mp tiles, N * C)."""
    validate_residual_rho_update(rho, dc_weight, forward_p, sens, correction)
    n, c, h, w = sens.shape
    out = torch.empty(rho.shape, dtype=torch.complex64, device=sens.device)
    if out.numel() == 0:
        return out
    _require_runtime(sens.device)
    mp = int(rho.shape[-1])
    tiles_k = triton.cdiv(mp, BLOCK_K)
    grid_tiles = triton.cdiv(h, BLOCK_H) * tiles_k
    per_launch = max(1, MAX_GRID_SLICES // c)  # grid axis 1 enumerates slices x coils
    for start in range(0, n, per_launch):
        block = slice(start, min(start + per_launch, n))
        fwd = forward_p[block] if forward_p.shape[0] > 1 else forward_p
        rho_r, rho_st = _real(rho[block])
        f_r, _ = _real(fwd)
        s_r, s_st = _real(sens[block])
        c_r, c_st = _real(correction[block])
        with _on_device(sens.device):
            _rho_update_kernel[(grid_tiles, (block.stop - block.start) * c)](
                torch.view_as_real(out[block]), rho_r, *rho_st, f_r, *_matrix_strides(fwd), s_r, *s_st,
                c_r, *c_st, _weight(dc_weight), c, h, w, mp, tiles_k,
                BLOCK_H=BLOCK_H, BLOCK_W=BLOCK_W, BLOCK_K=BLOCK_K, PRECISION=_precision(sens.device),
                num_warps=4,  # 127 registers, no spills
            )  # fmt: skip
        LAUNCHES["residual_rho"] += 1
    return out
