"""PNG charts of model-benchmark rows (matplotlib, Agg): throughput vs batch per backend, batch-1
latency distribution, speed-up over eager fp32, and a roofline chart. Error rows are listed in a
chart's footnote, never silently left out."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fastrecon.bench._harness import Row


def _label(row: Row) -> str:
    return f"{row.get('backend')} {row.get('precision')}"


def _series_key(row: Row) -> str:
    return f"{row.get('model')} {row.get('shape')}"


def _footnote(fig: Any, rows: Sequence[Row]) -> None:
    failed = sorted({f"{_label(r)}: {str(r.get('error'))[:70]}" for r in rows if r.get("error")})
    first = rows[0] if rows else {}
    lines = [
        f"{first.get('device_name', '?')}, torch {first.get('torch', '?')}, {first.get('date_utc', '?')}"
    ]
    lines += [f"failed: {f}" for f in failed[:4]]
    fig.text(0.01, 0.01, "\n".join(lines), fontsize=6, va="bottom")
    fig.subplots_adjust(bottom=0.12 + 0.03 * min(len(failed), 4))


def _save(fig: Any, rows: Sequence[Row], path: Path) -> Path:
    """Footnote (device, versions, date, failures), write the PNG, free the figure."""
    _footnote(fig, rows)
    fig.savefig(path, dpi=110)
    _plt().close(fig)
    return path


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def throughput(rows: Sequence[Row], path: Path) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    lines: dict[tuple[str, str], list[tuple[int, float]]] = defaultdict(list)
    for r in rows:
        if r.get("slices_per_s"):
            lines[(_series_key(r), _label(r))].append((int(r["batch"]), float(r["slices_per_s"])))
    for (series, label), points in sorted(lines.items()):
        points.sort()
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=f"{label} ({series})")
    ax.set_xlabel("batch (slices per call)")
    ax.set_ylabel("throughput (slices/s)")
    ax.set_title("Throughput vs batch per backend")
    ax.set_xscale("log", base=2)
    ax.grid(alpha=0.3)
    if lines:
        ax.legend(fontsize=7)
    return _save(fig, rows, path)


def latency(rows: Sequence[Row], path: Path) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    data, labels = [], []
    seen = set()
    for r in rows:
        samples = r.get("lat_b1_samples_ms") or []
        key = (_series_key(r), _label(r))
        if samples and key not in seen:
            seen.add(key)
            data.append(samples)
            labels.append(f"{_label(r)}\n{_series_key(r)}")
    if data:
        ax.boxplot(data, whis=(1, 99))
        ax.set_xticks(range(1, len(labels) + 1), labels, fontsize=7)
    ax.set_ylabel("batch-1 latency (ms), whiskers p1..p99")
    ax.set_title("Latency distribution at batch 1")
    ax.grid(alpha=0.3, axis="y")
    return _save(fig, rows, path)


def speedup(rows: Sequence[Row], path: Path) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    bars = [
        (f"{_label(r)} b{r.get('batch')}\n{_series_key(r)}", float(r["speedup"]), r)
        for r in rows
        if r.get("speedup")
    ]
    if bars:
        colours = ["tab:green" if r.get("parity_passed") else "tab:red" for _, _, r in bars]
        ax.bar(range(len(bars)), [b[1] for b in bars], color=colours)
        ax.set_xticks(range(len(bars)), [b[0] for b in bars], fontsize=6)
        ax.axhline(1.0, color="black", lw=0.8)
    ax.set_ylabel("throughput / eager fp32 (same batch)")
    ax.set_title("Speed-up over eager fp32 (green: parity gate passed)")
    ax.grid(alpha=0.3, axis="y")
    return _save(fig, rows, path)


def roofline(rows: Sequence[Row], path: Path) -> Path:
    """Achieved FLOP/s vs arithmetic intensity (model FLOPs / DC bytes per slice) under the measured
    compute peak and copy bandwidth of the first row's device."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    points = [r for r in rows if r.get("achieved_tflops") and r.get("dc_bytes_per_slice")]
    if points:
        # One roof per precision: its GEMM peak measured in the same run, and the copy bandwidth.
        peaks = {str(r.get("precision")): float(r["peak_tflops"]) * 1e12 for r in points}
        bandwidth = float(points[0]["copy_gbps"]) * 1e9
        intensities = [float(r["flops_per_slice"]) / float(r["dc_bytes_per_slice"]) for r in points]
        knees = [p / bandwidth for p in peaks.values()]
        lo, hi = min(intensities + knees) / 10, max(intensities + knees) * 10
        xs = [lo * (hi / lo) ** (i / 100) for i in range(101)]
        for style, (precision, peak) in zip(("-", "--", ":", "-."), sorted(peaks.items()), strict=False):
            ax.plot(xs, [min(peak, bandwidth * x) for x in xs], color="black", lw=1, ls=style,
                    label=f"roof {precision} ({peak / 1e12:.2g} TFLOP/s, {bandwidth / 1e9:.0f} GB/s)")  # fmt: skip
        for r, x in zip(points, intensities, strict=True):
            ax.scatter(
                [x],
                [float(r["achieved_tflops"]) * 1e12],
                label=f"{_label(r)} b{r.get('batch')} ({_series_key(r)})",
            )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.legend(fontsize=6)
    ax.set_xlabel("FLOPs per DC byte (per slice)")
    ax.set_ylabel("achieved FLOP/s (whole model)")
    ax.set_title("Roofline: end-to-end rate against measured peak and copy bandwidth")
    ax.grid(alpha=0.3, which="both")
    return _save(fig, rows, path)


def write_all(rows: Sequence[Row], out_dir: Path, name: str) -> list[Path]:
    """The four charts as ``{name}-{throughput,latency,speedup,roofline}.png`` in ``out_dir``."""
    out_dir = Path(out_dir)
    return [
        throughput(rows, out_dir / f"{name}-throughput.png"),
        latency(rows, out_dir / f"{name}-latency.png"),
        speedup(rows, out_dir / f"{name}-speedup.png"),
        roofline(rows, out_dir / f"{name}-roofline.png"),
    ]
