"""The data-consistency benchmark (``fastrecon.bench.dc``): it refuses to run without a GPU unless asked
for the interpreter mode, its harness runs end to end in that mode, and its baselines and byte models
are right. (Moved here from tests/kernels/test_dc_bench.py: bench/x.py <-> tests/bench/test_x.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from fastrecon.bench import _dc_baselines as B
from fastrecon.bench import _fastmri_ref as fm
from fastrecon.bench import dc as bench
from fastrecon.bench._harness import PROVENANCE_FIELDS
from fastrecon.kernels import dc as kernels


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU refusal")
def test_refuses_without_gpu(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.main([]) == 2
    assert "needs a CUDA GPU" in capsys.readouterr().err


@pytest.mark.skipif(not kernels._INTERPRETED, reason="interpreter mode only (kernels compiled for CUDA here)")
def test_interpret_mode_runs_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = [
        "--interpret",
        "--iters",
        "1",
        "--warmup",
        "0",
        "--batch",
        "1",
        "--no-compile",
        "--out",
        str(tmp_path),
    ]
    assert bench.main(args) == 0
    table = capsys.readouterr().out
    assert "c-triton" in table
    result = json.loads((tmp_path / "bench-dc.json").read_text())
    rows = result["rows"]
    assert all(set(PROVENANCE_FIELDS) <= set(r) for r in rows)
    fused = [r for r in rows if r["impl"] == "c-triton" and r["op"] == "cascade_step"]
    assert fused and all(r["error"] is None and r["max_rel_err"] < 1e-5 for r in fused)
    hybrid = [r for r in rows if r["impl"] == "b-hybrid"]
    assert hybrid and all(r["error"] is None and r["max_rel_err"] < 1e-5 for r in hybrid)
    # Rows that cannot run here are reported with their error, not dropped.
    assert any(r["impl"] == "c-triton (graph)" and r["error"] for r in rows)
    assert {r["mask"] for r in rows if r.get("mask")} == set(bench.MASKS)
    assert (tmp_path / "bench-dc.csv").is_file()


def test_cine_shape_is_coils_readout_phase() -> None:
    assert bench.SCENARIOS["cine"] == (10, 512, 246)


def test_byte_counts() -> None:
    e = 15 * 640 * 368 * 8
    img = 640 * 368 * 8
    assert B.io_bytes("cascade_step", 1, 15, 640, 368) == 4 * e + 2 * img
    # 2-D FFTs count two passes (4E each); k0 read by sectors.
    assert B.triton_model_bytes("cascade_step", 1, 15, 640, 368, sectors=0.0) == 15 * e + 2 * img
    assert B.triton_model_bytes("cascade_step", 1, 15, 640, 368, sectors=1.0) == 16 * e + 2 * img


def test_sector_fraction() -> None:
    mask = torch.zeros(16, dtype=torch.bool)
    assert B.sector_fraction(mask) == 0.0
    mask[::8] = True  # columns 0 and 8: sectors 0 and 2 of 4
    assert B.sector_fraction(mask) == 0.5
    mask[:] = True
    assert B.sector_fraction(mask) == 1.0
    assert B.sector_fraction(torch.ones(6, dtype=torch.bool)) == 1.0  # padded last sector


def test_centred_dft_matrix_is_fft2c() -> None:
    x = torch.randn(2, 3, 7, 6, dtype=torch.complex64)
    f_h = B.centred_dft_matrix(7, torch.device("cpu"))
    f_w_t = B.centred_dft_matrix(6, torch.device("cpu")).T
    torch.testing.assert_close(
        B.dft_gemm_fft2c(x, f_h, f_w_t),
        kernels.sens_expand_ref(torch.ones(2, 7, 6, dtype=torch.complex64), x),
        rtol=1e-5,
        atol=1e-5,
    )


@pytest.mark.parametrize("shape", [(2, 3, 8, 6), (1, 2, 9, 7), (1, 2, 8, 10)])
def test_baselines_match_the_reference(shape: tuple[int, int, int, int]) -> None:
    """fastMRI's arithmetic, the best torch, and the hybrid-space form equal the complex128 reference."""
    n, c, h, w = shape
    gen = torch.Generator().manual_seed(0)
    k, k0, s = (torch.randn(n, c, h, w, dtype=torch.complex128, generator=gen) for _ in range(3))
    img = torch.randn(n, h, w, dtype=torch.complex128, generator=gen)
    mask = torch.rand(w, generator=gen) < 0.5
    wt = torch.tensor([0.7], dtype=torch.float64)
    want_k, want_x = kernels.cascade_step_ref(k, k0, mask, wt, s, img)
    r = torch.view_as_real
    got = fm.cascade_step(r(k), r(k0), mask.reshape(1, 1, 1, w, 1), wt, r(s), r(img))
    torch.testing.assert_close(torch.view_as_complex(got[0]), want_k)
    torch.testing.assert_close(torch.view_as_complex(got[1].contiguous()), want_x)
    k64, k064, s64, img64 = (t.to(torch.complex64) for t in (k, k0, s, img))
    best = B.BestTorch(h, w, torch.device("cpu")).cascade_step(k64, k064, mask, wt.float(), s64, img64)
    torch.testing.assert_close(best[0], want_k.to(torch.complex64), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(best[1], want_x.to(torch.complex64), rtol=1e-4, atol=1e-4)
    hybrid = B.HybridTorch(w, torch.device("cpu"))
    hk, hx = hybrid.cascade_step(hybrid.to_hybrid(k), hybrid.to_hybrid(k0), mask, wt, s, img)
    torch.testing.assert_close(hybrid.to_kspace(hk), want_k)
    torch.testing.assert_close(hx, want_x)
