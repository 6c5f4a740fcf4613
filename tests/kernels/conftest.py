"""Kernel tests: run the Triton kernels in the CPU interpreter where there is no GPU.

Triton decides interpreted vs compiled when ``@triton.jit`` decorates, i.e. when
``fastrecon.kernels.dc`` is first imported, so ``TRITON_INTERPRET`` is set here, before any test
module of this directory imports the kernels. An explicit ``TRITON_INTERPRET`` from the environment
wins. With a GPU the same small-shape tests run compiled on CUDA instead.
"""

from __future__ import annotations

import os

import torch

if "TRITON_INTERPRET" not in os.environ and not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"

if torch.cuda.is_available():
    # The eager reference models use convolutions and matmuls: keep them in full fp32 so a TF32
    # rounding flip in the reference is not mistaken for a kernel error.
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
