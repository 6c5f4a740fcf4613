"""Fused data-consistency kernels: coil expand + FFT + soft DC + inverse FFT + coil combine.

One cascade of the unrolled loop (``fastrecon.models.unrolled``) needs, per slice::

    k'  = k - w M (k - k0) - fft2c(S * correction)        (soft DC and the regulariser's term)
    x'  = sum_c conj(S_c) ifft2c(k'_c)                      (sens_reduce)

Eagerly that is a chain of ~15 memory-bound launches moving >= 30 E bytes (E = N*C*H*W*8, one
complex64 k-space). Here the transforms stay with cuFFT (``torch.fft``, unnormalised so torch adds
no scaling pass) and everything around them is one Triton kernel per side:

    _expand_kernel   X  = r . ifftshift(S * correction) / sqrt(HW)       reads S (E), writes X (E)
    torch.fft.fft2   Y  = fft2(X) = fft2c(S * correction)               reads E, writes E
    _dc_kernel       k' = k - w M (k - k0) - Y                          reads k, Y, k0 where sampled; writes k'
    torch.fft.ifft2  Z  = unnormalised ifft2(k')                        reads E, writes E
    _reduce_kernel   x' = sum_c conj(S_c) . q . fftshift-gather(Z_c) / sqrt(HW)   reads Z, S (2E), writes E/C

The centring shifts cost no pass: ``ifftshift`` before the forward transform and ``fftshift`` after
the inverse are index arithmetic in the kernels (a gather, exact for odd and even sizes), and the
other two shifts become phase ramps (``fftshift(fft2(u)) = fft2(r . u)`` with
``r[n] = exp(+2 pi i (N//2) n / N)``; ``ifft2(ifftshift(K)) = q . ifft2(K)`` with
``q[n] = exp(-2 pi i (N//2) n / N)``). For even sizes the ramps are the checkerboard ``(-1)^n`` of
DESIGN.md section 3, exactly; for odd sizes they are complex unit phases rounded once to fp32.

Every public function here has a pure-torch ``*_ref`` twin with the same signature (the fastMRI-order
eager reference from :mod:`fastrecon.physics`), used by the tests, the benchmark and the CPU fallback.
The ``*_triton`` functions always run the kernels (on CUDA, or on CPU under ``TRITON_INTERPRET=1``);
the dispatching custom ops live in :mod:`fastrecon.kernels.ops`.

Complex data enter the kernels as real views (``torch.view_as_real``): Triton has no complex dtype.
Strides are passed in complex elements, so a contiguous last dimension is specialised to 1 by Triton
and its loads vectorise.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import math
from dataclasses import dataclass
from typing import Any

import torch

from fastrecon._features import has_cuda, triton_interpret
from fastrecon.errors import BackendUnavailableError, InputError, InputTypeError, MissingDependencyError
from fastrecon.physics.coils import sens_expand as _physics_sens_expand
from fastrecon.physics.coils import sens_reduce as _physics_sens_reduce
from fastrecon.physics.dc import broadcast_mask
from fastrecon.physics.dc import cascade_step as _physics_cascade_step
from fastrecon.physics.dc import soft_dc as _physics_soft_dc

try:  # Triton is the optional extra "triton"; the ``*_ref`` twins and the checks work without it.
    import triton
    import triton.language as tl

    _jit: Any = triton.jit

    def _jit_no_specialize(*names: str) -> Any:
        # Arguments that change with the batch size (the coil grouping does) must not be specialised
        # on (Triton specialises integers equal to 1 or divisible by 16): no recompilation per batch.
        return triton.jit(do_not_specialize=list(names))
except ImportError:  # pragma: no cover - exercised only where Triton is absent
    triton = None
    tl = None

    def _jit(fn: Any) -> Any:
        return fn

    def _jit_no_specialize(*names: str) -> Any:
        return _jit


__all__ = [
    "LAUNCHES",
    "LaunchConfig",
    "cascade_step_ref",
    "cascade_step_triton",
    "default_config",
    "sens_expand_ref",
    "sens_expand_triton",
    "sens_reduce_ref",
    "sens_reduce_triton",
    "soft_dc_ref",
    "soft_dc_triton",
    "validate_cascade_step",
    "validate_sens_expand",
    "validate_sens_reduce",
    "validate_soft_dc",
]

# Kernel launches by kernel name. Tests read it to prove the Triton path ran (no silent fallback).
LAUNCHES: collections.Counter[str] = collections.Counter()

# Whether the kernels below were decorated for the interpreter: Triton decides at decoration time,
# i.e. when this module is first imported, so TRITON_INTERPRET=1 must be set before that.
_INTERPRETED = triton is not None and triton_interpret()


# ----------------------------------------------------------------------------------------------------
# References (pure torch, any complex dtype: the tests also run them in complex128 as the oracle)
# ----------------------------------------------------------------------------------------------------


def sens_expand_ref(image: torch.Tensor, sens: torch.Tensor) -> torch.Tensor:
    """``fft2c(S_c x)``: image ``(N, H, W)``, sens ``(N, C, H, W)`` -> k-space ``(N, C, H, W)``."""
    return _physics_sens_expand(image, sens)


def sens_reduce_ref(kspace: torch.Tensor, sens: torch.Tensor) -> torch.Tensor:
    """``sum_c conj(S_c) ifft2c(k_c)``: kspace, sens ``(N, C, H, W)`` -> image ``(N, H, W)``."""
    return _physics_sens_reduce(kspace, sens)


def soft_dc_ref(
    kspace: torch.Tensor, kspace0: torch.Tensor, mask: torch.Tensor, dc_weight: torch.Tensor | float
) -> torch.Tensor:
    """``k - w M (k - k0)``; mask ``(W,)``, ``(H, W)`` or 4-D broadcastable to k-space ``(N, C, H, W)``."""
    return _physics_soft_dc(kspace, kspace0, mask, dc_weight)


def cascade_step_ref(
    kspace: torch.Tensor,
    kspace0: torch.Tensor,
    mask: torch.Tensor,
    dc_weight: torch.Tensor | float,
    sens: torch.Tensor,
    correction: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``k' = k - w M (k - k0) - fft2c(S correction)``; returns ``(k', sens_reduce(k', S))``.

    The models' own eager step (:func:`fastrecon.physics.dc.cascade_step`), so the kernels are
    measured against exactly what the reference models run.
    """
    return _physics_cascade_step(kspace, kspace0, mask, dc_weight, sens, correction)


# ----------------------------------------------------------------------------------------------------
# Input validation (shared with the custom ops' fake implementations: uses shapes/dtypes/devices only)
# ----------------------------------------------------------------------------------------------------


def _check_tensor(name: str, value: object) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise InputTypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}.")
    return value


def _check_complex(name: str, value: object, ndim: int, layout: str) -> torch.Tensor:
    tensor = _check_tensor(name, value)
    if tensor.dtype != torch.complex64:
        raise InputTypeError(
            f"{name} must be complex64 {layout}, got dtype {tensor.dtype}. "
            "Convert with .to(torch.complex64) (real/imaginary pairs: torch.view_as_complex)."
        )
    if tensor.ndim != ndim:
        raise InputError(f"{name} must be {ndim}-D {layout}, got shape {tuple(tensor.shape)}.")
    return tensor


def _check_devices(**tensors: torch.Tensor) -> None:
    devices = {name: t.device for name, t in tensors.items()}
    if len(set(devices.values())) > 1:
        listing = ", ".join(f"{name} on {device}" for name, device in devices.items())
        raise InputError(f"all inputs must be on one device, got {listing}. Move them with .to(device).")


def _check_mask(mask: object, shape: tuple[int, ...]) -> torch.Tensor:
    """Shape-only mask check (works on fake tensors); same rules as :func:`broadcast_mask`."""
    mask = _check_tensor("mask", mask)
    if mask.is_complex():
        raise InputTypeError(
            f"mask must be real (bool, integer or float; nonzero = sampled), got {mask.dtype}."
        )
    n, c, h, w = shape
    if mask.ndim == 1 and mask.shape[0] == w:
        return mask
    if mask.ndim == 2 and tuple(mask.shape) == (h, w):
        return mask
    if mask.ndim == 4 and all(m in (1, s) for m, s in zip(mask.shape, shape, strict=True)):
        return mask
    raise InputError(
        f"mask of shape {tuple(mask.shape)} does not fit k-space {tuple(shape)}; expected (W,) = ({w},), "
        f"(H, W) = ({h}, {w}) or 4-D broadcastable to (N, C, H, W)."
    )


def _check_weight(dc_weight: object) -> torch.Tensor:
    weight = _check_tensor("dc_weight", dc_weight)
    if weight.dtype != torch.float32 or weight.numel() != 1:
        raise InputTypeError(
            f"dc_weight must be a real float32 tensor with one element (or a Python float), "
            f"got dtype {weight.dtype} and shape {tuple(weight.shape)}."
        )
    return weight


def validate_sens_expand(image: torch.Tensor, sens: torch.Tensor) -> None:
    """Raise :class:`InputTypeError` / :class:`InputError` unless image ``(N, H, W)`` fits sens ``(N, C, H, W)``."""
    _check_complex("image", image, 3, "(N, H, W)")
    _check_complex("sens", sens, 4, "(N, C, H, W)")
    if image.shape[0] != sens.shape[0] or image.shape[1:] != sens.shape[2:]:
        raise InputError(
            f"image {tuple(image.shape)} does not match sens {tuple(sens.shape)}: expected image (N, H, W) = "
            f"({sens.shape[0]}, {sens.shape[2]}, {sens.shape[3]})."
        )
    _check_devices(image=image, sens=sens)


def validate_sens_reduce(kspace: torch.Tensor, sens: torch.Tensor) -> None:
    """Raise unless kspace and sens are complex64 ``(N, C, H, W)`` of one shape on one device."""
    _check_complex("kspace", kspace, 4, "(N, C, H, W)")
    _check_complex("sens", sens, 4, "(N, C, H, W)")
    if kspace.shape != sens.shape:
        raise InputError(
            f"kspace {tuple(kspace.shape)} and sens {tuple(sens.shape)} must have the same (N, C, H, W)."
        )
    _check_devices(kspace=kspace, sens=sens)


def validate_soft_dc(
    kspace: torch.Tensor, kspace0: torch.Tensor, mask: torch.Tensor, dc_weight: torch.Tensor
) -> None:
    """Raise unless k-space pair, mask and a float32 one-element ``dc_weight`` fit together."""
    _check_complex("kspace", kspace, 4, "(N, C, H, W)")
    _check_complex("kspace0", kspace0, 4, "(N, C, H, W)")
    if kspace0.shape != kspace.shape:
        raise InputError(
            f"kspace0 {tuple(kspace0.shape)} must have the shape of kspace {tuple(kspace.shape)}."
        )
    _check_mask(mask, tuple(kspace.shape))
    _check_weight(dc_weight)
    _check_devices(kspace=kspace, kspace0=kspace0, mask=mask, dc_weight=dc_weight)


def validate_cascade_step(
    kspace: torch.Tensor,
    kspace0: torch.Tensor,
    mask: torch.Tensor,
    dc_weight: torch.Tensor,
    sens: torch.Tensor,
    correction: torch.Tensor,
) -> None:
    """Raise unless the cascade-step inputs fit: the union of the soft-DC, expand and reduce checks."""
    validate_soft_dc(kspace, kspace0, mask, dc_weight)
    validate_sens_reduce(kspace, sens)
    _check_complex("correction", correction, 3, "(N, H, W)")
    if correction.shape[0] != sens.shape[0] or correction.shape[1:] != sens.shape[2:]:
        raise InputError(
            f"correction {tuple(correction.shape)} does not match sens {tuple(sens.shape)}: expected (N, H, W) = "
            f"({sens.shape[0]}, {sens.shape[2]}, {sens.shape[3]})."
        )
    _check_devices(kspace=kspace, correction=correction)


# ----------------------------------------------------------------------------------------------------
# Kernels
# ----------------------------------------------------------------------------------------------------


@_jit
def _load_c(ptr, offs, mask):
    """Load complex64 values at complex-element offsets ``offs`` (2-D) of a real view -> ``(re, im)``."""
    # The trailing [0, 1] axis makes each complex a contiguous 8-byte pair (vectorised loads).
    pair = offs[:, :, None] * 2 + tl.arange(0, 2)[None, None, :]
    value = tl.load(ptr + pair, mask=mask[:, :, None], other=0.0)
    return tl.split(value)


@_jit
def _store_c(ptr, offs, re, im, mask):
    """Store ``re + i im`` at complex-element offsets ``offs`` of a real view."""
    pair = offs[:, :, None] * 2 + tl.arange(0, 2)[None, None, :]
    tl.store(ptr + pair, tl.join(re, im), mask=mask[:, :, None])


@_jit
def _load_ramp(ptr, idx, mask):
    """Load a per-axis phase ramp ``(L, 2)`` fp32 at indices ``idx`` (1-D) -> ``(re, im)``."""
    pair = idx[:, None] * 2 + tl.arange(0, 2)[None, :]
    value = tl.load(ptr + pair, mask=mask[:, None], other=0.0)
    return tl.split(value)


@_jit_no_specialize("coils_per_prog")
def _expand_kernel(
    out_ptr,  # X (N, C, H, W) complex64, contiguous, real view: the forward FFT's input
    sens_ptr,  # S (N, C, H, W) complex64 real view, any strides
    s_n,  # S strides in complex elements
    s_c,
    s_h,
    s_w,
    img_ptr,  # x (N, H, W) complex64 real view, any strides
    x_n,  # x strides in complex elements
    x_h,
    x_w,
    ramp_h_ptr,  # (H, 2) fp32: exp(+2 pi i (H//2) i / H) / sqrt(H W)  (fftshift of the output + ortho scale)
    ramp_w_ptr,  # (W, 2) fp32: exp(+2 pi i (W//2) j / W)
    C,
    H,
    W,
    coils_per_prog,  # coils handled by one program (grid axis 2 splits C into groups)
    tiles_w,  # number of tiles along W (grid axis 0 enumerates H tiles x W tiles)
    BLOCK_H: tl.constexpr,
    BLOCK_W: tl.constexpr,
):
    """``X[n, c, i, j] = r[i, j] * S[n, c, i', j'] * x[n, i', j']`` with ``(i', j')`` the ifftshift source."""
    tile = tl.program_id(0)
    n = tl.program_id(1).to(tl.int64)  # int64: N*C*H*W*2 can exceed 2^31 for large batches
    c_start = tl.program_id(2) * coils_per_prog
    c_stop = tl.minimum(c_start + coils_per_prog, C)
    i = (tile // tiles_w) * BLOCK_H + tl.arange(0, BLOCK_H)
    j = (tile % tiles_w) * BLOCK_W + tl.arange(0, BLOCK_W)
    in_h = i < H
    in_w = j < W
    inside = in_h[:, None] & in_w[None, :]
    # ifftshift as a gather: output (i, j) takes input ((i + H//2) % H, (j + W//2) % W). Exact for odd sizes.
    src_i = (i + H // 2) % H
    src_j = (j + W // 2) % W
    # The ramp (times 1/sqrt(HW)) is the same for every coil: fold it into the image once.
    rh_re, rh_im = _load_ramp(ramp_h_ptr, i, in_h)
    rw_re, rw_im = _load_ramp(ramp_w_ptr, j, in_w)
    r_re = rh_re[:, None] * rw_re[None, :] - rh_im[:, None] * rw_im[None, :]
    r_im = rh_re[:, None] * rw_im[None, :] + rh_im[:, None] * rw_re[None, :]
    x_re, x_im = _load_c(img_ptr + n * x_n * 2, src_i[:, None] * x_h + src_j[None, :] * x_w, inside)
    u_re = r_re * x_re - r_im * x_im
    u_im = r_re * x_im + r_im * x_re
    s_offs = src_i[:, None] * s_h + src_j[None, :] * s_w
    o_offs = i[:, None] * W + j[None, :]
    for c in range(c_start, c_stop):
        s_re, s_im = _load_c(sens_ptr + (n * s_n + c * s_c) * 2, s_offs, inside)
        o_re = s_re * u_re - s_im * u_im
        o_im = s_re * u_im + s_im * u_re
        _store_c(out_ptr + ((n * C + c) * H * W) * 2, o_offs, o_re, o_im, inside)


@_jit_no_specialize("coils_per_prog")
def _dc_kernel(
    out_ptr,  # k' (N, C, H, W) complex64, contiguous, real view
    k_ptr,  # k (N, C, H, W) real view, any strides (complex-element strides follow)
    k_n,
    k_c,
    k_h,
    k_w,
    k0_ptr,  # k0 (N, C, H, W) real view, any strides; read only where the mask samples
    k0_n,
    k0_c,
    k0_h,
    k0_w,
    m_ptr,  # mask as uint8, broadcast to (N, C, H, W) by strides (0 on broadcast axes)
    m_n,
    m_c,
    m_h,
    m_w,
    w_ptr,  # dc_weight: one fp32 on the device (no host sync to read it)
    y_ptr,  # Y = fft2c(S * correction) (N, C, H, W) real view (torch.fft's layout); unused unless HAS_Y
    y_n,
    y_c,
    y_h,
    y_w,
    C,
    H,
    W,
    coils_per_prog,
    tiles_w,
    HAS_Y: tl.constexpr,  # False: plain soft DC; True: also subtract Y (the cascade step)
    BLOCK_H: tl.constexpr,
    BLOCK_W: tl.constexpr,
):
    """``k' = k - w M (k - k0) [- Y]`` elementwise, one tile of one slice and a group of coils."""
    tile = tl.program_id(0)
    n = tl.program_id(1).to(tl.int64)
    c_start = tl.program_id(2) * coils_per_prog
    c_stop = tl.minimum(c_start + coils_per_prog, C)
    i = (tile // tiles_w) * BLOCK_H + tl.arange(0, BLOCK_H)
    j = (tile % tiles_w) * BLOCK_W + tl.arange(0, BLOCK_W)
    inside = (i < H)[:, None] & (j < W)[None, :]
    weight = tl.load(w_ptr)
    k_offs = i[:, None] * k_h + j[None, :] * k_w
    k0_offs = i[:, None] * k0_h + j[None, :] * k0_w
    m_offs = i[:, None] * m_h + j[None, :] * m_w
    y_offs = i[:, None] * y_h + j[None, :] * y_w
    o_offs = i[:, None] * W + j[None, :]
    for c in range(c_start, c_stop):
        sampled = tl.load(m_ptr + n * m_n + c * m_c + m_offs, mask=inside, other=0) != 0
        k_re, k_im = _load_c(k_ptr + (n * k_n + c * k_c) * 2, k_offs, inside)
        # Masked load: k0 is never fetched where the mask is 0 (most of k-space when undersampled).
        k0_re, k0_im = _load_c(k0_ptr + (n * k0_n + c * k0_c) * 2, k0_offs, inside & sampled)
        w_m = tl.where(sampled, weight, 0.0)
        # Same order as the reference: (k - k0) * w, then k minus that (fp32 throughout).
        o_re = k_re - (k_re - k0_re) * w_m
        o_im = k_im - (k_im - k0_im) * w_m
        if HAS_Y:
            y_re, y_im = _load_c(y_ptr + (n * y_n + c * y_c) * 2, y_offs, inside)
            o_re = o_re - y_re
            o_im = o_im - y_im
        _store_c(out_ptr + ((n * C + c) * H * W) * 2, o_offs, o_re, o_im, inside)


@_jit
def _reduce_kernel(
    out_ptr,  # x (N, H, W) complex64, contiguous, real view
    z_ptr,  # Z = unnormalised ifft2(k) (N, C, H, W) real view; torch.fft keeps its input's layout
    z_n,
    z_c,
    z_h,
    z_w,
    sens_ptr,  # S (N, C, H, W) real view, any strides
    s_n,
    s_c,
    s_h,
    s_w,
    ramp_h_ptr,  # (H, 2) fp32: exp(-2 pi i (H//2) m / H) / sqrt(H W)  (ifftshift of the input + ortho scale)
    ramp_w_ptr,  # (W, 2) fp32: exp(-2 pi i (W//2) m / W)
    C,
    H,
    W,
    tiles_w,
    BLOCK_H: tl.constexpr,
    BLOCK_W: tl.constexpr,
):
    """``x[n, i, j] = q[m] * sum_c conj(S[n, c, i, j]) Z[n, c, m]``, ``m`` the fftshift source of ``(i, j)``."""
    tile = tl.program_id(0)
    n = tl.program_id(1).to(tl.int64)
    i = (tile // tiles_w) * BLOCK_H + tl.arange(0, BLOCK_H)
    j = (tile % tiles_w) * BLOCK_W + tl.arange(0, BLOCK_W)
    in_h = i < H
    in_w = j < W
    inside = in_h[:, None] & in_w[None, :]
    # fftshift as a gather: output (i, j) takes ((i - H//2) mod H, (j - W//2) mod W); + H keeps it >= 0
    # (Triton's % truncates like C).
    src_i = (i + H - H // 2) % H
    src_j = (j + W - W // 2) % W
    z_offs = src_i[:, None] * z_h + src_j[None, :] * z_w
    s_offs = i[:, None] * s_h + j[None, :] * s_w
    # Accumulate the coil sum in fp32 (C <= a few dozen terms: plain summation is as accurate as torch's).
    acc_re = tl.zeros((BLOCK_H, BLOCK_W), dtype=tl.float32)
    acc_im = tl.zeros((BLOCK_H, BLOCK_W), dtype=tl.float32)
    for c in range(0, C):
        z_re, z_im = _load_c(z_ptr + (n * z_n + c * z_c) * 2, z_offs, inside)
        s_re, s_im = _load_c(sens_ptr + (n * s_n + c * s_c) * 2, s_offs, inside)
        acc_re += s_re * z_re + s_im * z_im  # conj(S) * Z
        acc_im += s_re * z_im - s_im * z_re
    # The ramp does not depend on the coil: apply it once to the sum.
    qh_re, qh_im = _load_ramp(ramp_h_ptr, src_i, in_h)
    qw_re, qw_im = _load_ramp(ramp_w_ptr, src_j, in_w)
    q_re = qh_re[:, None] * qw_re[None, :] - qh_im[:, None] * qw_im[None, :]
    q_im = qh_re[:, None] * qw_im[None, :] + qh_im[:, None] * qw_re[None, :]
    o_re = q_re * acc_re - q_im * acc_im
    o_im = q_re * acc_im + q_im * acc_re
    _store_c(out_ptr + (n * H * W) * 2, i[:, None] * W + j[None, :], o_re, o_im, inside)


# ----------------------------------------------------------------------------------------------------
# Launch configuration, phase ramps, runtime checks
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LaunchConfig:
    """Tile shape and parallelism of the three kernels (the benchmark sweeps these).

    ``block_h x block_w`` complex elements per tile for the elementwise kernels (expand, dc);
    ``reduce_block_h x block_w`` for the coil-combine kernel, which loops over every coil and so wants
    more, smaller tiles. ``coils_per_program`` (0 = automatic) groups coils per program of the
    elementwise kernels.
    """

    block_h: int
    block_w: int
    reduce_block_h: int
    num_warps: int = 4
    coils_per_program: int = 0


def _pow2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


def default_config(device: torch.device, n: int, c: int, h: int, w: int) -> LaunchConfig:
    """Heuristic tiles: one tile per slice in the interpreter (launches dominate there), 8 KB tiles on GPU."""
    if device.type != "cuda":
        block_w = min(_pow2(w), 256)
        block_h = min(_pow2(h), max(1, 8192 // block_w))
        return LaunchConfig(
            block_h=block_h, block_w=block_w, reduce_block_h=block_h, num_warps=1, coils_per_program=c
        )
    # 128 columns x 8 rows of complex64 = 8 KB per tensor tile, 4 warps. The sm_90 assembly shows 8-byte
    # (v2.b32) global loads and a shared-memory pass for the real/imag split: a lead for tuning on hardware.
    block_w = min(128, max(16, _pow2(w)))
    block_h = max(1, min(_pow2(h), 1024 // block_w))
    reduce_block_h = max(1, min(_pow2(h), 512 // block_w))
    return LaunchConfig(block_h=block_h, block_w=block_w, reduce_block_h=reduce_block_h, num_warps=4)


@functools.cache
def _sm_count(index: int) -> int:
    return int(torch.cuda.get_device_properties(index).multi_processor_count)


def _coil_groups(cfg: LaunchConfig, n: int, c: int, tiles: int, device: torch.device) -> int:
    """Coils per program of the elementwise kernels: enough programs to fill the GPU (~8 per SM)."""
    if cfg.coils_per_program > 0:
        return min(cfg.coils_per_program, c)
    sms = (
        _sm_count(device.index if device.index is not None else torch.cuda.current_device())
        if device.type == "cuda"
        else 1
    )
    groups = max(1, min(c, math.ceil(8 * sms / max(1, tiles * n))))
    return math.ceil(c / groups)


@functools.lru_cache(maxsize=64)
def _ramp_table(length: int, sign: int, scale_by: int, device: str) -> torch.Tensor:
    """``exp(sign 2 pi i (L//2) n / L) / sqrt(scale_by)`` for n < L, as an ``(L, 2)`` fp32 table.

    Computed in float64 from the exact integer phase ``(L//2) n mod L`` and rounded once to fp32;
    for even L the values are exactly +-1 (times the scale), so the checkerboard costs no accuracy.
    """
    n = torch.arange(length, dtype=torch.float64)
    phase = torch.remainder((length // 2) * n, length) * (2.0 * math.pi / length)
    table = torch.stack((torch.cos(phase), sign * torch.sin(phase)), dim=-1)
    table = torch.where(table.abs() < 1e-12, torch.zeros_like(table), table)  # sin(pi) = 1.2e-16 -> 0
    table = table / math.sqrt(scale_by)
    return table.to(device=device, dtype=torch.float32).contiguous()


def _ramps(h: int, w: int, sign: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-axis ramp tables; the orthonormal scale 1/sqrt(HW) rides on the H table."""
    return _ramp_table(h, sign, h * w, str(device)), _ramp_table(w, sign, 1, str(device))


def _require_runtime(device: torch.device) -> None:
    """Raise a clear error unless the Triton kernels can run on ``device`` in this process."""
    if triton is None:
        raise MissingDependencyError(
            'the fused data-consistency kernels need Triton: pip install "fastrecon[triton]"'
        )
    if device.type == "cuda":
        return
    if device.type == "cpu":
        if _INTERPRETED:
            return
        how = (
            "TRITON_INTERPRET=1 is set now but was not when fastrecon.kernels.dc was imported; set it before."
            if triton_interpret()
            else "set TRITON_INTERPRET=1 before importing fastrecon.kernels, or use the *_ref functions."
        )
        raise BackendUnavailableError(
            f"Triton kernels run on CPU tensors only in the Triton interpreter: {how}"
        )
    raise BackendUnavailableError(
        f"Triton kernels run on CUDA (or CPU in the interpreter), not on {device.type}."
    )


def _real(t: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...]]:
    """Real view of a complex tensor and its strides in complex elements."""
    t = t.resolve_conj().resolve_neg()  # a lazily conjugated/negated view cannot be reinterpreted
    return torch.view_as_real(t), tuple(t.stride())


def _weight_on(dc_weight: torch.Tensor, device: torch.device) -> torch.Tensor:
    return dc_weight.reshape(1).to(device=device, dtype=torch.float32)


def _mask_u8(mask: torch.Tensor, shape: tuple[int, int, int, int]) -> torch.Tensor:
    """The mask as uint8, expanded (zero strides, no copy of the broadcast axes) to ``(N, C, H, W)``."""
    return broadcast_mask(mask, shape).expand(shape).view(torch.uint8)


# ----------------------------------------------------------------------------------------------------
# Launchers
# ----------------------------------------------------------------------------------------------------


MAX_GRID_SLICES = 65_535
"""CUDA caps grid axes 1 and 2 at 65,535: the launchers split larger batches into slice blocks."""


def _slice_blocks(n: int) -> list[slice]:
    return [slice(start, min(start + MAX_GRID_SLICES, n)) for start in range(0, n, MAX_GRID_SLICES)]


def _on_device(device: torch.device) -> contextlib.AbstractContextManager[object]:
    """Launch on the tensors' own GPU (Triton launches on the *current* device otherwise)."""
    return torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()


def _launch_expand(out: torch.Tensor, image: torch.Tensor, sens: torch.Tensor, cfg: LaunchConfig) -> None:
    if sens.shape[0] > MAX_GRID_SLICES:
        for block in _slice_blocks(sens.shape[0]):
            _launch_expand(out[block], image[block], sens[block], cfg)
        return
    n, c, h, w = sens.shape
    tiles_w = triton.cdiv(w, cfg.block_w)
    tiles = triton.cdiv(h, cfg.block_h) * tiles_w
    per_prog = _coil_groups(cfg, n, c, tiles, sens.device)
    sens_r, s_st = _real(sens)
    img_r, x_st = _real(image)
    ramp_h, ramp_w = _ramps(h, w, +1, sens.device)
    grid = (tiles, n, triton.cdiv(c, per_prog))
    with _on_device(sens.device):
        _expand_kernel[grid](
            torch.view_as_real(out), sens_r, *s_st, img_r, *x_st, ramp_h, ramp_w, c, h, w, per_prog, tiles_w,
            BLOCK_H=cfg.block_h, BLOCK_W=cfg.block_w, num_warps=cfg.num_warps,
        )  # fmt: skip
    LAUNCHES["expand"] += 1


def _launch_dc(
    out: torch.Tensor,
    kspace: torch.Tensor,
    kspace0: torch.Tensor,
    mask: torch.Tensor,
    dc_weight: torch.Tensor,
    y: torch.Tensor | None,
    cfg: LaunchConfig,
) -> None:
    if kspace.shape[0] > MAX_GRID_SLICES:
        mask4 = broadcast_mask(mask, kspace.shape)
        for block in _slice_blocks(kspace.shape[0]):
            part = mask4[block] if mask4.shape[0] > 1 else mask4
            y_part = None if y is None else y[block]
            _launch_dc(out[block], kspace[block], kspace0[block], part, dc_weight, y_part, cfg)
        return
    n, c, h, w = kspace.shape
    tiles_w = triton.cdiv(w, cfg.block_w)
    tiles = triton.cdiv(h, cfg.block_h) * tiles_w
    per_prog = _coil_groups(cfg, n, c, tiles, kspace.device)
    k_r, k_st = _real(kspace)
    k0_r, k0_st = _real(kspace0)
    m = _mask_u8(mask, (n, c, h, w))
    out_r = torch.view_as_real(out)
    y_r, y_st = (out_r, (0, 0, 0, 0)) if y is None else _real(y)
    grid = (tiles, n, triton.cdiv(c, per_prog))
    with _on_device(kspace.device):
        _dc_kernel[grid](
            out_r, k_r, *k_st, k0_r, *k0_st, m, *m.stride(), _weight_on(dc_weight, kspace.device),
            y_r, *y_st, c, h, w, per_prog, tiles_w,
            HAS_Y=y is not None, BLOCK_H=cfg.block_h, BLOCK_W=cfg.block_w, num_warps=cfg.num_warps,
        )  # fmt: skip
    LAUNCHES["dc"] += 1


def _launch_reduce(out: torch.Tensor, z: torch.Tensor, sens: torch.Tensor, cfg: LaunchConfig) -> None:
    if sens.shape[0] > MAX_GRID_SLICES:
        for block in _slice_blocks(sens.shape[0]):
            _launch_reduce(out[block], z[block], sens[block], cfg)
        return
    n, c, h, w = sens.shape
    tiles_w = triton.cdiv(w, cfg.block_w)
    tiles = triton.cdiv(h, cfg.reduce_block_h) * tiles_w
    sens_r, s_st = _real(sens)
    ramp_h, ramp_w = _ramps(h, w, -1, sens.device)
    z_r, z_st = _real(z)
    with _on_device(sens.device):
        _reduce_kernel[(tiles, n)](
            torch.view_as_real(out), z_r, *z_st, sens_r, *s_st, ramp_h, ramp_w, c, h, w, tiles_w,
            BLOCK_H=cfg.reduce_block_h, BLOCK_W=cfg.block_w, num_warps=cfg.num_warps,
        )  # fmt: skip
    LAUNCHES["reduce"] += 1


def _fft_unnormalised(x: torch.Tensor) -> torch.Tensor:
    # norm="backward" leaves the forward transform unscaled, so torch adds no scaling pass; the
    # 1/sqrt(HW) of the orthonormal transform is in the expand kernel's ramp.
    return torch.fft.fft2(x, dim=(-2, -1), norm="backward")


def _ifft_unnormalised(k: torch.Tensor) -> torch.Tensor:
    # norm="forward" leaves the inverse unscaled (no extra pass); the reduce kernel applies 1/sqrt(HW).
    return torch.fft.ifft2(k, dim=(-2, -1), norm="forward")


def sens_expand_triton(
    image: torch.Tensor, sens: torch.Tensor, config: LaunchConfig | None = None
) -> torch.Tensor:
    """Fused :func:`sens_expand_ref`: one Triton pass (gather-shift, ramp, S*x, scale) + one cuFFT."""
    validate_sens_expand(image, sens)
    if sens.numel() == 0:
        return torch.zeros(sens.shape, dtype=torch.complex64, device=sens.device)
    _require_runtime(sens.device)
    x = torch.empty(sens.shape, dtype=torch.complex64, device=sens.device)
    _launch_expand(x, image, sens, config or default_config(sens.device, *sens.shape))
    return _fft_unnormalised(x)


def sens_reduce_triton(
    kspace: torch.Tensor, sens: torch.Tensor, config: LaunchConfig | None = None
) -> torch.Tensor:
    """Fused :func:`sens_reduce_ref`: one unnormalised inverse cuFFT + one Triton pass (shift, ramp, conj(S)*, coil sum)."""
    validate_sens_reduce(kspace, sens)
    n, c, h, w = sens.shape
    if kspace.numel() == 0:
        return torch.zeros((n, h, w), dtype=torch.complex64, device=sens.device)
    _require_runtime(sens.device)
    out = torch.empty((n, h, w), dtype=torch.complex64, device=sens.device)
    _launch_reduce(out, _ifft_unnormalised(kspace), sens, config or default_config(sens.device, n, c, h, w))
    return out


def soft_dc_triton(
    kspace: torch.Tensor,
    kspace0: torch.Tensor,
    mask: torch.Tensor,
    dc_weight: torch.Tensor,
    config: LaunchConfig | None = None,
) -> torch.Tensor:
    """Fused :func:`soft_dc_ref`: one Triton pass; k0 is read only where the mask samples."""
    validate_soft_dc(kspace, kspace0, mask, dc_weight)
    out = torch.empty(kspace.shape, dtype=torch.complex64, device=kspace.device)
    if kspace.numel() == 0:
        return out
    _require_runtime(kspace.device)
    _launch_dc(
        out, kspace, kspace0, mask, dc_weight, None, config or default_config(kspace.device, *kspace.shape)
    )
    return out


def cascade_step_triton(
    kspace: torch.Tensor,
    kspace0: torch.Tensor,
    mask: torch.Tensor,
    dc_weight: torch.Tensor,
    sens: torch.Tensor,
    correction: torch.Tensor,
    config: LaunchConfig | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fused :func:`cascade_step_ref`: expand kernel, fft2, DC kernel, ifft2, reduce kernel (5 launches)."""
    validate_cascade_step(kspace, kspace0, mask, dc_weight, sens, correction)
    n, c, h, w = kspace.shape
    if kspace.numel() == 0:
        empty = torch.zeros(kspace.shape, dtype=torch.complex64, device=kspace.device)
        return empty, torch.zeros((n, h, w), dtype=torch.complex64, device=kspace.device)
    _require_runtime(kspace.device)
    cfg = config or default_config(kspace.device, n, c, h, w)
    x = torch.empty(kspace.shape, dtype=torch.complex64, device=kspace.device)
    _launch_expand(x, correction, sens, cfg)
    y = _fft_unnormalised(x)  # = fft2c(S * correction), already centred and scaled
    del x
    kspace_next = torch.empty(kspace.shape, dtype=torch.complex64, device=kspace.device)
    _launch_dc(kspace_next, kspace, kspace0, mask, dc_weight, y, cfg)
    del y
    image_next = torch.empty((n, h, w), dtype=torch.complex64, device=kspace.device)
    _launch_reduce(image_next, _ifft_unnormalised(kspace_next), sens, cfg)
    return kspace_next, image_next


def runtime_available(device: torch.device | str) -> bool:
    """True when the Triton kernels can run on ``device`` in this process (no exception)."""
    device = torch.device(device)
    try:
        _require_runtime(device)
    except (BackendUnavailableError, MissingDependencyError):
        return False
    return device.type != "cuda" or has_cuda()
