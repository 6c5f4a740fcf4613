"""Deployment backends: the registry (:mod:`fastrecon.export._backend`) and its entries.

- ``eager``, ``triton`` (:mod:`fastrecon.export.eager`)
- ``compile``: torch.compile, CUDA graphs on GPU (:mod:`fastrecon.export.compile`)
- ``onnxruntime``: encoder and decoders as ONNX graphs run by ONNX Runtime (:mod:`fastrecon.export.onnx`)
- ``tensorrt``: the frozen encoder as a Torch-TensorRT engine (:mod:`fastrecon.export.tensorrt_backend`)

Importing this package registers every backend and imports no optional dependency.
"""

from __future__ import annotations

from . import compile as _compile  # noqa: F401  (registers compile)
from . import eager as _eager  # noqa: F401  (registers eager, triton)
from ._backend import Backend, Runner, get_backend, list_backends, prepare_runner, register_backend

__all__ = ["Backend", "Runner", "get_backend", "list_backends", "prepare_runner", "register_backend"]
