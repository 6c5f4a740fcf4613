"""The ``eager`` backend (the fp32 reference, or reduced-precision networks) and ``triton`` (fused DC)."""

from __future__ import annotations

import torch

from fastrecon.errors import BackendUnavailableError
from fastrecon.models.unrolled import UnrolledNet

from ._backend import PRECISIONS, Backend, ModuleRunner, register_backend


def set_precision(model: UnrolledNet, precision: str) -> None:
    """Networks in ``precision`` (autocast; norms, softmax and reductions stay fp32); DC stays complex64."""
    model.network_dtype = PRECISIONS[precision]


def triton_dc(device: torch.device) -> object:
    """The Triton data-consistency form for ``device`` (CUDA, or the CPU under ``TRITON_INTERPRET=1``)."""
    from fastrecon import _features

    if not _features.has_triton():
        _features.import_optional("triton")
    if device.type != "cuda" and not _features.triton_interpret():
        raise BackendUnavailableError(
            f"the Triton kernels run on CUDA devices (or on the CPU with TRITON_INTERPRET=1); device is {device}."
        )
    from fastrecon.kernels.ops import TRITON_2D

    return TRITON_2D


def _eager(model: UnrolledNet, device: torch.device, precision: str) -> ModuleRunner:
    set_precision(model, precision)
    return ModuleRunner(model, "eager", precision)


def _triton(model: UnrolledNet, device: torch.device, precision: str) -> ModuleRunner:
    model.dc = triton_dc(device)  # type: ignore[assignment]
    set_precision(model, precision)
    return ModuleRunner(model, "triton", precision)


EAGER = register_backend(
    Backend(
        "eager",
        ("fp32", "bf16", "fp16"),
        _eager,
        "PyTorch eager; fp32 is the reference every other path is measured against",
    )
)
TRITON = register_backend(
    Backend(
        "triton", ("fp32", "bf16", "fp16"), _triton, "eager networks, fused Triton data-consistency kernels"
    )
)
