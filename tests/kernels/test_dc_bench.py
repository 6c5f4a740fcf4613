"""The data-consistency benchmark (``fastrecon.bench.dc``): it refuses to run without a GPU unless
asked for the interpreter mode, and its harness runs end to end in that mode."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from fastrecon.bench import dc as bench
from fastrecon.kernels import dc as kernels


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU refusal")
def test_refuses_without_gpu(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.main([]) == 2
    assert "needs a CUDA GPU" in capsys.readouterr().err


@pytest.mark.skipif(not kernels._INTERPRETED, reason="interpreter mode only (kernels compiled for CUDA here)")
def test_interpret_mode_runs_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "dc.json"
    assert bench.main(["--interpret", "--iters", "1", "--warmup", "0", "--json", str(out)]) == 0
    table = capsys.readouterr().out
    assert "torch" in table and "triton" in table and "c-triton" in table
    result = json.loads(out.read_text())
    assert {"date_utc", "device", "torch", "triton", "copy_bandwidth_GBps"} <= set(result["provenance"])
    rows = result["rows"]
    fused = [r for r in rows if r["impl"] == "c-triton" and r["op"] == "cascade_step"]
    assert fused and all(r["error"] is None and r["max_rel_err"] < 1e-5 for r in fused)
    # Rows that cannot run here are reported with their error, not dropped.
    assert any(r["impl"] == "c-triton (graph)" and r["error"] for r in rows)


def test_byte_counts() -> None:
    e = 15 * 640 * 368 * 8
    img = 640 * 368 * 8
    assert bench.io_bytes("cascade_step", 1, 15, 640, 368) == 4 * e + 2 * img
    assert bench.triton_model_bytes("cascade_step", 1, 15, 640, 368, sampled=0.0) == 11 * e + 2 * img
    assert bench.triton_model_bytes("cascade_step", 1, 15, 640, 368, sampled=1.0) == 12 * e + 2 * img


def test_centred_dft_matrix_is_fft2c() -> None:
    x = torch.randn(2, 3, 7, 6, dtype=torch.complex64)
    f_h = bench.centred_dft_matrix(7, torch.device("cpu"))
    f_w_t = bench.centred_dft_matrix(6, torch.device("cpu")).T
    torch.testing.assert_close(
        bench.dft_gemm_fft2c(x, f_h, f_w_t),
        kernels.sens_expand_ref(torch.ones(2, 7, 6, dtype=torch.complex64), x),
        rtol=1e-5,
        atol=1e-5,
    )
