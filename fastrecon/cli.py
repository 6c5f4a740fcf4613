"""The ``fastrecon`` command line: list, info, demo, reconstruct, evaluate, train."""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence

from fastrecon.errors import FastreconError


def _cmd_list(args: argparse.Namespace) -> int:
    from fastrecon.registry import get_config, list_models

    width = max(len(name) for name in list_models())
    for name in list_models():
        config = get_config(name)
        print(f"{name:<{width}}  {config.description}")
    return 0


def _count(params: object) -> int:
    return sum(p.numel() for p in params)  # type: ignore[attr-defined]


def _cmd_info(args: argparse.Namespace) -> int:
    import torch

    from fastrecon import weights as W
    from fastrecon.models import build_model
    from fastrecon.registry import get_config

    config = get_config(args.name)
    print(f"name:         {config.name}")
    print(f"family:       {config.family}")
    print(f"description:  {config.description}")
    print(f"cascades:     {config.num_cascades}")
    c = config.contract
    print(
        f"input:        x{c.acceleration} {c.mask_type} mask, {c.acs_lines} ACS lines (>= {c.min_acs_lines}), {c.min_coils}..{c.max_coils} coils"
    )
    if config.encoder is not None:
        e = config.encoder
        print(
            f"encoder:      {e.kind} ({e.source} {e.arch}, patch {e.patch_size}, {e.img_size}px, blocks 0..{e.num_blocks - 1}, frozen)"
        )
        print(
            f"              pretrained: {e.pretrained or 'none (random initialisation)'}; licence: {e.licence}"
        )
    if config.decoder is not None:
        print(
            f"decoder:      channels {config.decoder.channels}, skips from layers {config.decoder.skip_layers}"
        )
    torch.manual_seed(0)
    model = build_model(config, warn_random_encoder=False)  # counts only
    trainable = _count(p for p in model.parameters() if p.requires_grad)
    frozen = _count(p for p in model.parameters() if not p.requires_grad)
    print(f"parameters:   {trainable:,} trainable, {frozen:,} frozen, {trainable + frozen:,} total")
    w = config.weights
    print(f"weights:      {w.filename} (sha256 {w.sha256 or 'not pinned'}; licence {w.licence})")
    print(f"              provenance: {w.provenance}")
    found = [p for p in W.candidate_paths(config) if p.is_file()]
    if found:
        print(f"              found: {found[0]}")
    else:
        print(f"              not found (looked in {', '.join(map(str, W.candidate_paths(config)))})")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from fastrecon.demo import main as demo_main

    return demo_main(args.out, args.seed, args.device, args.source)


def _load(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    import fastrecon

    weights = None if args.weights == "none" else args.weights
    return fastrecon.load(args.model, weights=weights, device=args.device, backend=args.backend)


def _cmd_reconstruct(args: argparse.Namespace) -> int:
    from fastrecon.reconstruct_file import reconstruct_file

    recon = _load(args)
    out = reconstruct_file(
        recon,
        args.input,
        args.out,
        acceleration=args.accel,
        center_fraction=args.center_fraction,
        mask_type=args.mask_type,
        key=args.key,
    )
    print(f"wrote {out}")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from fastrecon.evaluation import evaluate_folder

    recon = _load(args)
    report = evaluate_folder(
        recon,
        args.data,
        acceleration=args.accel,
        center_fraction=args.center_fraction,
        mask_type=args.mask_type,
        protocol=args.protocol,
        limit_files=args.limit_files,
        cmrx_ranking=args.cmrx_ranking,
        all_frames=args.all_frames,
    )
    print(report.table())
    csv_path, json_path = report.write(args.out)
    print(f"wrote {csv_path} and {json_path}")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from fastrecon.train.cli import run_train

    return run_train(args)


# --- bench: `fastrecon bench` (the logic lives in fastrecon.bench.cli) --------------------------------


def _add_bench_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from fastrecon.bench.cli import build_parser as build_bench_parser

    bench = sub.add_parser(
        "bench", help="benchmark backends against eager fp32: throughput, latency, parity, plots"
    )
    build_bench_parser(bench).set_defaults(func=_cmd_bench)


def _cmd_bench(args: argparse.Namespace) -> int:
    from fastrecon.bench.cli import run_cli

    return run_cli(args)


# --- end bench ----------------------------------------------------------------------------------------


def _add_model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="registered name or a .safetensors checkpoint")
    parser.add_argument("--weights", default="auto", help="'auto', a file, or 'none' for random weights")
    parser.add_argument("--device", default=None)
    parser.add_argument("--backend", default="eager")


def _add_mask_args(parser: argparse.ArgumentParser, accel_required: bool) -> None:
    parser.add_argument("--accel", type=float, required=accel_required, default=None, help="acceleration R")
    parser.add_argument("--center-fraction", type=float, default=0.08)
    parser.add_argument(
        "--mask-type",
        default="equispaced_fraction",
        help="random | equispaced | equispaced_fraction | cmrx_uniform",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fastrecon", description="Fast accelerated multicoil MRI reconstruction."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list the registered models").set_defaults(func=_cmd_list)
    info = sub.add_parser("info", help="config, parameter counts and weights status of a model")
    info.add_argument("name")
    info.set_defaults(func=_cmd_info)

    demo = sub.add_parser(
        "demo", help="reconstruct a simulated x8 slice with the bundled demo model, write a PNG"
    )
    demo.add_argument("--out", default="fastrecon-demo.png")
    demo.add_argument("--seed", type=int, default=1234)
    demo.add_argument("--device", default=None)
    demo.add_argument(
        "--source", default="cardiac", choices=["cardiac", "mr", "shepp-logan"],
        help="cardiac-like phantom (what demo-x8 was trained on), a real MR image (pydicom), or Shepp-Logan",
    )  # fmt: skip
    demo.set_defaults(func=_cmd_demo)

    rec = sub.add_parser("reconstruct", help="reconstruct a fastMRI .h5 or CMRxRecon .mat file into an .h5")
    rec.add_argument("input")
    rec.add_argument("--out", required=True)
    rec.add_argument("--key", default=None, help="CMRxRecon variable (default: first k-space key found)")
    _add_model_args(rec)
    _add_mask_args(rec, accel_required=False)
    rec.set_defaults(func=_cmd_reconstruct)

    ev = sub.add_parser("evaluate", help="SSIM/PSNR/NMSE of a model and of zero-filled input on a folder")
    ev.add_argument("--data", required=True)
    ev.add_argument(
        "--protocol", default="fastmri", help="fastmri | cmrxrecon (2023) | cmrxrecon-2024 | cmrxrecon-2025"
    )
    ev.add_argument("--out", default="evaluation", help="writes <out>.csv and <out>.json")
    ev.add_argument("--limit-files", type=int, default=None)
    ev.add_argument(
        "--cmrx-ranking", action="store_true",
        help="CMRxRecon protocols: score only what the challenge ranks (central 2 slices, first 3 frames, crop)",
    )  # fmt: skip
    ev.add_argument(
        "--all-frames", action="store_true", help="with --cmrx-ranking: every frame (mapping series)"
    )
    _add_model_args(ev)
    _add_mask_args(ev, accel_required=True)
    ev.set_defaults(func=_cmd_evaluate)

    _add_bench_parser(sub)

    from fastrecon.train.cli import add_train_parser

    add_train_parser(sub).set_defaults(func=_cmd_train)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            return int(args.func(args))
    except (FastreconError, FileNotFoundError) as exc:
        print(f"fastrecon: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
