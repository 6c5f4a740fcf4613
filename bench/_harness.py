"""The one small benchmark harness every ``fastrecon.bench`` script uses (after Liger-Kernel's
``benchmark/scripts/utils.py``): a timer, quantiles, peak memory, provenance, rows with an ``error``
column, and CSV/JSON writing.

- Timing: CUDA events around every run on GPU, with L2 evicted before each run by *reading* a buffer
  larger than L2 (a ``zero_()`` would leave dirty lines that are written back inside the timed
  window); ``time.perf_counter`` on CPU. Warm-up runs first, then ``iters`` timed runs; quantiles
  p50/p90/p99 (linear interpolation, as ``numpy.percentile``).
- Rows are plain dicts. :func:`attempt` runs one measurement and turns any exception into the row's
  ``error``: a backend that fails stays in the table with its error, it is never dropped.
- :func:`provenance` is added to every row: device, driver, CUDA, torch, Triton, ONNX Runtime,
  TensorRT (version or ``"absent"``), git commit, date, and on CPU the load average (timings on a
  shared machine are only as good as its load).
"""

from __future__ import annotations

import csv
import datetime as _dt
import functools
import importlib.metadata
import json
import math
import os
import platform
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

Row = dict[str, Any]
Fn = Callable[[], Any]

ABSENT = "absent"
_L2_FLUSH_BYTES = 256 << 20  # > the 50-60 MB L2 of H100/H200


# ----------------------------------------------------------------------------------------------------
# Quantiles and timing
# ----------------------------------------------------------------------------------------------------


def quantile(samples: Sequence[float], q: float) -> float:
    """The ``q``-quantile (0..1) of ``samples`` with linear interpolation (``numpy.percentile``'s default)."""
    if not samples:
        raise ValueError("quantile of no samples")
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile q={q!r} is outside [0, 1]")
    ordered = sorted(samples)
    pos = q * (len(ordered) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


@dataclass(frozen=True)
class Timing:
    """Quantiles of ``runs`` timed runs, in milliseconds; ``method`` says how they were timed."""

    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    min_ms: float
    max_ms: float
    runs: int
    method: str
    samples_ms: tuple[float, ...] = ()

    @classmethod
    def of(cls, samples_ms: Sequence[float], method: str) -> Timing:
        return cls(
            samples_ms=tuple(samples_ms),
            p50_ms=quantile(samples_ms, 0.5),
            p90_ms=quantile(samples_ms, 0.9),
            p99_ms=quantile(samples_ms, 0.99),
            mean_ms=sum(samples_ms) / len(samples_ms),
            min_ms=min(samples_ms),
            max_ms=max(samples_ms),
            runs=len(samples_ms),
            method=method,
        )

    def as_row(self, prefix: str) -> Row:
        """``{prefix}_p50_ms, ...``: the fields a result row carries (not the samples)."""
        return {f"{prefix}_{k}": v for k, v in asdict(self).items() if k != "samples_ms"}


@functools.cache
def _flush_buffer(index: int) -> torch.Tensor:
    return torch.ones(_L2_FLUSH_BYTES // 4, dtype=torch.float32, device=torch.device("cuda", index))


def flush_l2(device: torch.device) -> None:
    """Evict L2 by reading a buffer larger than it (reads leave no dirty lines to write back later)."""
    if device.type == "cuda":
        _flush_buffer(device.index if device.index is not None else torch.cuda.current_device()).sum()


def time_fn(
    fn: Fn,
    device: torch.device | str,
    *,
    warmup: int = 3,
    iters: int = 20,
    flush: bool = True,
    max_seconds: float | None = None,
) -> Timing:
    """Time ``fn()`` after ``warmup`` untimed calls: ``iters`` timed runs (fewer if ``max_seconds``
    of timed runs have passed, at least 3). GPU: CUDA events per run, L2 read-flushed before each
    run unless ``flush=False``; CPU: ``time.perf_counter``."""
    device = torch.device(device)
    for _ in range(warmup):
        fn()
    samples: list[float] = []
    began = time.perf_counter()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        for _ in range(iters):
            if flush:
                flush_l2(device)
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            samples.append(start.elapsed_time(end))
            if max_seconds is not None and len(samples) >= 3 and time.perf_counter() - began > max_seconds:
                break
        method = "cuda events" + (", L2 read-flushed" if flush else "")
    else:
        for _ in range(iters):
            t0 = time.perf_counter()
            fn()
            samples.append((time.perf_counter() - t0) * 1e3)
            if max_seconds is not None and len(samples) >= 3 and time.perf_counter() - began > max_seconds:
                break
        method = "perf_counter"
    return Timing.of(samples, method)


def time_once(fn: Fn, device: torch.device | str) -> tuple[Any, float]:
    """``(fn(), seconds)`` for one call, synchronised on GPU (first calls: compile, engine build)."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return out, time.perf_counter() - t0


# ----------------------------------------------------------------------------------------------------
# Peak memory
# ----------------------------------------------------------------------------------------------------


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm", encoding="ascii") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


@dataclass
class PeakMemory:
    """Filled by :func:`peak_memory`: peak bytes above the level at entry, and how it was measured."""

    bytes: int = 0
    method: str = ""

    @property
    def mb(self) -> float:
        return self.bytes / 2**20


@contextmanager
def peak_memory(device: torch.device | str) -> Iterator[PeakMemory]:
    """Peak memory of the block: CUDA ``max_memory_allocated`` above the allocation at entry; on CPU
    the process RSS sampled every 2 ms above the RSS at entry (a lower bound: short peaks between
    samples are missed, and memory freed back to the allocator earlier is reused unseen)."""
    device = torch.device(device)
    result = PeakMemory()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        yield result
        torch.cuda.synchronize(device)
        result.bytes = torch.cuda.max_memory_allocated(device) - base
        result.method = "cuda max_memory_allocated - allocated at start"
        return
    base = _rss_bytes()
    peak = [base]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], _rss_bytes())
            stop.wait(0.002)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield result
    finally:
        stop.set()
        thread.join()
        peak[0] = max(peak[0], _rss_bytes())
        result.bytes = max(0, peak[0] - base)
        result.method = "cpu rss sampled every 2 ms - rss at start"


# ----------------------------------------------------------------------------------------------------
# Provenance
# ----------------------------------------------------------------------------------------------------


def package_version(name: str) -> str:
    """The installed version of distribution ``name`` or ``"absent"`` (read from metadata: never
    imports the package, so a broken TensorRT install cannot raise here)."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return ABSENT


def _first_version(*names: str) -> str:
    for name in names:
        version = package_version(name)
        if version != ABSENT:
            return version
    return ABSENT


@functools.cache
def git_commit() -> str:
    """``<sha>`` (``+dirty`` when the work tree has changes) of the source checkout, or ``"unknown"``."""
    root = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return sha + ("+dirty" if dirty else "") if sha else "unknown"


@functools.cache
def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@functools.cache
def _nvidia_driver() -> str:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ABSENT
    return out.splitlines()[0] if out else ABSENT


def load_average() -> str:
    """The 1/5/15-minute load averages, e.g. ``"1.02 0.87 0.80"`` (``"unknown"`` where unsupported)."""
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def provenance(device: torch.device | str) -> Row:
    """Where and with what a row was measured. Every version is a string, ``"absent"`` when not installed."""
    device = torch.device(device)
    cuda = device.type == "cuda"
    return {
        "device_name": torch.cuda.get_device_name(device) if cuda else f"CPU: {_cpu_name()}",
        "device_type": device.type,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "driver": _nvidia_driver() if cuda else ABSENT,
        "cuda": torch.version.cuda or ABSENT,
        "torch": torch.__version__,
        "triton": package_version("triton"),
        "onnxruntime": _first_version("onnxruntime", "onnxruntime-gpu"),
        "tensorrt": _first_version("tensorrt", "tensorrt-cu12", "tensorrt_cu12"),
        "torch_tensorrt": package_version("torch-tensorrt"),
        "fastrecon": package_version("fastrecon"),
        "python": platform.python_version(),
        "git_commit": git_commit(),
        "date_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "load_avg": load_average(),
    }


PROVENANCE_FIELDS = (  # the keys of provenance(); a test keeps them in sync
    "device_name",
    "device_type",
    "cpu_count",
    "torch_threads",
    "driver",
    "cuda",
    "torch",
    "triton",
    "onnxruntime",
    "tensorrt",
    "torch_tensorrt",
    "fastrecon",
    "python",
    "git_commit",
    "date_utc",
    "load_avg",
)


# ----------------------------------------------------------------------------------------------------
# Rows: errors kept, CSV / JSON
# ----------------------------------------------------------------------------------------------------


def error_text(exc: BaseException, limit: int = 500) -> str:
    """``"TypeName: message"`` on one line, at most ``limit`` characters."""
    text = f"{type(exc).__name__}: {exc}".replace("\n", " ").strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."


def attempt(row: Row, fn: Callable[[], Row | None]) -> Row:
    """Run ``fn`` (which returns more fields, or fills ``row`` itself); any exception becomes the
    row's ``error``. The row is returned either way, so the caller always appends it."""
    row.setdefault("error", None)
    try:
        more = fn()
    except Exception as exc:  # noqa: BLE001 - a failing backend stays in the table with its error
        row["error"] = error_text(exc)
        return row
    if more:
        row.update(more)
    return row


@dataclass
class Table:
    """Rows of one benchmark run, each with the run's provenance."""

    benchmark: str
    device: torch.device
    rows: list[Row]

    def __init__(self, benchmark: str, device: torch.device | str) -> None:
        self.benchmark = benchmark
        self.device = torch.device(device)
        self.rows = []

    def add(self, row: Row) -> Row:
        """Append ``row`` with ``benchmark``, an ``error`` column and provenance (its own fields win)."""
        full = {"benchmark": self.benchmark, **row}
        full.setdefault("error", None)
        for key, value in provenance(self.device).items():
            full.setdefault(key, value)
        self.rows.append(full)
        return full

    def run(self, row: Row, fn: Callable[[], Row | None]) -> Row:
        """:func:`attempt` then :meth:`add`: measured or failed, the row lands in the table."""
        return self.add(attempt(row, fn))


def columns(rows: Iterable[Row]) -> list[str]:
    """Union of the rows' keys in order of first appearance."""
    seen: dict[str, None] = {}
    for row in rows:
        for key in row:
            seen.setdefault(key, None)
    return list(seen)


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # "inf", "-inf", "nan": strict JSON has no such numbers
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, torch.device | torch.dtype | Path):
        return str(value)
    return value


def _json_restore(value: Any) -> Any:
    if isinstance(value, str) and value in ("inf", "-inf", "nan"):
        return float(value)
    if isinstance(value, dict):
        return {k: _json_restore(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_restore(v) for v in value]
    return value


def write_json(path: str | Path, rows: Sequence[Row], meta: Row | None = None) -> Path:
    """``{"meta": ..., "rows": [...]}``; non-finite floats are written as the strings "inf"/"nan"."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"meta": _json_safe(meta or {}), "rows": [_json_safe(r) for r in rows]}
    path.write_text(json.dumps(payload, indent=1, allow_nan=False) + "\n", encoding="utf-8")
    return path


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict | list | tuple):
        return json.dumps(_json_safe(value), sort_keys=True)
    if isinstance(value, float):
        return repr(value)  # round-trips exactly
    return str(value)


def write_csv(path: str | Path, rows: Sequence[Row]) -> Path:
    """One line per row, the union of the rows' columns; ``None`` is an empty cell, dicts are JSON."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cols = columns(rows)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(cols)
        for row in rows:
            writer.writerow([_csv_cell(row.get(c)) for c in cols])
    return path


def _parse_cell(text: str) -> Any:
    if text == "":
        return None
    if text in ("True", "False"):
        return text == "True"
    if text[0] in "{[":
        try:
            return _json_restore(json.loads(text))
        except json.JSONDecodeError:
            return text
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def read_rows(path: str | Path) -> list[Row]:
    """Rows from a file written by :func:`write_json` or :func:`write_csv`."""
    path = Path(path)
    if path.suffix == ".json":
        payload = json.loads(path.read_text(encoding="utf-8"))
        rows = payload["rows"] if isinstance(payload, dict) else payload
        return [_json_restore(r) for r in rows]
    with path.open(newline="", encoding="utf-8") as fh:
        return [{k: _parse_cell(v) for k, v in row.items()} for row in csv.DictReader(fh)]


def read_meta(path: str | Path) -> Row:
    """The ``meta`` block of a JSON result file (empty for CSV)."""
    path = Path(path)
    if path.suffix != ".json":
        return {}
    payload = json.loads(path.read_text(encoding="utf-8"))
    return _json_restore(payload.get("meta", {})) if isinstance(payload, dict) else {}


# ----------------------------------------------------------------------------------------------------
# Text table
# ----------------------------------------------------------------------------------------------------


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if value == 0:
            return "0"
        magnitude = abs(value)
        if magnitude >= 100:
            return f"{value:.0f}"
        if magnitude >= 1:
            return f"{value:.2f}"
        if magnitude >= 1e-3:
            return f"{value:.4f}"
        return f"{value:.1e}"
    return str(value)


def format_table(rows: Sequence[Row], cols: Sequence[str], max_width: int = 60) -> str:
    """A plain-text table of ``cols`` (missing values shown as ``-``; long cells cut at ``max_width``)."""
    cells = [[_fmt(r.get(c))[:max_width] for c in cols] for r in rows]
    widths = [max([len(c)] + [len(line[i]) for line in cells]) for i, c in enumerate(cols)]
    out = ["  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True))]
    out.append("  ".join("-" * w for w in widths))
    out.extend("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)) for line in cells)
    return "\n".join(out)
