"""``fastrecon export``: write a model's networks as ONNX files, torch.export programs or a TensorRT engine.

Kept apart from :mod:`fastrecon.cli`, which only adds the subparser (:func:`add_export_parser`). Bad
arguments and unavailable formats raise :class:`~fastrecon.errors.FastreconError` subclasses, which the
CLI's ``main`` prints as one line (exit status 2).
"""

from __future__ import annotations

import argparse
import time


def add_export_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """The ``export`` subcommand; its handler is :func:`run_export`."""
    parser = sub.add_parser(
        "export",
        help="export a model's encoder and decoders (onnx | exported-program | tensorrt) into a folder",
        description="Export NAME's networks into a folder that fastrecon.load(DIR) runs; "
        "see fastrecon-export.json and README.txt inside it.",
    )
    parser.add_argument("name", help="registered model name or a fastrecon .safetensors checkpoint")
    parser.add_argument("--format", default="onnx", help="onnx | exported-program | tensorrt (default onnx)")
    parser.add_argument("--precision", default="fp32", help="fp32 | fp16 | bf16 (what each format honours)")
    parser.add_argument(
        "--batch", default="1:8:32", help="MIN:OPT:MAX batch range (OPT >= 2), default 1:8:32"
    )
    parser.add_argument("--weights", default="auto", help="'auto', a checkpoint path, or 'none' (random)")
    parser.add_argument("-o", "--out", required=True, help="output folder (must be empty or absent)")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")
    parser.set_defaults(func=run_export)
    return parser


def run_export(args: argparse.Namespace) -> int:
    from fastrecon.export.artifact import check_export_precision, check_format, export_model, parse_batch

    check_format(args.format)
    check_export_precision(args.format, args.precision)
    batch = parse_batch(args.batch)
    start = time.perf_counter()
    out = export_model(
        args.name,
        format=args.format,
        precision=args.precision,
        batch=batch,
        weights=args.weights,
        out_dir=args.out,
        overwrite=args.overwrite,
    )
    total = sum(p.stat().st_size for p in out.iterdir() if p.is_file())
    print(f"wrote {out} ({args.format}, {total / 2**20:.1f} MiB, {time.perf_counter() - start:.1f} s)")
    return 0
