"""Ahead-of-time backends for the frozen encoder (DESIGN.md sections 4 and 7).

- :mod:`fastrecon.export.encoder_export`: ``export_encoder`` -- ``torch.export`` of
  ``encoder.features`` with a dynamic batch, pruned, real dtypes only.
- :mod:`fastrecon.export.cache`: ``EngineCache`` / ``EngineKey`` -- built engines on disk under
  ``$FASTRECON_HOME/engines``, keyed by GPU, SM, TensorRT, CUDA, torch, Torch-TensorRT, precision,
  shapes and weights sha256; verified on load, written atomically.
- :mod:`fastrecon.export.tensorrt`: ``build_encoder_engine`` -- an FP16 (or FP32) TensorRT engine
  with no PyTorch fallback, usable in place of ``encoder.features``.

Nothing here imports TensorRT or initialises CUDA at import time; import the submodules directly.
"""
