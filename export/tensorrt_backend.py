"""The ``tensorrt`` backend: the frozen encoder as a Torch-TensorRT engine, everything else in torch.

The encoder's blocks (``encoder.features``: normalised pixels ``(B, 3, S, S)`` -> feature maps) are
exported with ``torch.export`` (dynamic batch) and compiled into an FP16 (or FP32) TensorRT engine with
PyTorch fallback disabled, cached on disk (:mod:`fastrecon.export.cache`) and installed with
``set_encoder_features``. The decoders and the sensitivity network run in torch, under fp16 autocast
for ``precision="fp16"``; data consistency stays complex64 outside the engine (TensorRT has no
complex dtype and no FFT).

Needs a CUDA GPU and ``pip install "fastrecon[tensorrt]"``; without them, ``prepare`` raises a clear
:class:`~fastrecon.errors.BackendUnavailableError` / :class:`~fastrecon.errors.MissingDependencyError`.
"""

from __future__ import annotations

import torch

from fastrecon import _features
from fastrecon.errors import BackendUnavailableError
from fastrecon.models.unrolled import UnrolledNet

from ._backend import Backend, ModuleRunner, register_backend
from .eager import set_precision

ENGINE_BATCH = (1, 8, 32)
"""Batch range (min, opt, max) the encoder engine is built for; chunks larger than max are refused."""


def _tensorrt(model: UnrolledNet, device: torch.device, precision: str) -> ModuleRunner:
    from fastrecon.models.vit_unrolled import ViTUnrolledNet

    if not isinstance(model, ViTUnrolledNet):
        raise BackendUnavailableError(
            "backend 'tensorrt' builds an engine for the frozen ViT encoder; E2E-VarNet models have none. "
            "Use backend 'compile' (or 'eager' / 'triton') for varnet-* models."
        )
    # The missing package is named first (with its pip extra): it is what a user can act on.
    _features.import_optional("torch_tensorrt")
    if device.type != "cuda":
        raise BackendUnavailableError(f"backend 'tensorrt' runs on CUDA devices; device is {device}.")
    from .cache import EngineCache
    from .tensorrt import build_encoder_engine

    engine = build_encoder_engine(
        model.encoder, batch=ENGINE_BATCH, precision=precision, cache=EngineCache(), device=str(device)
    )
    model.set_encoder_features(engine)
    set_precision(model, precision)
    details = {"engine_cache_hit": engine.cache_hit, "engine_seconds": round(engine.build_seconds, 3)}
    return ModuleRunner(model, "tensorrt", precision, details=details)


TENSORRT = register_backend(
    Backend(
        "tensorrt",
        ("fp16", "fp32"),
        _tensorrt,
        "frozen encoder as a Torch-TensorRT engine (FP16), decoders in torch; CUDA only",
    )
)
