"""Array adaptation at the API boundary: numpy / torch / CuPy in, the same library out.

CuPy arrays cross to torch through DLPack, without a copy when they stay on the same device.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from fastrecon.errors import InputError, InputTypeError

ArrayKind = Literal["numpy", "torch", "cupy"]


@dataclass(frozen=True)
class Origin:
    """Which library and device an input came from, to hand the result back the same way."""

    kind: ArrayKind
    device: torch.device


def array_kind(value: Any, what: str) -> ArrayKind:
    if isinstance(value, torch.Tensor):
        return "torch"
    if isinstance(value, np.ndarray):
        return "numpy"
    if type(value).__module__.split(".")[0] == "cupy":
        return "cupy"
    raise InputTypeError(
        f"{what} is a {type(value).__module__}.{type(value).__name__}; expected a numpy array, torch tensor or CuPy array."
    )


def to_torch(value: Any, what: str) -> tuple[torch.Tensor, Origin]:
    """Any supported array as a torch tensor (no copy where possible) and where it came from."""
    kind = array_kind(value, what)
    if kind == "torch":
        tensor = value
    elif kind == "numpy":
        if value.dtype.byteorder not in ("=", "|", "<"):
            value = value.astype(value.dtype.newbyteorder("="))
        if not value.flags.writeable or value.dtype == np.bool_:
            value = value.copy()  # torch warns on read-only memory; bool masks are tiny
        try:
            tensor = torch.from_numpy(np.ascontiguousarray(value))
        except TypeError:
            raise InputTypeError(
                f"{what} has numpy dtype {value.dtype}, which torch cannot take; expected complex64/complex128, "
                "float32/float64 (or bool/integers for masks)."
            ) from None
    else:
        try:
            tensor = torch.from_dlpack(value)
        except (TypeError, RuntimeError, BufferError) as exc:
            raise InputTypeError(
                f"{what} ({type(value).__name__}, dtype {getattr(value, 'dtype', '?')}) cannot cross to torch via DLPack: {exc}"
            ) from exc
    if tensor.layout != torch.strided:
        raise InputTypeError(
            f"{what} is a {tensor.layout} tensor; expected a dense (strided) array: call .to_dense() first."
        )
    if tensor.is_meta:
        raise InputError(
            f"{what} is on the meta device (shape only, no data); expected an array holding values."
        )
    return tensor, Origin(kind=kind, device=tensor.device)


def from_torch(tensor: torch.Tensor, origin: Origin) -> Any:
    """Hand a result back in the input's library and on its device."""
    tensor = tensor.to(origin.device)
    if origin.kind == "torch":
        return tensor
    if origin.kind == "numpy":
        return tensor.numpy()
    import cupy

    return cupy.from_dlpack(tensor.contiguous())


def as_complex_kspace(tensor: torch.Tensor) -> torch.Tensor:
    """k-space as complex64 or complex128 (precision kept): complex as is, real with a trailing
    dimension of 2 as (re, im) (float64 -> complex128, other floats -> complex64)."""
    if tensor.dtype in (torch.complex64, torch.complex128):
        return tensor
    if tensor.is_complex():
        return tensor.to(torch.complex64)
    if tensor.is_floating_point() and tensor.ndim >= 1 and tensor.shape[-1] == 2:
        real = torch.float64 if tensor.dtype == torch.float64 else torch.float32
        return torch.view_as_complex(tensor.to(real).contiguous())
    raise InputTypeError(
        f"k-space has dtype {tensor.dtype} and shape {tuple(tensor.shape)}; expected complex64/complex128, "
        "or a real float array whose last dimension is 2 (real, imaginary)."
    )


def check_finite(tensor: torch.Tensor, what: str) -> None:
    bad = ~torch.isfinite(torch.view_as_real(tensor) if tensor.is_complex() else tensor)
    count = int(bad.sum())
    if count:
        raise InputError(f"{what} has {count} NaN/Inf value(s); expected finite values everywhere.")
