"""fastrecon: fast deployment of accelerated multicoil MRI reconstruction.

``fastrecon.load("clip-x8").reconstruct(kspace)`` returns the image. Importing this package is light:
no CUDA initialisation, no Triton/TensorRT import, no network.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastrecon.errors import FastreconError
from fastrecon.registry import ModelConfig, get_config, list_models, register

__version__ = "0.1.0"

if TYPE_CHECKING:
    from fastrecon.api import Reconstructor, load


def __getattr__(name: str) -> Any:
    # The API pulls in torch models; import it on first use only.
    if name in ("load", "Reconstructor"):
        from fastrecon import api

        return getattr(api, name)
    if name == "parity":
        import importlib

        return importlib.import_module("fastrecon.parity")
    raise AttributeError(f"module 'fastrecon' has no attribute {name!r}")


__all__ = [
    "FastreconError",
    "ModelConfig",
    "Reconstructor",
    "__version__",
    "get_config",
    "list_models",
    "load",
    "register",
]
