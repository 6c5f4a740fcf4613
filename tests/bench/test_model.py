"""The model benchmark and ``fastrecon bench`` on a tiny config: seconds, not minutes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from fastrecon.bench import _harness as H
from fastrecon.bench import model as M
from fastrecon.bench import report
from fastrecon.cli import main as cli_main


def test_masks_and_shapes() -> None:
    mask = M.mask_for("equispaced-x8", 128)
    assert mask.shape == (128,) and mask.dtype == torch.bool
    assert 12 <= int(mask.sum()) <= 20  # about W/R, centre included
    assert int(M.mask_for("random-x4", 246).sum()) > int(M.mask_for("random-x10", 246).sum())
    assert M.shape_of("cine") == (10, 512, 246) and M.shape_of("knee") == (15, 640, 368)
    assert M.shape_of("brain") == (16, 640, 320) and M.shape_of("demo") == (8, 128, 128)
    assert M.shape_of("4x20x16") == (4, 20, 16)
    with pytest.raises(Exception, match="unknown shape"):
        M.shape_of("elbow")
    with pytest.raises(Exception, match="unknown mask"):
        M.mask_for("poisson-x8", 16)


def test_inputs_are_random_and_masked() -> None:
    mask = M.mask_for("equispaced-x8", 32)
    k = M.random_kspace(2, (3, 8, 32), mask)
    assert bool((k[..., ~mask] == 0).all()) and bool((k[..., mask] != 0).all())


def test_seeded_heads_are_non_zero_and_reproducible() -> None:
    a = M.load_reference("bench-tiny-vit", "random", "cpu", seed=3)
    b = M.load_reference("bench-tiny-vit", "random", "cpu", seed=3)
    heads = [c.denoiser.head.weight for c in a.model.cascades]
    assert all(bool(h.abs().sum() > 0) for h in heads)
    torch.testing.assert_close(heads[0], b.model.cascades[0].denoiser.head.weight, rtol=0, atol=0)
    assert M.seed_heads(M.load_reference("bench-tiny-varnet", "random", "cpu").model) == 0


def test_matrix_puts_the_reference_first() -> None:
    rows = M.matrix(["m"], ["compile", "eager"], ["fp32", "bf16"], [1, 4], ["demo"])
    assert rows[0].backend == "eager" and rows[0].precision == "fp32" and rows[0].batch == 1
    assert len(rows) == 8 and len(set(rows)) == 8


def test_failing_backends_and_bad_references_become_error_rows() -> None:
    settings = M.Settings(throughput_iters=1, latency_iters=2, warmup=0, roofline=False, components=False)
    scenarios = [
        M.Scenario("bench-tiny-vit", "eager", "fp32", 1, "tiny"),
        M.Scenario("bench-tiny-vit", "no-such-backend", "fp32", 1, "tiny"),
        M.Scenario("bench-tiny-vit", "eager", "fp8", 1, "tiny"),
        M.Scenario("no-such-model", "eager", "fp32", 1, "tiny"),
    ]
    rows = M.run(scenarios, settings)
    assert len(rows) == 4
    assert rows[0]["error"] is None and rows[0]["parity_passed"] is True
    assert "UnknownNameError" in rows[1]["error"] and "UnknownNameError" in rows[2]["error"]
    assert rows[3]["error"].startswith("reference: UnknownNameError")
    assert all(set(H.PROVENANCE_FIELDS) <= set(r) for r in rows)


def test_fastrecon_bench_tiny_run_writes_json_csv_png(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [
        "bench", "--model", "bench-tiny-vit", "--shape", "tiny", "--batch", "2",
        "--backend", "eager,no-such-backend", "--precision", "fp32,bf16",
        "--iters", "2", "--latency-iters", "3", "--warmup", "1", "--threads", "1", "--out", str(tmp_path),
    ]  # fmt: skip
    (tmp_path / "unrelated.txt").write_text("kept")
    assert cli_main(args) == 0
    out = capsys.readouterr().out
    assert "slices_per_s" in out and "no-such-backend" in out
    for name in (
        "bench.json",
        "bench.csv",
        "bench-throughput.png",
        "bench-latency.png",
        "bench-speedup.png",
        "bench-roofline.png",
    ):
        assert (tmp_path / name).stat().st_size > 0, name
    assert (tmp_path / "unrelated.txt").read_text() == "kept"
    rows = H.read_rows(tmp_path / "bench.json")
    assert [(r["backend"], r["precision"]) for r in rows] == [
        ("eager", "fp32"), ("eager", "bf16"), ("no-such-backend", "fp32"), ("no-such-backend", "bf16")
    ]  # fmt: skip
    ok = [r for r in rows if not r["error"]]
    assert len(ok) == 2 and all(r["backend"] == "eager" for r in ok)
    for r in ok:
        for key in ("slices_per_s", "lat_b1_p50_ms", "lat_b1_p90_ms", "lat_b1_p99_ms", "parity_psnr_db",
                    "parity_nrmse", "parity_ssim_delta", "parity_max_abs", "parity_max_rel", "peak_mem_mb",
                    "compile_s", "floor_ms_per_slice", "frac_of_floor", "flops_per_slice", "speedup"):  # fmt: skip
            assert isinstance(r[key], float), key
        assert r["lat_b1_runs"] == 3 and r["info"]["backend"] == "eager"
        assert r["parity_passed"] is True
    assert ok[0]["parity_psnr_db"] == float("inf") and ok[0]["speedup"] == 1.0
    assert ok[1]["info"]["network_dtype"] == "bfloat16"
    # The failing backend stays in the table with its error (and its name in the error).
    assert all("UnknownNameError" in r["error"] for r in rows if r["backend"] == "no-such-backend")
    assert H.read_rows(tmp_path / "bench.csv")[2]["error"] == rows[2]["error"]
    meta = json.loads((tmp_path / "bench.json").read_text())["meta"]
    assert meta["scenarios"] == 4
    table = report.markdown(report.load([tmp_path / "bench.json"]))
    assert table.count("\n") == 1 + len(rows) and "| pass |" in table and "no-such-backend" in table


def test_matrix_backend_with_one_precision() -> None:
    rows = M.matrix(["m"], ["eager", "compile:fp16", "tensorrt:fp16"], ["fp32"], [1], ["cine"])
    assert [(r.backend, r.precision) for r in rows] == [
        ("eager", "fp32"),
        ("compile", "fp16"),
        ("tensorrt", "fp16"),
    ]


def test_report_replaces_the_readme_table(tmp_path: Path) -> None:
    results = H.write_json(
        tmp_path / "r.json",
        [{"model": "m", "backend": "eager", "precision": "fp32", "batch": 1, "slices_per_s": 2.0,
          "device_name": "CPU: x", "date_utc": "2026-12-02T14:00:00+00:00", "error": None},
         {"model": "m", "backend": "onnxruntime", "precision": "fp32", "batch": 1, "error": "UnknownNameError: no"}],
    )  # fmt: skip
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{report.START}\nold table\n{report.END}\noutro\n")
    assert report.main([str(results), "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert "old table" not in text and text.startswith("intro\n") and text.endswith("outro\n")
    assert "| m | eager | fp32 | 1 | 2 | x | 2026-12-02 14:00 |" in text and "UnknownNameError: no" in text


def test_quick_is_one_batch_of_four_backends_on_cpu() -> None:
    """--quick: demo-x8 on CPU at batch 1 only (one torch.compile), eager/compile/bf16/onnxruntime."""
    import argparse

    from fastrecon.bench.cli import build_parser, scenarios_from_args

    args = build_parser(argparse.ArgumentParser()).parse_args(["--quick", "--out", "unused"])
    scenarios = scenarios_from_args(args)
    assert [(s.backend, s.precision) for s in scenarios] == [
        ("eager", "fp32"), ("compile", "fp32"), ("eager", "bf16"), ("onnxruntime", "fp32")
    ]  # fmt: skip
    assert {(s.model, s.batch, s.device, s.shape, s.weights) for s in scenarios} == {
        ("demo-x8", 1, "cpu", "demo", "auto")
    }


def test_batch_one_rows_time_throughput_and_latency_in_one_set_of_runs() -> None:
    settings = M.Settings(throughput_iters=7, latency_iters=4, warmup=0, roofline=False, components=False)
    (row,) = M.run([M.Scenario("bench-tiny-vit", "eager", "fp32", 1, "tiny")], settings)
    assert row["error"] is None
    assert row["tput_runs"] == row["lat_b1_runs"] == 4  # the latency count, stated in the row
    assert row["tput_p50_ms"] == row["lat_b1_p50_ms"]
    assert row["slices_per_s"] == pytest.approx(1e3 / row["lat_b1_p50_ms"])
