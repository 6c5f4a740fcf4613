"""``fastrecon bench``: run model scenarios, write JSON, CSV and PNGs into a folder, print a table.

The command line (``fastrecon/cli.py``) only adds :func:`build_parser`'s arguments to its subparser
and calls :func:`run_cli`; everything else lives here.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # importing torch here would slow every `fastrecon` command's start
    from fastrecon.bench import _harness as H

OUTPUTS = (
    "{name}.json",
    "{name}.csv",
    "{name}-throughput.png",
    "{name}-latency.png",
    "{name}-speedup.png",
    "{name}-roofline.png",
)
"""The files one run writes into ``--out`` (``{name}`` from ``--name``); nothing else there is touched."""

QUICK = {
    "model": ["demo-x8"],
    "weights": "auto",
    "device": "cpu",
    "shape": ["demo"],
    "mask": ["equispaced-x8"],
    # Batch 1 only: one torch.compile per process (each new shape compiles again: ~35 s here with a warm
    # inductor cache, minutes on a cold one), and on CPU batch 1 is as fast per slice as batch 4
    # (demo-x8, 1 thread: 161 ms per slice at batch 1, 194 ms at batch 4).
    "batch": [1],
    # (backend, precision): eager fp32 (the reference), compile fp32, eager bf16, onnxruntime fp32.
    "pairs": [("eager", "fp32"), ("compile", "fp32"), ("eager", "bf16"), ("onnxruntime", "fp32")],
}

TABLE_COLUMNS = (
    "model", "backend", "precision", "batch", "shape", "slices_per_s", "lat_b1_p50_ms", "lat_b1_p90_ms",
    "lat_b1_p99_ms", "lat_b1_runs", "compile_s", "peak_mem_mb", "parity_psnr_db", "parity_passed",
    "speedup", "frac_of_floor", "error",
)  # fmt: skip


def _csv(text: str) -> list[str]:
    return [p.strip() for p in text.split(",") if p.strip()]


def _ints(text: str) -> list[int]:
    try:
        values = [int(p) for p in _csv(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected whole numbers separated by commas, got {text!r}"
        ) from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive batch sizes, got {text!r}")
    return values


def build_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``bench`` arguments to ``parser`` (the CLI's subparser, or a standalone one)."""
    parser.description = (
        "Benchmark models: every backend/precision beside the eager fp32 reference on the same random "
        "k-space (throughput at the batch, batch-1 latency p50/p90/p99, compile time, peak memory, parity, "
        "roofline), with provenance on every row. A backend that fails stays in the table with its error. "
        "Writes NAME.json, NAME.csv and NAME-{throughput,latency,speedup,roofline}.png into --out, replacing "
        "only those files from a previous run with the same --name; other files in the folder are left alone."
    )
    parser.add_argument(
        "--quick", action="store_true",
        help="demo-x8 (bundled weights) on CPU: eager fp32, compile fp32, eager bf16, onnxruntime fp32; "
        "batch 1 (10 timed runs each: throughput and p50/p90/p99 latency); 1 torch thread unless --threads "
        "says otherwise. About 1 minute on 2 cores once torch.compile's and ONNX Runtime's caches are warm; "
        "the first run on a machine compiles C++ and exports ONNX (a few minutes on 2 cores)",
    )  # fmt: skip
    parser.add_argument("--model", type=_csv, default=None, help="comma-separated names (default demo-x8)")
    parser.add_argument(
        "--weights", default=None,
        help="'random' (seeded init, non-zero ViT heads), 'auto' (registry checkpoint) or a file "
        "(default: auto for demo-x8, random otherwise)",
    )  # fmt: skip
    parser.add_argument(
        "--backend", type=_csv, default=None,
        help="comma-separated (default: eager,compile on CPU; eager,triton,compile,tensorrt on CUDA); "
        "NAME:PRECISION runs one precision only (e.g. compile:fp16); eager fp32 is always added as the reference",
    )  # fmt: skip
    parser.add_argument("--precision", type=_csv, default=None, help="fp32,bf16,fp16 (default fp32)")
    parser.add_argument(
        "--shape", type=_csv, default=None, help="cine, knee, brain, demo, tiny or CxHxW (default demo)"
    )
    parser.add_argument(
        "--mask", type=_csv, default=None, help="equispaced-xR or random-xR (default: model's R)"
    )
    parser.add_argument("--batch", type=_ints, default=None, help="comma-separated batch sizes (default 1,4)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument(
        "--threads", type=int, default=None,
        help="torch CPU threads (default: torch's). On a loaded machine 1 thread can be several times faster "
        "than 2: OpenMP threads spin-wait on each other; the count is recorded in every row",
    )  # fmt: skip
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--iters", type=int, default=None, help="timed throughput runs (GPU 20, CPU 5)")
    parser.add_argument("--latency-iters", type=int, default=None, help="timed batch-1 runs (GPU 50, CPU 10)")
    parser.add_argument("--max-seconds", type=float, default=60.0, help="cap on one measurement's timed runs")
    parser.add_argument("--no-roofline", action="store_true", help="skip FLOP counting and peak measurements")
    parser.add_argument("--no-plots", action="store_true")
    parser.add_argument("--name", default="bench", help="file name stem of the outputs (default 'bench')")
    parser.add_argument("--out", required=True, help="folder for the outputs (created if needed)")
    return parser


def scenarios_from_args(args: argparse.Namespace) -> list[Any]:
    import torch

    from fastrecon.bench import model as M

    if args.quick:
        q: dict[str, Any] = QUICK
        out = []
        for batch in args.batch or q["batch"]:
            for backend, precision in q["pairs"]:
                out.append(
                    M.Scenario(
                        q["model"][0], backend, precision, batch, q["shape"][0], q["mask"][0],
                        args.device or q["device"], args.weights or q["weights"],
                    )
                )  # fmt: skip
        return out
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    cuda = device.startswith("cuda")
    models = args.model or ["demo-x8"]
    result = []
    for model in models:
        weights = args.weights or ("auto" if model == "demo-x8" else "random")
        masks = args.mask or [f"equispaced-x{_acceleration(model)}"]
        result.extend(
            M.matrix(
                [model],
                args.backend
                or (["eager", "triton", "compile", "tensorrt"] if cuda else ["eager", "compile"]),
                args.precision or ["fp32"],
                args.batch or [1, 4],
                args.shape or ["demo"],
                masks,
                device,
                weights,
            )
        )
    return result


def _acceleration(model: str) -> int:
    from fastrecon.bench import model as M

    if model in M.TINY_MODELS:
        return 8
    try:
        from fastrecon.registry import get_config

        return int(get_config(model).contract.acceleration)
    except Exception:  # noqa: BLE001 - a bad name shows up as the scenario's error row
        return 8


def add_speedup(rows: list[H.Row]) -> None:
    """``speedup``: slices/s over the eager fp32 row of the same model, shape, mask, batch, device."""

    def key(r: H.Row) -> tuple[Any, ...]:
        return (
            r.get("model"),
            r.get("weights"),
            r.get("shape"),
            r.get("mask"),
            r.get("batch"),
            r.get("device_type"),
        )

    base = {
        key(r): r["slices_per_s"]
        for r in rows
        if r.get("backend") == "eager" and r.get("precision") == "fp32" and r.get("slices_per_s")
    }
    for r in rows:
        ref = base.get(key(r))
        r["speedup"] = r["slices_per_s"] / ref if ref and r.get("slices_per_s") else None


def run_cli(args: argparse.Namespace) -> int:
    """Run, write the outputs, print the table. Exit status 0 even when some backends failed (their
    rows say why); 2 when nothing could be measured at all."""
    import torch

    threads = torch.get_num_threads()
    if args.quick and not args.threads:
        # A smoke run that must finish anywhere: on a shared 2-core machine two OpenMP threads spin-wait
        # on each other (measured here: 10 min instead of 77 s for --quick at load 3).
        args.threads = 1
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        return _run(args)
    finally:
        torch.set_num_threads(threads)


def _run(args: argparse.Namespace) -> int:
    from fastrecon.bench import _harness as H
    from fastrecon.bench import model as M

    scenarios = scenarios_from_args(args)
    settings = M.Settings(
        warmup=args.warmup,
        throughput_iters=args.iters,
        latency_iters=args.latency_iters,
        max_seconds=args.max_seconds,
        roofline=not args.no_roofline,
    )
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    bar = _progress(len(scenarios))
    rows = M.run(scenarios, settings, progress=lambda s, finished: _advance(bar, s, finished))
    _close(bar)
    add_speedup(rows)
    meta = {
        "command": "fastrecon bench " + " ".join(sys.argv[2:])
        if sys.argv[1:2] == ["bench"]
        else "fastrecon bench",
        "scenarios": len(scenarios),
        "wall_s": time.perf_counter() - began,
        "settings": vars(settings),
    }
    name = args.name
    written = [H.write_json(out_dir / f"{name}.json", rows, meta), H.write_csv(out_dir / f"{name}.csv", rows)]
    if not args.no_plots:
        from fastrecon.bench import plots

        written.extend(plots.write_all(rows, out_dir, name))
    print(H.format_table(rows, TABLE_COLUMNS))
    first = rows[0] if rows else {}
    print(
        f"# {first.get('device_name', '?')}; torch {first.get('torch', '?')}; load avg {first.get('load_avg', '?')}; "
        f"{meta['wall_s']:.0f} s; timings on a shared machine are noisy"
    )
    for path in written:
        print(f"wrote {path}")
    measured = [r for r in rows if not r.get("error")]
    return 0 if measured else 2


def _progress(total: int) -> Any:
    try:
        from tqdm import tqdm
    except ImportError:  # tqdm is a dependency; stay usable without it
        return None
    return tqdm(total=total, desc="bench", unit="scenario", file=sys.stderr)


def _advance(bar: Any, scenario: Any, finished: bool) -> None:
    label = f"{scenario.model} {scenario.backend} {scenario.precision} b{scenario.batch} {scenario.shape}"
    if not finished and scenario.backend in ("compile", "onnxruntime", "tensorrt"):
        label += " (first call builds: compile/export, cached for later runs)"
    if bar is None:
        print(f"{'done' if finished else 'running'}: {label}", file=sys.stderr)
    elif finished:
        bar.update(1)
    else:
        bar.set_postfix_str(label)


def _close(bar: Any) -> None:
    if bar is not None:
        bar.close()


def main(argv: list[str] | None = None) -> int:
    parser = build_parser(argparse.ArgumentParser(prog="python -m fastrecon.bench.cli"))
    return run_cli(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
