"""``torch.export`` of a frozen encoder's ``features`` with a dynamic batch (DESIGN.md sections 4, 6).

The exported program is the hand-off to the ahead-of-time backends (TensorRT, ONNX): one graph,
real dtypes only, blocks ``num_blocks..`` absent from both the graph and its state dict.

Batch ranges are ``(min, opt, max)`` triples. ``opt`` is also the example batch ``torch.export``
traces with: it must be at least 2, because with an example batch of 1 the exporter specialises
the batch dimension to 1 and the dynamic range cannot be honoured (DESIGN.md section 6).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from fastrecon.errors import InputError, InputTypeError
from fastrecon.models.encoders import FrozenEncoder

BatchRange = tuple[int, int, int]
"""``(min, opt, max)`` batch sizes: the range an engine accepts and the size it is tuned for."""

DEFAULT_BATCH: BatchRange = (1, 8, 32)


class EncoderFeatures(nn.Module):
    """``pixels (B, 3, S, S)`` -> ``encoder.features(pixels)``: the module that gets exported.

    A separate module so the exported graph starts at the normalised pixels (preprocessing, with
    its data-dependent resize, stays in the models) and so ``forward`` has one named input.
    """

    def __init__(self, encoder: FrozenEncoder) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.encoder.features(pixels)


def check_batch_range(batch: tuple[int, int, int]) -> BatchRange:
    """Validate a ``(min, opt, max)`` batch range and return it as a tuple of ints.

    Requires ``1 <= min <= opt <= max`` and ``opt >= 2`` (``opt`` is the example batch for
    ``torch.export``; batch 1 specialises the dimension). Raises :class:`InputError` otherwise.
    """
    try:
        values = tuple(int(b) for b in batch)
    except (TypeError, ValueError) as exc:
        raise InputError(f"batch={batch!r}: expected a (min, opt, max) tuple of three ints.") from exc
    if len(values) != 3 or any(isinstance(b, bool) or int(b) != b for b in batch):
        raise InputError(f"batch={batch!r}: expected a (min, opt, max) tuple of three ints.")
    low, opt, high = values
    if low < 1:
        raise InputError(f"batch={batch!r}: min batch {low} must be at least 1.")
    if not low <= opt <= high:
        raise InputError(
            f"batch={batch!r}: expected min <= opt <= max, got min={low}, opt={opt}, max={high}."
        )
    if opt < 2:
        raise InputError(
            f"batch={batch!r}: opt batch {opt} is also the example batch torch.export traces with and must "
            "be >= 2 (an example batch of 1 specialises the batch dimension to 1); e.g. (1, 2, 8)."
        )
    return low, opt, high


def check_real_dtype(dtype: torch.dtype) -> torch.dtype:
    """The exported graph is for backends without complex support: floating, non-complex dtypes only."""
    if not isinstance(dtype, torch.dtype) or dtype.is_complex or not dtype.is_floating_point:
        raise InputTypeError(
            f"dtype={dtype!r}: expected a real floating-point torch dtype (torch.float32, torch.float16, "
            "torch.bfloat16); complex and integer dtypes cannot be exported for TensorRT."
        )
    return dtype


def encoder_device(encoder: nn.Module) -> torch.device:
    """The device of the encoder's parameters (CPU for a module without parameters)."""
    for tensor in encoder.parameters():
        return tensor.device
    return torch.device("cpu")


def prepare_for_export(encoder: FrozenEncoder, dtype: torch.dtype) -> FrozenEncoder:
    """The caller's encoder when it is already pruned and in ``dtype``, else a pruned/cast copy.

    The caller's module is never modified: pruning or casting happens on a deep copy.
    """
    if not isinstance(encoder, FrozenEncoder):
        raise InputTypeError(
            f"encoder is a {type(encoder).__name__}; expected a fastrecon FrozenEncoder "
            "(fastrecon.models.encoders.build_encoder)."
        )
    params = list(encoder.parameters())
    needs_cast = any(p.dtype != dtype for p in params if p.is_floating_point())
    if encoder.is_pruned and not needs_cast:
        return encoder
    work = copy.deepcopy(encoder)
    if not work.is_pruned:
        work.prune()
    if needs_cast:
        work = work.to(dtype)
    return work


def export_encoder(
    encoder: FrozenEncoder, *, batch: tuple[int, int, int] = DEFAULT_BATCH, dtype: torch.dtype = torch.float32
) -> torch.export.ExportedProgram:
    """Export ``encoder.features`` for pixels ``(B, 3, S, S)`` with ``B`` dynamic in ``[min, max]``.

    Args:
        encoder: a :class:`FrozenEncoder`. An unpruned encoder is pruned on a copy first, so the
            program never carries blocks ``num_blocks..``. The program runs on the encoder's device.
        batch: ``(min, opt, max)``; see :func:`check_batch_range`.
        dtype: real floating dtype of the pixels and weights (the encoder is cast on a copy if needed).

    Returns:
        An ``ExportedProgram`` whose single input is named ``pixels``; ``program.module()(pixels)``
        returns ``num_blocks`` tensors ``(B, D, g, g)`` like ``encoder.features``.
    """
    low, opt, high = check_batch_range(batch)
    check_real_dtype(dtype)
    work = prepare_for_export(encoder, dtype)
    size = work.config.img_size
    example = torch.randn(opt, 3, size, size, generator=torch.Generator().manual_seed(0)).to(
        device=encoder_device(work), dtype=dtype
    )
    # torch.export refuses a Dim with min == max: a one-size range is a static export.
    dynamic = {"pixels": {0: torch.export.Dim("batch", min=low, max=high)}} if low < high else None
    with torch.no_grad():
        return torch.export.export(
            EncoderFeatures(work).eval(), (example,), dynamic_shapes=dynamic, strict=False
        )
