"""The fused data-consistency ops as torch custom ops, and :data:`TRITON_2D`, their DC form for the loop.

Each op is one node for ``torch.compile`` and ``torch.export`` (``torch.library.custom_op`` with a
fake implementation) and has an autograd formula, so models can train through it.

Dispatch, by the device of the inputs:

- CUDA: the Triton kernels of :mod:`fastrecon.kernels.dc` (Triton missing -> ``MissingDependencyError``).
- CPU: the custom op's registered CPU kernel runs the Triton kernels in the interpreter when
  ``TRITON_INTERPRET=1`` (set before this module is imported), and the pure-torch ``*_ref`` twin
  otherwise. The reference is the CPU implementation on purpose: the interpreter is far slower.
- any other device: the ``*_ref`` twin.

``implementation(device)`` says which path a device takes; ``fastrecon.kernels.dc.LAUNCHES`` counts
kernel launches, so tests can prove the kernels ran.

Every public op has its ``*_ref`` twin (same signature) in this module.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import torch

from fastrecon._features import triton_interpret
from fastrecon.physics.dc import broadcast_mask
from fastrecon.physics.fft import ifft2c
from fastrecon.physics.hybrid import ResidualForm
from fastrecon.physics.plan import KSpaceForm

from . import dc as _dc
from . import residual as _residual
from .dc import cascade_step_ref, sens_expand_ref, sens_reduce_ref, soft_dc_ref
from .residual import residual_rho_update_ref, residual_x_update_ref

__all__ = [
    "TRITON_2D",
    "TRITON_RESIDUAL",
    "residual_rho_update",
    "residual_rho_update_ref",
    "residual_x_update",
    "residual_x_update_ref",
    "cascade_step",
    "cascade_step_ref",
    "implementation",
    "sens_expand",
    "sens_expand_ref",
    "sens_reduce",
    "sens_reduce_ref",
    "soft_dc",
    "soft_dc_ref",
]

Implementation = Literal["triton", "triton-interpreter", "reference"]


def implementation(device: torch.device | str) -> Implementation:
    """Which implementation the ops run for tensors on ``device`` in this process."""
    device_type = torch.device(device).type
    if device_type == "cuda":
        return "triton"
    if device_type == "cpu" and triton_interpret() and _dc.triton is not None:
        return "triton-interpreter"
    return "reference"


def _route(
    triton_fn: Callable[..., Any], ref_fn: Callable[..., Any], validate: Callable[..., None]
) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """The default (all devices) and CPU kernels of one op."""

    def default_kernel(*args: Any) -> Any:
        if args[0].device.type == "cuda":
            return triton_fn(*args)
        validate(*args)
        return ref_fn(*args)

    def cpu_kernel(*args: Any) -> Any:
        if implementation("cpu") == "triton-interpreter":
            return triton_fn(*args)
        validate(*args)
        return ref_fn(*args)

    return default_kernel, cpu_kernel


# ----------------------------------------------------------------------------------------------------
# sens_expand
# ----------------------------------------------------------------------------------------------------

_expand_default, _expand_cpu = _route(_dc.sens_expand_triton, sens_expand_ref, _dc.validate_sens_expand)


@torch.library.custom_op("fastrecon::sens_expand", mutates_args=())
def _sens_expand_op(image: torch.Tensor, sens: torch.Tensor) -> torch.Tensor:
    return _expand_default(image, sens)


_sens_expand_op.register_kernel("cpu")(_expand_cpu)


@_sens_expand_op.register_fake
def _(image: torch.Tensor, sens: torch.Tensor) -> torch.Tensor:
    _dc.validate_sens_expand(image, sens)
    return sens.new_empty(sens.shape)


def _expand_setup(ctx: Any, inputs: tuple[torch.Tensor, torch.Tensor], output: torch.Tensor) -> None:
    ctx.save_for_backward(*inputs)


def _expand_backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    image, sens = ctx.saved_tensors
    # E is F S: adjoint w.r.t. x is R = S^H F^-1 (sens_reduce); w.r.t. S it is conj(x) F^-1 (per coil).
    grad_image = sens_reduce(grad, sens) if ctx.needs_input_grad[0] else None
    grad_sens = image.conj().unsqueeze(1) * ifft2c(grad) if ctx.needs_input_grad[1] else None
    return grad_image, grad_sens


_sens_expand_op.register_autograd(_expand_backward, setup_context=_expand_setup)


def sens_expand(image: torch.Tensor, sens: torch.Tensor) -> torch.Tensor:
    """``E x = fft2c(S_c x)``: image ``(N, H, W)``, sens ``(N, C, H, W)`` complex64 -> k-space ``(N, C, H, W)``."""
    return torch.ops.fastrecon.sens_expand(image, sens)


# ----------------------------------------------------------------------------------------------------
# sens_reduce
# ----------------------------------------------------------------------------------------------------

_reduce_default, _reduce_cpu = _route(_dc.sens_reduce_triton, sens_reduce_ref, _dc.validate_sens_reduce)


@torch.library.custom_op("fastrecon::sens_reduce", mutates_args=())
def _sens_reduce_op(kspace: torch.Tensor, sens: torch.Tensor) -> torch.Tensor:
    return _reduce_default(kspace, sens)


_sens_reduce_op.register_kernel("cpu")(_reduce_cpu)


@_sens_reduce_op.register_fake
def _(kspace: torch.Tensor, sens: torch.Tensor) -> torch.Tensor:
    _dc.validate_sens_reduce(kspace, sens)
    n, _, h, w = sens.shape
    return sens.new_empty((n, h, w))


def _reduce_setup(ctx: Any, inputs: tuple[torch.Tensor, torch.Tensor], output: torch.Tensor) -> None:
    ctx.save_for_backward(*inputs)


def _reduce_backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    kspace, sens = ctx.saved_tensors
    # R = S^H F^-1: adjoint w.r.t. k is E = F S (sens_expand); x = sum conj(S) z gives conj(g) z for S.
    grad_kspace = sens_expand(grad, sens) if ctx.needs_input_grad[0] else None
    grad_sens = grad.conj().unsqueeze(1) * ifft2c(kspace) if ctx.needs_input_grad[1] else None
    return grad_kspace, grad_sens


_sens_reduce_op.register_autograd(_reduce_backward, setup_context=_reduce_setup)


def sens_reduce(kspace: torch.Tensor, sens: torch.Tensor) -> torch.Tensor:
    """``R y = sum_c conj(S_c) ifft2c(y_c)``: kspace, sens ``(N, C, H, W)`` complex64 -> image ``(N, H, W)``."""
    return torch.ops.fastrecon.sens_reduce(kspace, sens)


# ----------------------------------------------------------------------------------------------------
# soft_dc
# ----------------------------------------------------------------------------------------------------

_soft_dc_default, _soft_dc_cpu = _route(_dc.soft_dc_triton, soft_dc_ref, _dc.validate_soft_dc)


@torch.library.custom_op("fastrecon::soft_dc", mutates_args=())
def _soft_dc_op(
    kspace: torch.Tensor, kspace0: torch.Tensor, mask: torch.Tensor, dc_weight: torch.Tensor
) -> torch.Tensor:
    return _soft_dc_default(kspace, kspace0, mask, dc_weight)


_soft_dc_op.register_kernel("cpu")(_soft_dc_cpu)


@_soft_dc_op.register_fake
def _(
    kspace: torch.Tensor, kspace0: torch.Tensor, mask: torch.Tensor, dc_weight: torch.Tensor
) -> torch.Tensor:
    _dc.validate_soft_dc(kspace, kspace0, mask, dc_weight)
    return kspace.new_empty(kspace.shape)


def _dc_grads(
    grad: torch.Tensor,
    kspace: torch.Tensor,
    kspace0: torch.Tensor,
    mask: torch.Tensor,
    dc_weight: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients of ``k - w M (k - k0)`` w.r.t. ``k``, ``k0`` and the real weight ``w`` (shaped like it)."""
    sampled = broadcast_mask(mask, kspace.shape)
    weight = torch.where(sampled, dc_weight.reshape(()), 0.0)  # real, broadcasts like the mask
    residual = torch.where(sampled, kspace - kspace0, 0.0)
    grad_weight = -(grad * residual.conj()).real.sum().reshape(dc_weight.shape)
    return grad - grad * weight, grad * weight, grad_weight


def _soft_dc_setup(ctx: Any, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
    ctx.save_for_backward(*inputs)


def _soft_dc_backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
    kspace, kspace0, mask, dc_weight = ctx.saved_tensors
    grad_k, grad_k0, grad_w = _dc_grads(grad, kspace, kspace0, mask, dc_weight)
    needs = ctx.needs_input_grad
    return (grad_k if needs[0] else None, grad_k0 if needs[1] else None, None, grad_w if needs[3] else None)


_soft_dc_op.register_autograd(_soft_dc_backward, setup_context=_soft_dc_setup)


def _as_weight(dc_weight: torch.Tensor | float, like: torch.Tensor) -> torch.Tensor:
    if isinstance(dc_weight, torch.Tensor):
        return dc_weight
    return torch.tensor(float(dc_weight), dtype=torch.float32, device=like.device)


def soft_dc(
    kspace: torch.Tensor, kspace0: torch.Tensor, mask: torch.Tensor, dc_weight: torch.Tensor | float
) -> torch.Tensor:
    """``k - w M (k - k0)`` on complex64 k-space ``(N, C, H, W)``.

    ``mask``: ``(W,)``, ``(H, W)`` or 4-D broadcastable to the k-space, any real dtype (nonzero =
    sampled); ``dc_weight``: a float32 tensor with one element (e.g. a learnable ``(1,)`` parameter)
    or a Python float.
    """
    return torch.ops.fastrecon.soft_dc(kspace, kspace0, mask, _as_weight(dc_weight, kspace))


# ----------------------------------------------------------------------------------------------------
# cascade_step
# ----------------------------------------------------------------------------------------------------

_cascade_default, _cascade_cpu = _route(_dc.cascade_step_triton, cascade_step_ref, _dc.validate_cascade_step)


@torch.library.custom_op("fastrecon::cascade_step", mutates_args=())
def _cascade_step_op(
    kspace: torch.Tensor,
    kspace0: torch.Tensor,
    mask: torch.Tensor,
    dc_weight: torch.Tensor,
    sens: torch.Tensor,
    correction: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    return _cascade_default(kspace, kspace0, mask, dc_weight, sens, correction)  # type: ignore[no-any-return]


_cascade_step_op.register_kernel("cpu")(_cascade_cpu)


@_cascade_step_op.register_fake
def _(
    kspace: torch.Tensor,
    kspace0: torch.Tensor,
    mask: torch.Tensor,
    dc_weight: torch.Tensor,
    sens: torch.Tensor,
    correction: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    _dc.validate_cascade_step(kspace, kspace0, mask, dc_weight, sens, correction)
    n, _, h, w = kspace.shape
    return kspace.new_empty(kspace.shape), kspace.new_empty((n, h, w))


def _cascade_setup(
    ctx: Any, inputs: tuple[torch.Tensor, ...], output: tuple[torch.Tensor, torch.Tensor]
) -> None:
    ctx.save_for_backward(*inputs, output[0])


def _cascade_backward(
    ctx: Any, grad_kspace_next: torch.Tensor | None, grad_image_next: torch.Tensor | None
) -> tuple[torch.Tensor | None, ...]:
    kspace, kspace0, mask, dc_weight, sens, correction, kspace_next = ctx.saved_tensors
    needs = ctx.needs_input_grad
    # Total gradient reaching k': its own plus the one through image' = R k' (adjoint of R is E).
    grad_total = torch.zeros_like(kspace_next) if grad_kspace_next is None else grad_kspace_next
    if grad_image_next is not None:
        grad_total = grad_total + sens_expand(grad_image_next, sens)
    grad_k, grad_k0, grad_w = _dc_grads(grad_total, kspace, kspace0, mask, dc_weight)
    grad_correction = -sens_reduce(grad_total, sens) if needs[5] else None
    grad_sens = None
    if needs[4]:
        grad_sens = -correction.conj().unsqueeze(1) * ifft2c(grad_total)
        if grad_image_next is not None:
            grad_sens = grad_sens + grad_image_next.conj().unsqueeze(1) * ifft2c(kspace_next)
    return (
        grad_k if needs[0] else None,
        grad_k0 if needs[1] else None,
        None,
        grad_w if needs[3] else None,
        grad_sens,
        grad_correction,
    )


_cascade_step_op.register_autograd(_cascade_backward, setup_context=_cascade_setup)


def cascade_step(
    kspace: torch.Tensor,
    kspace0: torch.Tensor,
    mask: torch.Tensor,
    dc_weight: torch.Tensor | float,
    sens: torch.Tensor,
    correction: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One cascade's data consistency, fused: returns ``(k', R F^-1 k')`` with
    ``k' = k - w M (k - k0) - fft2c(S correction)``.

    kspace, kspace0, sens ``(N, C, H, W)`` and correction ``(N, H, W)`` complex64; mask and
    dc_weight as in :func:`soft_dc`. Outputs: k' ``(N, C, H, W)``, image ``(N, H, W)`` complex64.
    """
    result = torch.ops.fastrecon.cascade_step(
        kspace, kspace0, mask, _as_weight(dc_weight, kspace), sens, correction
    )
    return result[0], result[1]


# ----------------------------------------------------------------------------------------------------
# residual form (inference only)
# ----------------------------------------------------------------------------------------------------

_rx_default, _rx_cpu = _route(
    _residual.residual_x_update_triton, residual_x_update_ref, _residual.validate_residual_x_update
)
_rr_default, _rr_cpu = _route(
    _residual.residual_rho_update_triton, residual_rho_update_ref, _residual.validate_residual_rho_update
)


@torch.library.custom_op("fastrecon::residual_x_update", mutates_args=())
def _residual_x_op(
    x: torch.Tensor,
    rho: torch.Tensor,
    dc_weight: torch.Tensor,
    inverse_p: torch.Tensor,
    sens: torch.Tensor,
    phi: torch.Tensor,
    correction: torch.Tensor,
) -> torch.Tensor:
    return _rx_default(x, rho, dc_weight, inverse_p, sens, phi, correction)


_residual_x_op.register_kernel("cpu")(_rx_cpu)


@_residual_x_op.register_fake
def _(
    x: torch.Tensor,
    rho: torch.Tensor,
    dc_weight: torch.Tensor,
    inverse_p: torch.Tensor,
    sens: torch.Tensor,
    phi: torch.Tensor,
    correction: torch.Tensor,
) -> torch.Tensor:
    _residual.validate_residual_x_update(x, rho, dc_weight, inverse_p, sens, phi, correction)
    return x.new_empty(x.shape)


@torch.library.custom_op("fastrecon::residual_rho_update", mutates_args=())
def _residual_rho_op(
    rho: torch.Tensor,
    dc_weight: torch.Tensor,
    forward_p: torch.Tensor,
    sens: torch.Tensor,
    correction: torch.Tensor,
) -> torch.Tensor:
    return _rr_default(rho, dc_weight, forward_p, sens, correction)


_residual_rho_op.register_kernel("cpu")(_rr_cpu)


@_residual_rho_op.register_fake
def _(
    rho: torch.Tensor,
    dc_weight: torch.Tensor,
    forward_p: torch.Tensor,
    sens: torch.Tensor,
    correction: torch.Tensor,
) -> torch.Tensor:
    _residual.validate_residual_rho_update(rho, dc_weight, forward_p, sens, correction)
    return rho.new_empty(rho.shape)


def _inference_only(name: str) -> Callable[..., Any]:
    def backward(ctx: Any, grad: torch.Tensor) -> Any:
        raise NotImplementedError(
            f"fastrecon::{name} is inference only (no gradient); train with the eager DC forms "
            "(backend 'eager', dc '2d', 'hybrid' or 'residual')."
        )

    return backward


def _no_setup(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
    return None


_residual_x_op.register_autograd(_inference_only("residual_x_update"), setup_context=_no_setup)
_residual_rho_op.register_autograd(_inference_only("residual_rho_update"), setup_context=_no_setup)


def residual_x_update(
    x: torch.Tensor,
    rho: torch.Tensor,
    dc_weight: torch.Tensor,
    inverse_p: torch.Tensor,
    sens: torch.Tensor,
    phi: torch.Tensor,
    correction: torch.Tensor,
) -> torch.Tensor:
    """Fused ``x - R ifftc_W(P^T (w rho)) - Phi c`` (see :mod:`fastrecon.kernels.residual`)."""
    return torch.ops.fastrecon.residual_x_update(
        x, rho, _as_weight(dc_weight, x), inverse_p, sens, phi.to(torch.float32), correction
    )


def residual_rho_update(
    rho: torch.Tensor,
    dc_weight: torch.Tensor,
    forward_p: torch.Tensor,
    sens: torch.Tensor,
    correction: torch.Tensor,
) -> torch.Tensor:
    """Fused ``(1 - w) rho - P fftc_W(S c)`` (see :mod:`fastrecon.kernels.residual`)."""
    return torch.ops.fastrecon.residual_rho_update(
        rho, _as_weight(dc_weight, rho), forward_p, sens, correction
    )


TRITON_2D = KSpaceForm(name="2d-triton", reduce=sens_reduce, step=cascade_step)
"""The 2-D k-space data-consistency form through the fused custom ops (``model.dc = TRITON_2D``):
Triton kernels on CUDA, the references on CPU (the interpreter under ``TRITON_INTERPRET=1``).
Differentiable, and one graph node per call under ``torch.compile`` / ``torch.export``."""

TRITON_RESIDUAL = ResidualForm(
    name="residual-triton", x_update=residual_x_update, rho_update=residual_rho_update
)
"""The residual DC form (column masks) through the fused residual kernels; inference only."""
