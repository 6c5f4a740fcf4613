"""The shared benchmark harness: quantiles, timing, errors kept as rows, provenance, CSV/JSON."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from fastrecon.bench import _harness as H


@pytest.mark.parametrize("n", [1, 2, 7, 50, 101])
def test_quantiles_match_numpy(n: int) -> None:
    samples = list(np.random.default_rng(n).exponential(size=n))
    for q in (0.0, 0.5, 0.9, 0.99, 1.0):
        assert H.quantile(samples, q) == pytest.approx(float(np.percentile(samples, 100 * q)))
    timing = H.Timing.of(samples, "test")
    assert (
        timing.runs == n and timing.min_ms <= timing.p50_ms <= timing.p90_ms <= timing.p99_ms <= timing.max_ms
    )


def test_quantile_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        H.quantile([], 0.5)
    with pytest.raises(ValueError):
        H.quantile([1.0], 1.5)


def test_time_fn_counts_runs_and_warmup() -> None:
    calls = []
    timing = H.time_fn(lambda: calls.append(1), "cpu", warmup=2, iters=5)
    assert len(calls) == 7 and timing.runs == 5 and timing.method == "perf_counter"
    assert len(timing.samples_ms) == 5 and "samples_ms" not in timing.as_row("x")
    assert set(timing.as_row("lat")) >= {"lat_p50_ms", "lat_p90_ms", "lat_p99_ms", "lat_runs"}


def test_time_fn_stops_after_max_seconds() -> None:
    timing = H.time_fn(lambda: torch.ones(1), "cpu", warmup=0, iters=10_000, max_seconds=0.0)
    assert timing.runs == 3  # at least 3 runs, then the cap


def test_a_failing_backend_stays_in_the_table_with_its_error() -> None:
    table = H.Table("unit", "cpu")

    def broken() -> H.Row:
        raise RuntimeError("engine build failed\nsecond line")

    table.run({"backend": "good"}, lambda: {"p50_ms": 1.0})
    row = table.run({"backend": "broken"}, broken)
    assert [r["backend"] for r in table.rows] == ["good", "broken"]
    assert table.rows[0]["error"] is None and table.rows[0]["p50_ms"] == 1.0
    assert row["error"] == "RuntimeError: engine build failed second line"
    assert set(H.PROVENANCE_FIELDS) <= set(row)  # failed rows carry provenance too


def test_keyboard_interrupt_is_not_swallowed() -> None:
    def interrupted() -> H.Row:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        H.attempt({}, interrupted)


def test_provenance_fields() -> None:
    info = H.provenance("cpu")
    assert tuple(info) == H.PROVENANCE_FIELDS
    assert info["torch"] == torch.__version__
    assert info["device_name"].startswith("CPU")
    assert info["driver"] == "absent"  # no GPU driver recorded for a CPU row
    for key in ("triton", "onnxruntime", "tensorrt", "torch_tensorrt"):
        assert isinstance(info[key], str) and info[key]  # a version or "absent"
    assert H.package_version("surely-not-a-package-xyz") == "absent"
    assert info["git_commit"] != ""
    assert len(info["load_avg"].split()) == 3
    assert info["date_utc"].endswith("+00:00")


def test_csv_and_json_round_trip(tmp_path: Path) -> None:
    rows = [
        {
            "a": 1,
            "b": 0.1 + 0.2,
            "c": "text, with comma",
            "d": None,
            "e": True,
            "f": {"x": [1, 2]},
            "g": math.inf,
        },
        {"a": 2, "h": "only here", "error": "ValueError: boom"},
    ]
    json_rows = H.read_rows(H.write_json(tmp_path / "r.json", rows, {"note": "meta"}))
    assert json_rows[0] == rows[0] and json_rows[1] == rows[1]
    assert H.read_meta(tmp_path / "r.json") == {"note": "meta"}
    assert "Infinity" not in (tmp_path / "r.json").read_text()  # strict JSON
    csv_rows = H.read_rows(H.write_csv(tmp_path / "r.csv", rows))
    cols = H.columns(rows)
    assert list(csv_rows[0]) == cols
    assert csv_rows[0] == {**{c: None for c in cols}, **rows[0]}
    assert csv_rows[1] == {**{c: None for c in cols}, **rows[1]}


def test_peak_memory_on_cpu() -> None:
    with H.peak_memory("cpu") as peak:
        block = torch.ones(64 << 20, dtype=torch.uint8)
        block += 1
        del block
    assert peak.method.startswith("cpu rss") and peak.bytes >= 0


def test_format_table_shows_missing_values_and_errors() -> None:
    text = H.format_table([{"a": 1.5, "error": None}, {"a": None, "error": "X: y"}], ["a", "error"])
    assert "1.50" in text and "X: y" in text and "-" in text
