"""`fastrecon.load(..., backend="triton")`: the public path to the kernels, against the eager reference."""

from __future__ import annotations

import pytest
import torch

import fastrecon
from fastrecon import parity
from fastrecon.errors import BackendUnavailableError
from fastrecon.kernels import dc
from tests.helpers import load_unregistered, masked_kspace, seed_nonzero_heads, tiny_vit_config, zero_filled

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@pytest.fixture(scope="module")
def eager() -> fastrecon.Reconstructor:
    recon = load_unregistered(tiny_vit_config("test-triton-backend", cascades=2), device=DEVICE)
    assert seed_nonzero_heads(recon.model) == 2
    return recon


@pytest.mark.parametrize(
    ("dc_form", "mask_kind", "kernels", "name"),
    [
        ("auto", "columns", ("residual_x", "residual_rho"), "auto:residual-triton"),
        ("residual", "columns", ("residual_x", "residual_rho"), "residual-triton"),
        ("2d", "columns", ("expand", "dc", "reduce"), "2d-triton"),
        ("auto", "2d", ("expand", "dc", "reduce"), "auto:residual-triton"),
    ],
)
def test_triton_backend_passes_the_fp32_gate(
    eager: fastrecon.Reconstructor, dc_form: str, mask_kind: str, kernels: tuple[str, ...], name: str
) -> None:
    k, mask = masked_kspace(num=2, coils=3, height=16, width=12, accel=3, acs=4)
    if mask_kind == "2d":
        mask = mask.unsqueeze(0).expand(16, 12).clone()
        mask[::3, 0] = True  # a point that is not a whole column: the 2-D kernels must run
    k = (k * mask).to(DEVICE)
    assert parity.compare(eager.reconstruct(k, mask), zero_filled(k.cpu())).psnr_db < 60
    fused = eager.with_backend("triton", dc=dc_form)
    assert fused.info()["dc"] == name
    before = {key: dc.LAUNCHES[key] for key in kernels}
    got = fused.reconstruct(k, mask)
    assert all(dc.LAUNCHES[key] > before[key] for key in kernels), f"kernels {kernels} did not run"
    report = parity.compare(got, eager.reconstruct(k, mask))
    assert report.passed and not report.bit_identical, report


def test_triton_backend_refuses_cpu_without_interpreter(monkeypatch: pytest.MonkeyPatch) -> None:
    if torch.cuda.is_available():
        pytest.skip("CUDA present: the backend is available")
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(BackendUnavailableError, match="TRITON_INTERPRET=1"):
        fastrecon.load("demo-x8", device="cpu", backend="triton")
