"""What optional dependencies and devices exist, in one place.

Nothing here imports an optional package at module import time; each probe imports lazily and
caches its answer. ``import fastrecon`` must never initialise CUDA.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os
from collections.abc import Callable
from typing import Any, TypeVar

from fastrecon.errors import BackendUnavailableError, MissingDependencyError

F = TypeVar("F", bound=Callable[..., Any])

# The pip extra that brings each optional dependency, for error messages.
EXTRAS = {
    "triton": "triton",
    "cupy": "cuda",
    "torch_tensorrt": "tensorrt",
    "tensorrt": "tensorrt",
    "onnx": "onnx",
    "onnxruntime": "onnx",
    "onnxscript": "onnx",
    "nibabel": "images",
    "pydicom": "images",
}


def has_module(name: str) -> bool:
    """True when ``name`` can be imported (checked without importing it)."""
    return importlib.util.find_spec(name) is not None


@functools.cache
def has_cuda() -> bool:
    """True when torch sees a CUDA device. Initialises CUDA only when called."""
    import torch

    return bool(torch.cuda.is_available())


def triton_interpret() -> bool:
    """True when Triton kernels run in the CPU interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


@functools.cache
def has_triton() -> bool:
    return has_module("triton")


def has_triton_runtime() -> bool:
    """Triton kernels can run here: Triton installed and either a CUDA device or the interpreter."""
    return has_triton() and (triton_interpret() or has_cuda())


def import_optional(name: str) -> Any:
    """Import an optional dependency or raise :class:`MissingDependencyError` naming the pip extra.

    ``torch_tensorrt`` raises a bare ``Exception`` when TensorRT's libraries are missing, so every
    exception from the import is converted, not only ``ImportError``.
    """
    top = name.split(".")[0]
    extra = EXTRAS.get(top)
    how = f'pip install "fastrecon[{extra}]"' if extra else f"pip install {top}"
    try:
        return importlib.import_module(name)
    except Exception as exc:  # noqa: BLE001 - see docstring
        raise MissingDependencyError(
            f"{name!r} is needed for this feature but could not be imported ({exc}). Install it with: {how}"
        ) from exc


def requires_cuda(what: str) -> None:
    """Raise a clear error when ``what`` needs CUDA and there is none."""
    if not has_cuda():
        raise BackendUnavailableError(f"{what} needs a CUDA GPU, and torch sees none on this machine.")


def requires(*modules: str) -> Callable[[F], F]:
    """Decorator: the function needs these optional modules; fail with the pip extra otherwise."""

    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        def inner(*args: Any, **kwargs: Any) -> Any:
            for module in modules:
                import_optional(module)
            return fn(*args, **kwargs)

        return inner  # type: ignore[return-value]

    return wrap
