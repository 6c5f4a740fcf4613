"""The ``compile`` backend: ``torch.compile`` of the whole prepared forward.

- CPU: inductor with ``freezing=True`` (weights folded as constants; measured 20-25 % faster than
  eager on the ViT encoder, where default settings gave nothing), static shapes.
- CUDA: ``mode="reduce-overhead"`` (inductor + CUDA graphs over the whole forward, warm-up and capture
  handled by torch, one graph per shape), static shapes, and the data consistency through the Triton
  custom ops (one graph node each). Chunks are padded to the batch so a stack reuses one graph.

The forward is compiled with ``fullgraph=True``: a graph break is an error, never a silent fallback
to eager. Each new shape compiles once (seconds on CPU for demo-x8, minutes for a ViT-B model).
"""

from __future__ import annotations

import warnings
from typing import Any

import torch

from fastrecon.models.unrolled import Output, UnrolledNet

from ._backend import Backend, ModuleRunner, register_backend
from .eager import set_precision, triton_dc

_COMPLEX_WARNING = "Torchinductor does not support code generation for complex operators"


class CompiledRunner(ModuleRunner):
    """A :class:`ModuleRunner` whose forward is compiled; counts the shapes it has compiled for."""

    def __init__(self, model: UnrolledNet, precision: str, device: torch.device) -> None:
        cuda = device.type == "cuda"
        options: dict[str, Any] = {"mode": "reduce-overhead"} if cuda else {"options": {"freezing": True}}
        compiled = torch.compile(model.forward, fullgraph=True, dynamic=False, **options)
        super().__init__(model, "compile", precision, forward=compiled, static_batch=1)
        self._shapes: set[tuple[Any, ...]] = set()
        self.details = {"mode": options.get("mode", "inductor freezing"), "compiled_shapes": 0}

    def __call__(self, prepared: Any, output: Output) -> torch.Tensor:
        key = (tuple(prepared.kspace.shape), tuple(prepared.mask.shape), tuple(prepared.acs.shape), output)
        if key not in self._shapes:
            self._shapes.add(key)
            self.details["compiled_shapes"] = len(self._shapes)
        with warnings.catch_warnings():
            # Inductor leaves complex ops (FFTs, DC) unfused and says so at every compile; that is the
            # design (DESIGN.md section 6): the networks are what it fuses.
            warnings.filterwarnings("ignore", message=_COMPLEX_WARNING)
            result = super().__call__(prepared, output)
        # CUDA-graph outputs live in a pool the next replay overwrites: hand back a copy.
        return result.clone() if prepared.kspace.device.type == "cuda" else result


def _compile(model: UnrolledNet, device: torch.device, precision: str) -> CompiledRunner:
    if device.type == "cuda":
        model.dc = triton_dc(device)  # type: ignore[assignment]
    set_precision(model, precision)
    return CompiledRunner(model, precision, device)


COMPILE = register_backend(
    Backend(
        "compile",
        ("fp32", "bf16", "fp16"),
        _compile,
        "torch.compile of the whole forward (inductor freezing on CPU; CUDA graphs + Triton DC on GPU)",
    )
)
