"""Fused Triton kernels for data consistency, registered as torch custom ops.

Importing this package imports neither Triton nor the kernels: names resolve on first use.

- ``sens_expand``, ``sens_reduce``, ``soft_dc``, ``cascade_step``: the custom ops (Triton on CUDA,
  the reference on CPU; see :mod:`fastrecon.kernels.ops`), each with its ``*_ref`` pure-torch twin.
- ``TRITON_2D``: the unrolled loop's data-consistency form backed by them (``model.dc = TRITON_2D``).
- ``TRITON_RESIDUAL``: the residual form (column masks) on the fused residual kernels
  (:mod:`fastrecon.kernels.residual`), inference only.
- ``implementation(device)``: which path a device takes ("triton", "triton-interpreter", "reference").

``TRITON_INTERPRET=1`` (Triton's CPU interpreter) must be set before the first use of these names.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastrecon.kernels.ops import (
        TRITON_2D,
        TRITON_RESIDUAL,
        cascade_step,
        cascade_step_ref,
        implementation,
        sens_expand,
        sens_expand_ref,
        sens_reduce,
        sens_reduce_ref,
        soft_dc,
        soft_dc_ref,
    )

__all__ = [
    "TRITON_2D",
    "TRITON_RESIDUAL",
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


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("fastrecon.kernels.ops"), name)
    raise AttributeError(f"module 'fastrecon.kernels' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
