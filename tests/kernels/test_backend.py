"""`fastrecon.load(..., backend="triton")`: the public path to the kernels, against the eager reference."""

from __future__ import annotations

import math

import pytest
import torch

import fastrecon
from fastrecon import register
from fastrecon.errors import BackendUnavailableError
from fastrecon.kernels import dc
from fastrecon.registry import _REGISTRY
from tests.helpers import masked_kspace, tiny_vit_config

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def test_triton_backend_matches_eager_through_the_api() -> None:
    config = tiny_vit_config("test-triton-backend", cascades=2)
    register(config, overwrite=True)
    try:
        eager = fastrecon.load(config.name, weights=None, device=DEVICE)
        torch.manual_seed(1)
        with torch.no_grad():  # random heads, so the cascades do real work
            for param in eager.model.parameters():
                if param.requires_grad and bool((param == 0).all()):
                    param.normal_(0, 0.05)
        fused = fastrecon.load(config.name, weights=None, device=DEVICE, backend="triton")
        fused.model.load_state_dict(eager.model.state_dict())
        k, mask = masked_kspace(num=2, coils=3, height=16, width=12, accel=3, acs=4)
        before = sum(dc.LAUNCHES.values())
        got = fused.reconstruct(k.to(DEVICE), mask)
        assert sum(dc.LAUNCHES.values()) > before, "the Triton kernels did not run"
        expected = eager.reconstruct(k.to(DEVICE), mask)
        mse = float((got.double() - expected.double()).pow(2).mean())
        psnr = math.inf if mse == 0 else 10 * math.log10(float(expected.max()) ** 2 / mse)
        assert psnr >= 60.0, psnr
    finally:
        _REGISTRY.pop(config.name, None)


def test_triton_backend_refuses_cpu_without_interpreter(monkeypatch: pytest.MonkeyPatch) -> None:
    if torch.cuda.is_available():
        pytest.skip("CUDA present: the backend is available")
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(BackendUnavailableError, match="TRITON_INTERPRET=1"):
        fastrecon.load("demo-x8", device="cpu", backend="triton")
