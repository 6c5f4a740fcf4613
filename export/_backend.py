"""The backend registry: how ``fastrecon.load(name, backend=..., precision=...)`` runs a model.

A backend is one entry: its name, the precisions it honours and ``prepare(model, device, precision)``,
which returns a :class:`Runner` mapping a :class:`~fastrecon.prepare.PreparedInput` chunk to the
output. Backends change a model only through its documented seams (``model.dc``,
``model.network_dtype``, ``set_encoder_features``, ``set_decoders``), never by patching code.

Importing this module imports no optional dependency; each backend imports what it needs when it
prepares a model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from fastrecon.errors import BackendUnavailableError, UnknownNameError, close_matches
from fastrecon.models.unrolled import Output, UnrolledNet
from fastrecon.prepare import PreparedInput

PRECISIONS: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
"""Precision names -> the dtype the networks run in (``None``: fp32). DC always stays complex64."""


class Runner(Protocol):
    """A model prepared by a backend. ``static_batch``: chunks must be padded to this batch (or None)."""

    static_batch: int | None

    def __call__(self, prepared: PreparedInput, output: Output) -> torch.Tensor:
        """The RSS image ``(B, H, W)`` (``output="rss"``) or coil-combined complex image (``"complex"``)
        of a prepared chunk, still scaled (the caller unscales)."""
        ...

    def info(self) -> dict[str, Any]:
        """What actually ran: backend, precision, DC form and backend-specific facts (cache hits, ...)."""
        ...


@dataclass
class ModuleRunner:
    """Runs ``forward`` (the model's own, or a compiled version of it) on prepared chunks."""

    model: UnrolledNet
    backend: str
    precision: str
    forward: Callable[..., torch.Tensor] | None = None
    static_batch: int | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def __call__(self, prepared: PreparedInput, output: Output) -> torch.Tensor:
        forward = self.forward or self.model.forward
        return forward(prepared.kspace, prepared.mask, prepared.acs, output)

    def info(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "precision": self.precision,
            "dc": self.model.dc.name,
            "network_dtype": str(self.model.network_dtype or torch.float32).replace("torch.", ""),
            **self.details,
        }


PrepareFn = Callable[[UnrolledNet, torch.device, str], Runner]


@dataclass(frozen=True)
class Backend:
    """A registered backend."""

    name: str
    precisions: tuple[str, ...]
    prepare: PrepareFn
    description: str


_BACKENDS: dict[str, Backend] = {}


def register_backend(backend: Backend) -> Backend:
    """Add a backend (name unique)."""
    if backend.name in _BACKENDS:
        raise UnknownNameError(f"backend {backend.name!r} is already registered.")
    unknown = set(backend.precisions) - set(PRECISIONS)
    if unknown:
        raise UnknownNameError(f"backend {backend.name!r} lists unknown precisions {sorted(unknown)}.")
    _BACKENDS[backend.name] = backend
    return backend


def list_backends() -> list[str]:
    return sorted(_BACKENDS)


def get_backend(name: str) -> Backend:
    """The backend called ``name``; unknown names are answered with the registered ones."""
    if not isinstance(name, str) or name not in _BACKENDS:
        raise UnknownNameError(f"unknown backend {name!r}. {close_matches(str(name), list(_BACKENDS))}")
    return _BACKENDS[name]


def check_precision(backend: Backend, precision: str) -> None:
    """Refuse a precision the backend does not honour (never ignore it)."""
    if not isinstance(precision, str) or precision not in PRECISIONS:
        raise UnknownNameError(
            f"unknown precision {precision!r}. {close_matches(str(precision), list(PRECISIONS))}"
        )
    if precision not in backend.precisions:
        raise BackendUnavailableError(
            f"backend {backend.name!r} runs precision {', '.join(backend.precisions)}; {precision!r} was asked for."
        )


DC_FORMS = ("auto", "2d", "hybrid", "residual")
"""``dc=`` choices: ``auto`` (the 2-D reference on ``eager``, the fastest exact form for the mask
elsewhere), or a forced form (``hybrid`` / ``residual`` need masks that select whole columns)."""


def check_dc(dc: str, backend: str | None = None) -> None:
    """Refuse an unknown form, and the torch-only hybrid form on the ``triton`` backend."""
    if not isinstance(dc, str) or dc not in DC_FORMS:
        raise UnknownNameError(f"unknown dc form {dc!r}. {close_matches(str(dc), list(DC_FORMS))}")
    if backend == "triton" and dc == "hybrid":
        raise BackendUnavailableError(
            "backend 'triton' has fused kernels for the 2-D and residual DC forms; dc='hybrid' runs in "
            "plain torch on the other backends (eager, compile, onnxruntime, tensorrt)."
        )


def choose_dc(model: UnrolledNet, backend: str, device: torch.device, dc: str) -> None:
    """Set ``model.dc`` for ``dc`` once the backend has set its own 2-D implementation.

    ``auto``: ``eager`` keeps the 2-D reference. ``triton``: column masks take the fused residual
    kernels, 2-D masks the fused 2-D kernels. ``compile`` needs static shapes, and the residual form's
    state is sized by the number of sampled columns: the hybrid form on the CPU, the fused 2-D kernels
    on CUDA. Other backends whose DC is plain torch: the residual form on the CPU (measured fastest
    there), the hybrid form on CUDA (fewer FFT passes; not yet measured); 2-D masks the 2-D form.
    Forced forms: ``2d`` keeps the backend's 2-D implementation; ``hybrid`` / ``residual`` run for
    column masks only (a 2-D mask is refused when the chunk runs).
    """
    from fastrecon.physics.hybrid import HYBRID, RESIDUAL, AutoForm
    from fastrecon.physics.plan import KSPACE_2D

    check_dc(dc, backend)
    if dc == "2d" or (dc == "auto" and backend == "eager"):
        return
    if backend == "compile" and dc == "residual":
        raise BackendUnavailableError(
            "dc='residual' sizes its state by the number of sampled columns, a data-dependent shape that a "
            "compiled graph cannot take; use dc='hybrid' (or 'auto') with backend 'compile'."
        )
    two_d = model.dc
    fused = two_d is not KSPACE_2D
    if fused:
        from fastrecon.kernels.ops import TRITON_RESIDUAL

        residual = TRITON_RESIDUAL
    else:
        residual = RESIDUAL
    if dc == "auto":
        if backend == "compile":  # static shapes only: hybrid (torch DC) or the fused 2-D kernels
            column = HYBRID if not fused else None
        else:
            column = residual if fused or device.type == "cpu" else HYBRID
        if column is not None:
            model.dc = AutoForm(column, name=f"auto:{column.name}", fallback=two_d)
        return
    model.dc = HYBRID if dc == "hybrid" else residual


def prepare_runner(
    model: UnrolledNet, backend: str, device: torch.device, precision: str, dc: str = "auto"
) -> Runner:
    """Look the backend up, check the precision and DC form, and prepare ``model`` (on ``device``, eval)."""
    entry = get_backend(backend)
    check_precision(entry, precision)
    check_dc(dc, backend)
    runner = entry.prepare(model, device, precision)
    choose_dc(model, backend, device, dc)
    return runner
