"""The ``fastrecon`` command line: list, info, demo, reconstruct, evaluate, train, serve, bench, export."""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fastrecon.errors import FastreconError, InputError, OutputExistsError


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


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _check_device(device: str | None) -> None:
    """``--device``: refuse, with one line, a string torch cannot parse or a device without data."""
    if device is None:
        return
    import torch

    try:
        resolved = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise InputError(
            f"--device {device!r} is not a device name torch knows; expected cpu, cuda, cuda:N (or mps, xpu where present)."
        ) from None
    if resolved.type == "meta":
        raise InputError(f"--device {device!r} holds no data; expected cpu, cuda or cuda:N.")


def _check_demo_out(out: str) -> None:
    """``demo`` replaces only its own kind of output: a PNG file. Anything else at ``--out`` is refused."""
    from fastrecon._files import check_output

    path = Path(out)
    if path.suffix.lower() != ".png":
        raise InputError(f"--out {out!r}: the demo writes a PNG picture; expected a path ending in .png.")
    if path.is_file() and not path.is_symlink():
        with path.open("rb") as handle:
            is_png = handle.read(len(_PNG_SIGNATURE)) == _PNG_SIGNATURE
        if not is_png:
            raise OutputExistsError(
                f"--out {out!r} exists and is not a PNG picture; the demo replaces only a previous PNG. "
                "Give another path."
            )
    check_output(path, overwrite=True)  # refuses a folder


def _cmd_demo(args: argparse.Namespace) -> int:
    _check_device(args.device)
    _check_demo_out(args.out)
    from fastrecon.demo import main as demo_main

    return demo_main(args.out, args.seed, args.device, args.source, args.image, args.table)


def _load(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    import fastrecon

    _check_device(args.device)
    weights = None if args.weights == "none" else args.weights
    return fastrecon.load(
        args.model,
        weights=weights,
        device=args.device,
        backend=args.backend,
        precision=args.precision,
        dc=args.dc,
        max_memory=args.max_memory,
    )


def _file_options(args: argparse.Namespace) -> dict[str, Any]:
    """``reconstruct``'s per-file options, for one file and for every file of a folder."""
    return {
        "acceleration": args.accel,
        "center_fraction": args.center_fraction,
        "mask_type": args.mask_type,
        "key": args.key,
        "crop": not args.no_crop,
        "num_low_frequencies": args.num_low_frequencies,
        "coil_compress": args.coil_compress,
    }


def _cmd_reconstruct(args: argparse.Namespace) -> int:
    from fastrecon.data.outputs import check_images_output, output_format
    from fastrecon.reconstruct_file import reconstruct_file

    if Path(args.input).is_dir():
        return _cmd_reconstruct_folder(args)
    if not Path(args.input).is_file():
        raise FileNotFoundError(f"input file not found: {args.input}")
    if os.environ.get("WORLD_SIZE", "1") not in ("", "1"):
        raise InputError(
            f"torchrun runs {os.environ['WORLD_SIZE']} processes, which share the files of a folder; "
            f"{args.input!r} is one file. Give a folder, or run one file without torchrun."
        )
    # Before the model is loaded: never over the input, an existing output only with --overwrite.
    fmt = output_format(args.out, args.format)
    check_images_output(args.out, fmt, inputs=[args.input], overwrite=args.overwrite)
    recon = _load(args)
    out = reconstruct_file(
        recon,
        args.input,
        args.out,
        overwrite=args.overwrite,
        format=fmt,
        **_file_options(args),
    )
    print(f"wrote {out}")
    return 0


def _cmd_reconstruct_folder(args: argparse.Namespace) -> int:
    """``reconstruct DIR --out OUTDIR``: every file, sharded over torchrun's ranks; 1 when a file failed."""
    from fastrecon.reconstruct_folder import reconstruct_folder

    _check_device(args.device)
    report = reconstruct_folder(
        lambda device: _load(argparse.Namespace(**{**vars(args), "device": device})),
        args.input,
        args.out,
        format=args.format,
        overwrite=args.overwrite,
        device=args.device,
        **_file_options(args),
    )
    return 1 if report["failed"] else 0


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
        coil_compress=args.coil_compress,
    )
    print(report.table())
    csv_path, json_path = report.write(args.out)
    print(f"wrote {csv_path} and {json_path}")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from fastrecon._files import check_output
    from fastrecon.train.cli import run_train

    _check_device(args.device)
    out = Path(args.out)
    data_files = []
    for folder in (args.data, args.val_data):
        if folder and folder != "simulated" and Path(folder).exists():
            root = Path(folder)
            data_files += (
                [root] if root.is_file() else [p for p in root.rglob("*") if p.suffix in (".h5", ".mat")]
            )
    check_output(out, inputs=data_files, overwrite=args.overwrite)
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


# --- serve: `fastrecon serve` (MRD streaming server; the logic lives in fastrecon.serve) ---------------


def _cmd_serve(args: argparse.Namespace) -> int:
    import logging
    import signal

    from fastrecon.serve import MRDServer, ServeOptions

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if not 0 <= args.port <= 65535:
        raise InputError(f"--port {args.port} is not a TCP port; expected 0 (any free port) to 65535.")
    for flag, value in (
        ("--batch-size", args.batch_size),
        ("--max-connections", args.max_connections),
        ("--max-pending-mib", args.max_pending_mib),
        ("--max-total-pending-mib", args.max_total_pending_mib),
    ):
        if value < 1:
            raise InputError(f"{flag} {value}: expected a positive whole number.")
    recon = _load(args)
    options = ServeOptions(
        host=args.host,
        port=args.port,
        batch_size=args.batch_size,
        max_connections=args.max_connections,
        image_dtype=args.image_dtype,
        max_pending_bytes=args.max_pending_mib * 2**20,
        max_total_pending_bytes=args.max_total_pending_mib * 2**20,
    )
    server = MRDServer(recon, options)

    def request_stop(signum: int, frame: object) -> None:
        server.request_stop()  # a second signal cuts off the connections in flight

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.start()
        host, port = server.address
        print(f"fastrecon serve: listening on {host}:{port} (model {recon.config.name})", flush=True)
        while not server.stop_requested.wait(0.5):
            pass
        print(
            "fastrecon serve: shutting down (finishing connections in flight; signal again to cut them off)",
            flush=True,
        )
        summary = server.shutdown()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if summary.get("count"):
        print(
            f"fastrecon serve: {int(summary['images'])} images; latency p50 {summary['p50_ms']:.1f} ms, "
            f"p90 {summary['p90_ms']:.1f} ms, max {summary['max_ms']:.1f} ms",
            flush=True,
        )
    else:
        print("fastrecon serve: no images sent", flush=True)
    return 0


def _add_serve_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    serve = sub.add_parser(
        "serve", help="MRD (ISMRMRD) streaming server: raw acquisitions in, images out (scanner pipelines)"
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    serve.add_argument(
        "--port", type=int, default=9002, help="TCP port; 0 picks a free one (default: %(default)s)"
    )
    serve.add_argument(
        "--batch-size", type=int, default=8, help="most slices per forward pass, across clients"
    )
    serve.add_argument(
        "--max-connections", type=int, default=16, help="clients served at once; more are refused"
    )
    serve.add_argument(
        "--max-pending-mib", type=int, default=1024,
        help="incomplete slices held per client, in MiB of k-space (interleaved multi-slice scans hold all slices)",
    )  # fmt: skip
    serve.add_argument(
        "--max-total-pending-mib", type=int, default=4096,
        help="incomplete slices held for all clients together, in MiB (a client that would pass it is refused)",
    )  # fmt: skip
    serve.add_argument(
        "--image-dtype", default="float32", choices=["float32", "uint16"],
        help="MRD image data: float32 magnitude, or uint16 scaled to 0..4095 (12-bit displays)",
    )  # fmt: skip
    _add_model_args(serve)
    serve.set_defaults(func=_cmd_serve)


# --- end serve ----------------------------------------------------------------------------------------


def _add_model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="registered name or a .safetensors checkpoint")
    parser.add_argument("--weights", default="auto", help="'auto', a file, or 'none' for random weights")
    parser.add_argument("--device", default=None)
    parser.add_argument(
        "--backend", default="eager", help="eager (reference), triton, compile, onnxruntime, tensorrt"
    )
    parser.add_argument("--precision", default="fp32", help="fp32, bf16 or fp16 for the networks")
    parser.add_argument(
        "--dc", default="auto", help="data-consistency form: auto, 2d, hybrid, residual (all exact)"
    )
    parser.add_argument(
        "--max-memory", default=None, metavar="SIZE",
        help="activation memory the default batch may use, e.g. 4GiB or 512MB (default: from the device's memory)",
    )  # fmt: skip


def _add_mask_args(parser: argparse.ArgumentParser, accel_required: bool) -> None:
    parser.add_argument("--accel", type=float, required=accel_required, default=None, help="acceleration R")
    parser.add_argument("--center-fraction", type=float, default=0.08)
    parser.add_argument(
        "--mask-type",
        default="equispaced_fraction",
        help="random | equispaced | equispaced_fraction | cmrx_uniform",
    )


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return value


def _add_fidelity_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-crop", action="store_true",
        help="fastMRI files: keep the full (H, W) image instead of cropping to the header's reconSpace matrix",
    )  # fmt: skip
    parser.add_argument(
        "--num-low-frequencies", "--acs-lines", type=_positive_int, default=None, metavar="N",
        help="number of ACS (autocalibration) lines for the coil maps; default: the mask function's count with "
        "--accel, else the centred fully sampled block of the mask",
    )  # fmt: skip
    parser.add_argument(
        "--coil-compress", action="store_true",
        help="compress data with more coils than the model accepts to its coil count (SVD), instead of refusing it",
    )  # fmt: skip


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
    demo.add_argument(
        "--out", default="fastrecon-demo.png",
        help="PNG to write (default: %(default)s); a previous PNG there is replaced, any other file is refused",
    )  # fmt: skip
    demo.add_argument("--seed", type=int, default=1234)
    demo.add_argument("--device", default=None)
    demo.add_argument(
        "--source", default="cardiac", choices=["cardiac", "mr", "epi", "shepp-logan", "mni-t1", "phantom", "natural"],
        help="held out from demo-x8's training: the cardiac phantom slice of the default seed, a real MR image "
        "(pydicom's MR_small), a real EPI brain slice (nibabel's example4d); also Shepp-Logan, and draws of the "
        "training sources (MNI152 T1 slice, random phantom, natural image)",
    )  # fmt: skip
    demo.add_argument(
        "--image", default=None, metavar="FILE",
        help="your own magnitude image (PNG/JPEG, DICOM, NIfTI or .npy) instead of --source: coils, phase, "
        "noise and the x8 mask are simulated",
    )  # fmt: skip
    demo.add_argument(
        "--table",
        action="store_true",
        help="print the README table instead: zero-filled, CG-SENSE and demo-x8 on every source",
    )
    demo.set_defaults(func=_cmd_demo)

    rec = sub.add_parser(
        "reconstruct", help="reconstruct a fastMRI .h5, CMRxRecon .mat or MRD raw file, or every such file in a folder",
        description="Reconstruct one file, or a folder (recursively; sharded over the ranks when run under "
        "torchrun, e.g. `torchrun --nproc_per_node 8 -m fastrecon.cli reconstruct DIR --out OUTDIR ...`). "
        "Folder mode writes OUTDIR/<relative path>/<input stem> + .h5, .nii.gz or a DICOM folder, skips outputs "
        "that already exist (a rerun resumes; --overwrite redoes them), goes on past a bad file, and writes "
        "OUTDIR/reconstruct-summary.json; exit status 1 when a file failed.",
    )  # fmt: skip
    rec.add_argument("input", help="a fastMRI .h5 / CMRxRecon .mat / MRD raw (.h5) file, or a folder of them")
    rec.add_argument(
        "--out", required=True,
        help="file: out.h5 (fastMRI-style), out.nii / out.nii.gz (NIfTI), out.mrd.h5 (MRD images, MRD input), or "
        "a folder with --format dicom; "
        "folder input: the output folder. Never an input; an existing output only with --overwrite",
    )  # fmt: skip
    rec.add_argument(
        "--format", choices=["h5", "nifti", "dicom", "mrd"], default=None,
        help="output format (default: from --out's suffix: .nii/.nii.gz NIfTI, .mrd/.mrd.h5 MRD images, else .h5; "
        "folders: h5). mrd: MRD images, from MRD raw input only. "
        "dicom writes a folder with one MR image file per slice",
    )  # fmt: skip
    rec.add_argument(
        "--overwrite", action="store_true",
        help="replace an existing --out (folder input: redo files whose output exists instead of skipping them)",
    )  # fmt: skip
    rec.add_argument("--key", default=None, help="CMRxRecon variable (default: first k-space key found)")
    _add_model_args(rec)
    _add_mask_args(rec, accel_required=False)
    _add_fidelity_args(rec)
    rec.set_defaults(func=_cmd_reconstruct)

    ev = sub.add_parser("evaluate", help="SSIM/PSNR/NMSE of a model and of zero-filled input on a folder")
    ev.add_argument("--data", required=True)
    ev.add_argument(
        "--protocol", default="fastmri", help="fastmri | cmrxrecon (2023) | cmrxrecon-2024 | cmrxrecon-2025"
    )
    ev.add_argument(
        "--out", default="evaluation", help="writes <out>.csv and <out>.json (previous ones are replaced)"
    )
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
    ev.add_argument(
        "--coil-compress", action="store_true",
        help="compress volumes with more coils than the model accepts to its coil count (SVD)",
    )  # fmt: skip
    ev.set_defaults(func=_cmd_evaluate)

    _add_bench_parser(sub)
    _add_serve_parser(sub)

    from fastrecon.train.cli import add_train_parser

    train = add_train_parser(sub)
    train.add_argument(
        "--overwrite", action="store_true", help="replace an existing --out checkpoint (refused otherwise)"
    )
    train.set_defaults(func=_cmd_train)

    # --- export (fastrecon.export_cli) ---
    from fastrecon.export_cli import add_export_parser

    add_export_parser(sub)
    # --- end export ---
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit status. Expected errors (fastrecon's own, files and folders that
    are missing or cannot be written) print one line on stderr and return 2, without a traceback.

    The caller's warning filters are left alone (tests run with warnings as errors); the console script
    :func:`run` is what shows warnings once each.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except (FastreconError, OSError) as exc:
        message = " ".join(str(exc).split())
        print(f"fastrecon: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fastrecon: interrupted", file=sys.stderr)
        return 130


def run() -> None:
    """The ``fastrecon`` console script: warnings shown once each (never as errors), exit with main()'s status."""
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        status = main()
    sys.exit(status)


if __name__ == "__main__":
    run()
