"""Deployment backends (DESIGN.md sections 4 and 7): the registry and its entries.

- :mod:`fastrecon.export._backend`: the registry (``get_backend``, ``prepare_runner``, ``Runner``).
- ``eager``, ``triton``: :mod:`fastrecon.export.eager`.
- ``compile``: :mod:`fastrecon.export.compile` (torch.compile; CUDA graphs on GPU).
- ``onnxruntime``: :mod:`fastrecon.export.onnx` (encoder and decoders as ONNX graphs, dynamic batch/H/W,
  cached under ``$FASTRECON_HOME/onnx``).
- ``fastrecon export`` / :func:`fastrecon.export.artifact.export_model`: onnx, exported-program or
  tensorrt folders with a ``fastrecon-export.json`` manifest; ``fastrecon.load(DIR)`` runs them.
- ``tensorrt``: :mod:`fastrecon.export.tensorrt_backend`, built on
  :mod:`fastrecon.export.encoder_export` (``torch.export`` of ``encoder.features`` with a dynamic batch),
  :mod:`fastrecon.export.cache` (engines on disk under ``$FASTRECON_HOME/engines``, keyed by GPU, SM,
  TensorRT, CUDA, torch, Torch-TensorRT, precision, shapes and weights sha256; verified on load,
  written atomically) and :mod:`fastrecon.export.tensorrt` (``build_encoder_engine``: an FP16 or FP32
  TensorRT engine with no PyTorch fallback, used in place of ``encoder.features``).

Importing this package registers every backend; nothing here imports ONNX Runtime or TensorRT, or
initialises CUDA, at import time.
"""

from __future__ import annotations

from . import compile as _compile  # noqa: F401  (registers compile)
from . import eager as _eager  # noqa: F401  (registers eager, triton)
from . import onnx as _onnx  # noqa: F401  (registers onnxruntime)
from . import tensorrt_backend as _tensorrt_backend  # noqa: F401  (registers tensorrt)
from ._backend import Backend, Runner, get_backend, list_backends, prepare_runner, register_backend

__all__ = ["Backend", "Runner", "get_backend", "list_backends", "prepare_runner", "register_backend"]
