"""Exported artifacts: a model's networks as ONNX files, ``torch.export`` programs or a TensorRT engine.

:func:`export_model` writes a folder::

    fastrecon-export.json       manifest: format, config, weights sha256, every file with its sha256,
                                inputs / outputs (names, shapes, dtypes), ONNX opset, versions
    README.txt                  the same for people, with a plain-onnxruntime example
    encoder.onnx | .pt2         normalised pixels (batch, 3, S, S) -> features_0..L-1 (batch, D, g, g)
    decoder-TT.onnx | .pt2      features_0..L-1, pixels (batch, 2, height, width) -> correction (batch, 2, height, width)
    torch-weights.safetensors   what stays in torch: sensitivity network and per-cascade DC weights

:func:`load_artifact` (what ``fastrecon.load(DIR)`` calls) rebuilds the model from the manifest's
config, loads the torch weights and installs the exported graphs through the model's seams
(``set_encoder_features`` / ``set_decoders``); the data consistency, the percentile scaling and the
encoder pre-processing run in torch, as in every backend. The folder is written beside ``out_dir``
under a temporary name and renamed into place, so a failed export leaves nothing half-written.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch

from fastrecon import _features
from fastrecon.errors import (
    BackendUnavailableError,
    InputError,
    UnknownNameError,
    WeightsError,
    close_matches,
)
from fastrecon.models.denoiser import ViTDenoiser
from fastrecon.models.vit_unrolled import ViTUnrolledNet
from fastrecon.registry import ModelConfig
from fastrecon.weights import sha256_file

from . import onnx as _onnx
from ._backend import ModuleRunner
from .cache import state_dict_sha256
from .encoder_export import DEFAULT_BATCH, check_batch_range, export_encoder

if TYPE_CHECKING:
    from fastrecon.api import Reconstructor

FORMATS = ("onnx", "exported-program", "tensorrt")
MANIFEST = "fastrecon-export.json"
README = "README.txt"
TORCH_WEIGHTS = "torch-weights.safetensors"
ARTIFACT_FORMAT = 1
RUNTIMES = {"onnx": "onnxruntime", "exported-program": "exported-program", "tensorrt": "tensorrt"}
"""The runtime each format runs on when loaded (reported as the reconstructor's backend)."""


def parse_batch(text: str) -> tuple[int, int, int]:
    """``"1:8:32"`` -> ``(1, 8, 32)``, checked (see :func:`~fastrecon.export.encoder_export.check_batch_range`)."""
    parts = str(text).split(":")
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        raise InputError(f"--batch {text!r}: expected MIN:OPT:MAX whole numbers, e.g. 1:8:32.") from None
    if len(values) != 3:
        raise InputError(f"--batch {text!r}: expected three numbers MIN:OPT:MAX, e.g. 1:8:32.")
    return check_batch_range(cast(tuple[int, int, int], values))


def check_format(format: str) -> str:
    if format not in FORMATS:
        raise UnknownNameError(
            f"unknown export format {format!r}. {close_matches(str(format), list(FORMATS))}"
        )
    return format


def check_export_precision(format: str, precision: str) -> str:
    """``onnx`` / ``exported-program``: fp32 (the graphs are the fp32 reference); ``tensorrt``: fp32 or fp16."""
    allowed = ("fp32", "fp16") if format == "tensorrt" else ("fp32",)
    if precision not in ("fp32", "fp16", "bf16"):
        raise UnknownNameError(f"unknown precision {precision!r}. Available: fp32, fp16, bf16.")
    if precision not in allowed:
        raise BackendUnavailableError(
            f"format {format!r} is exported in {', '.join(allowed)}; precision {precision!r} was asked for."
        )
    return precision


def is_artifact(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` is a folder written by :func:`export_model` (it holds ``fastrecon-export.json``)."""
    try:
        return (Path(path) / MANIFEST).is_file()
    except (OSError, TypeError, ValueError):
        return False


def _check_out_dir(out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"output {str(out_dir)!r} exists and is not a folder; expected a folder path.")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise InputError(
            f"output folder {str(out_dir)!r} exists and is not empty; pass overwrite=True (--overwrite) to replace it."
        )


def _tensorrt_ready() -> None:
    """Fail early (before building anything) where TensorRT cannot run: no CUDA, or no TensorRT."""
    _features.requires_cuda("exporting a TensorRT engine")
    _features.import_optional("torch_tensorrt")
    _features.import_optional("tensorrt")


def _weights_arg(weights: Any) -> Any:
    return None if isinstance(weights, str) and weights.lower() == "none" else weights


def _torch_weights(model: ViTUnrolledNet) -> dict[str, torch.Tensor]:
    """The tensors that stay in torch: everything but the encoder and the decoders."""
    return {
        key: value.detach().cpu().contiguous().clone()
        for key, value in model.state_dict().items()
        if not key.startswith("encoder.") and ".denoiser." not in key
    }


def _spec(name: str, shape: Sequence[int | str], dtype: str = "float32") -> dict[str, Any]:
    return {"name": name, "shape": list(shape), "dtype": dtype}


def _io(model: ViTUnrolledNet, piece: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Inputs and outputs of the encoder or a decoder (names, symbolic shapes, dtypes)."""
    config = model.encoder.config
    size, dim, grid = config.img_size, config.embed_dim, model.encoder.grid_size
    feats = [_spec(n, ["batch", dim, grid, grid]) for n in _onnx.feature_names(config.num_blocks)]
    if piece == "encoder":
        return [_spec(_onnx.ENCODER_INPUT, ["batch", 3, size, size])], feats
    pixels = _spec(_onnx.DECODER_INPUT, ["batch", 2, "height", "width"])
    return [*feats, pixels], [_spec(_onnx.DECODER_OUTPUT, ["batch", 2, "height", "width"])]


def _onnx_io(path: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Inputs and outputs as the ONNX file itself declares them."""
    onnx = _features.import_optional("onnx")
    proto = onnx.load(str(path), load_external_data=False)

    def describe(value: Any) -> dict[str, Any]:
        tensor = value.type.tensor_type
        shape = [d.dim_param or int(d.dim_value) for d in tensor.shape.dim]
        dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type).name
        return _spec(value.name, shape, dtype)

    return [describe(v) for v in proto.graph.input], [describe(v) for v in proto.graph.output]


def _write_pieces(
    model: ViTUnrolledNet, format: str, folder: Path, batch: tuple[int, int, int], meta: dict[str, str]
) -> list[dict[str, Any]]:
    """Export the encoder and every decoder into ``folder``; returns the manifest's file entries."""
    entries: list[dict[str, Any]] = []
    pieces: list[tuple[str, str, Any]] = [("encoder", "encoder", model.encoder)]
    for t, cascade in enumerate(model.cascades):
        pieces.append((f"decoder-{t:02d}", f"decoder of cascade {t}", cast(ViTDenoiser, cascade.denoiser)))
    for stem, role, module in pieces:
        kind = "encoder" if stem == "encoder" else "decoder"
        if format == "onnx":
            path = folder / f"{stem}.onnx"
            if kind == "encoder":
                proto = _onnx.export_encoder_onnx(module, batch=batch, metadata=meta)
            else:
                proto = _onnx.export_decoder_onnx(
                    module,
                    model.encoder.config,
                    batch=batch,
                    metadata={**meta, "fastrecon_cascade": stem[-2:]},
                )
            _onnx.save_proto(proto, path)
            path.with_name(path.name + _onnx.SIDE_SUFFIX).unlink()  # the manifest holds the sha256
            inputs, outputs = _onnx_io(path)
        else:
            path = folder / f"{stem}.pt2"
            if kind == "encoder":
                program = export_encoder(module, batch=batch)
            else:
                program = export_decoder_program(module, model, batch)
            torch.export.save(program, str(path))
            inputs, outputs = _io(model, kind)
        entries.append(
            {
                "file": path.name,
                "role": role,
                "kind": kind,
                "sha256": sha256_file(path),
                "bytes": path.stat().st_size,
                "inputs": inputs,
                "outputs": outputs,
            }
        )
    return entries


def export_decoder_program(
    denoiser: ViTDenoiser, model: ViTUnrolledNet, batch: tuple[int, int, int]
) -> torch.export.ExportedProgram:
    """``torch.export`` of ``denoiser.decode`` with dynamic batch, height and width (CPU, fp32)."""
    config = model.encoder.config
    low, opt, high = check_batch_range(batch)
    with torch.no_grad():
        return torch.export.export(
            _onnx.decoder_graph(denoiser),
            _onnx.decoder_example(config, opt),
            dynamic_shapes=_onnx.decoder_dynamic_shapes(config, (low, opt, high)),
            strict=False,
        )


def export_model(
    name_or_path: str | os.PathLike[str],
    *,
    format: str = "onnx",
    precision: str = "fp32",
    batch: tuple[int, int, int] = DEFAULT_BATCH,
    weights: Any = "auto",
    out_dir: str | os.PathLike[str],
    overwrite: bool = False,
) -> Path:
    """Export a ViT-prior model's networks to ``out_dir``; returns the folder.

    Args:
        name_or_path: a registered name or a fastrecon ``.safetensors`` checkpoint.
        format: ``"onnx"`` (ONNX Runtime), ``"exported-program"`` (``torch.export`` ``.pt2``) or
            ``"tensorrt"`` (an encoder engine; needs CUDA and Torch-TensorRT).
        precision: ``"fp32"`` (all formats) or ``"fp16"`` (``tensorrt`` only).
        batch: ``(min, opt, max)`` batch range of the graphs (``opt >= 2`` is the example batch).
        weights: as in :func:`fastrecon.load` (``"auto"``, a path, or ``None`` / ``"none"`` for random).
        out_dir: the folder to write; an existing non-empty folder needs ``overwrite=True``.

    Raises:
        UnknownNameError: unknown format, precision or model.
        InputError: bad batch range; ``out_dir`` not empty without ``overwrite``.
        BackendUnavailableError / MissingDependencyError: the format cannot be produced here
            (TensorRT without CUDA or Torch-TensorRT), a precision the format does not honour, or a
            model family without export seams (E2E-VarNet).
    """
    check_format(format)
    check_export_precision(format, precision)
    batch = check_batch_range(batch)
    out = Path(out_dir).expanduser()
    _check_out_dir(out, overwrite)
    if format == "tensorrt":
        _tensorrt_ready()
    if format in ("onnx",):
        _onnx.versions()  # onnx + onnxscript present, before a model is built
    from fastrecon.api import load

    rec = load(name_or_path, weights=_weights_arg(weights), device="cpu")
    model = _onnx.check_vit(rec.model, f"export --format {format}")
    config = rec.config
    weights_sha = state_dict_sha256(model)
    meta = {"fastrecon_config": config.to_json(), "fastrecon_weights_sha256": weights_sha}
    out.parent.mkdir(parents=True, exist_ok=True)
    temp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))
    try:
        if format == "tensorrt":
            files = _write_tensorrt(model, temp, batch, precision)
        else:
            files = _write_pieces(model, format, temp, batch, meta)
        from safetensors.torch import save_file

        save_file(_torch_weights(model), str(temp / TORCH_WEIGHTS), metadata={**meta, "format": "pt"})
        manifest = _manifest(rec, model, format, precision, batch, files, weights_sha, temp)
        (temp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        (temp / README).write_text(readme_text(manifest), encoding="utf-8")
        for item in temp.iterdir():
            os.chmod(item, 0o644)
        os.chmod(temp, 0o755)  # mkdtemp creates 0700
        _replace_dir(temp, out)
    finally:
        if temp.exists():
            shutil.rmtree(temp, ignore_errors=True)
    return out


def _write_tensorrt(
    model: ViTUnrolledNet, folder: Path, batch: tuple[int, int, int], precision: str
) -> list[dict[str, Any]]:
    """The encoder as a TensorRT engine (``build_encoder_engine``); the decoders stay in the torch weights."""
    from .cache import EngineCache
    from .tensorrt import build_encoder_engine

    engine = build_encoder_engine(
        model.encoder, batch=batch, precision=precision, cache=EngineCache(folder), device="cuda"
    )
    path = cast(Path, engine.path)
    inputs, outputs = _io(model, "encoder")
    return [
        {
            "file": path.name,
            "role": "encoder (TensorRT engine, Torch-TensorRT exported program)",
            "kind": "encoder",
            "sha256": sha256_file(path),
            "bytes": path.stat().st_size,
            "inputs": inputs,
            "outputs": outputs,
        }
    ]


def _replace_dir(temp: Path, out: Path) -> None:
    """Rename ``temp`` to ``out``; an existing ``out`` (empty, or overwrite asked) is moved aside first."""
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
    try:
        os.replace(temp, out)
    except OSError:
        if old is not None:
            os.replace(old, out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _manifest(
    rec: Any,
    model: ViTUnrolledNet,
    format: str,
    precision: str,
    batch: tuple[int, int, int],
    files: list[dict[str, Any]],
    weights_sha: str,
    folder: Path,
) -> dict[str, Any]:
    config: ModelConfig = rec.config
    opset = _onnx.opset_of(folder / files[0]["file"]) if format == "onnx" else None
    torch_keys = sorted(_torch_weights(model))
    return {
        "fastrecon_export": ARTIFACT_FORMAT,
        "format": format,
        "runtime": RUNTIMES[format],
        "model": config.name,
        "config": config.to_dict(),
        "weights_sha256": weights_sha,
        "weights_source": str(rec.weights_path) if rec.weights_path else "random initialisation",
        "precision": precision,
        "batch": {"min": batch[0], "opt": batch[1], "max": batch[2]},
        "onnx_opset": opset,
        "created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "versions": {
            "fastrecon": _fastrecon_version(),
            "torch": torch.__version__,
            **_optional_versions(format),
        },
        "files": files,
        "torch_weights": {
            "file": TORCH_WEIGHTS,
            "sha256": sha256_file(folder / TORCH_WEIGHTS),
            "bytes": (folder / TORCH_WEIGHTS).stat().st_size,
            "tensors": torch_keys,
        },
        "pipeline": [
            "per cascade t, with x the coil-combined complex image (N, H, W):",
            "  scale = 99.5th percentile of |x| per slice (max if 0, 1 if all zero)",
            "  pixels = normalise(resize(clip(|x| / scale, 0, 1) repeated to 3 channels, S x S))  -> encoder",
            "  correction = decoder-t(features, stack(re x, im x) / scale) * scale",
            "  k <- k - dc_weight_t * mask * (k - k0) - F E (correction as complex)",
            "sensitivity maps, data consistency and RSS run in torch (torch-weights.safetensors)",
        ],
    }


def _fastrecon_version() -> str:
    import fastrecon

    return fastrecon.__version__


def _optional_versions(format: str) -> dict[str, str]:
    if format != "onnx":
        return {}
    found = _onnx.versions()
    with contextlib.suppress(Exception):
        found["onnxruntime"] = _features.import_optional("onnxruntime").__version__
    return found


def readme_text(manifest: dict[str, Any]) -> str:
    """The folder's README: what each file is, its inputs and outputs, and how to run it without fastrecon."""
    lines = [
        f"fastrecon export of {manifest['model']} (format {manifest['format']}, precision {manifest['precision']})",
        f"weights sha256 (fastrecon state dict): {manifest['weights_sha256']}",
        f"created {manifest['created_utc']} with {json.dumps(manifest['versions'], sort_keys=True)}",
        "",
        "Load everything with fastrecon:  fastrecon.load('<this folder>').reconstruct(kspace)",
        "The model config (JSON) and every file's sha256 are in fastrecon-export.json.",
        "",
        "Files (shapes: 'batch', 'height', 'width' are dynamic; everything is float32):",
    ]
    b = manifest["batch"]
    for entry in manifest["files"]:
        lines.append(f"  {entry['file']}  ({entry['role']}, {entry['bytes']} bytes)")
        for direction in ("inputs", "outputs"):
            for spec in entry[direction]:
                shape = ", ".join(str(s) for s in spec["shape"])
                lines.append(f"      {direction[:-1]:<6} {spec['name']:<12} ({shape}) {spec['dtype']}")
    lines += [
        f"  {TORCH_WEIGHTS}  (sensitivity network and per-cascade DC weights; safetensors)",
        "",
        f"Batch range exported: min {b['min']}, opt {b['opt']}, max {b['max']}.",
    ]
    if manifest["format"] == "onnx":
        lines += [
            f"ONNX opset {manifest['onnx_opset']}. Run a file with plain onnxruntime (no fastrecon needed):",
            "",
            "    import numpy as np, onnxruntime as ort",
            "    enc = ort.InferenceSession('encoder.onnx', providers=['CPUExecutionProvider'])",
            "    size = enc.get_inputs()[0].shape[-1]",
            "    feats = enc.run(None, {'pixels': np.zeros((1, 3, size, size), np.float32)})",
            "    dec = ort.InferenceSession('decoder-00.onnx', providers=['CPUExecutionProvider'])",
            "    names = [i.name for i in dec.get_inputs()]",
            "    out = dec.run(None, {**dict(zip(names[:-1], feats)), 'pixels': np.zeros((1, 2, 200, 180), np.float32)})",
            "",
            "encoder 'pixels' are normalised: (magnitude repeated to 3 channels, resized bilinearly to S x S,",
            "minus the config's encoder mean, divided by its std). decoder 'pixels' are (re, im) / scale.",
        ]
    lines += ["", "Pipeline:"] + [f"  {line}" for line in manifest["pipeline"]]
    return "\n".join(lines) + "\n"


# --- loading -------------------------------------------------------------------------------------------


class ArtifactViTNet(ViTUnrolledNet):
    """A ViT-prior model whose encoder and decoders exist only as exported graphs (their torch
    weights are not in the artifact): it cannot go back to the eager networks."""

    def reset_backend(self) -> None:
        raise BackendUnavailableError(
            "this model was loaded from an exported artifact: its encoder and decoders exist only as exported "
            "graphs, so it runs on the artifact's runtime only. Load the original model for other backends."
        )


def read_manifest(folder: Path) -> dict[str, Any]:
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise WeightsError(
            f"{str(folder / MANIFEST)!r} is not a readable fastrecon export manifest ({exc})."
        ) from exc
    if not isinstance(manifest, dict) or manifest.get("fastrecon_export") != ARTIFACT_FORMAT:
        raise WeightsError(
            f"{str(folder / MANIFEST)!r} has export format {manifest.get('fastrecon_export') if isinstance(manifest, dict) else None!r}; "
            f"this fastrecon reads format {ARTIFACT_FORMAT}."
        )
    return manifest


def _verify(folder: Path, entry: dict[str, Any]) -> Path:
    path = folder / entry["file"]
    if not path.is_file():
        raise WeightsError(f"exported file {str(path)!r} listed in the manifest is missing.")
    actual = sha256_file(path)
    if actual != entry["sha256"]:
        raise WeightsError(
            f"{str(path)!r} has sha256 {actual}; the manifest says {entry['sha256']}. The file changed."
        )
    return path


class ProgramFeatures:
    """A loaded ``torch.export`` encoder program as a drop-in for ``FrozenEncoder.features``."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.module = module

    def __call__(self, pixels: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.module(pixels))


class ProgramDecoder:
    """A loaded ``torch.export`` decoder program as a drop-in for ``ViTDenoiser.decode``."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.module = module

    def __call__(self, features: Sequence[torch.Tensor], pixels: torch.Tensor) -> torch.Tensor:
        return cast(torch.Tensor, self.module(*features, pixels))


def load_artifact(
    path: str | os.PathLike[str],
    *,
    device: str | torch.device | None = None,
    backend: str = "eager",
    precision: str = "fp32",
    batch_size: int | None = None,
) -> Reconstructor:
    """A :class:`~fastrecon.api.Reconstructor` running an exported folder (``onnx`` or ``exported-program``).

    ``backend``: the default ``"eager"`` or the artifact's own runtime (``"onnxruntime"`` /
    ``"exported-program"``) run the exported graphs; any other backend is refused. ``precision``
    must be the artifact's.
    """
    from fastrecon.api import Reconstructor, _check_batch, _resolve_device

    folder = Path(path)
    manifest = read_manifest(folder)
    format = manifest["format"]
    runtime = RUNTIMES.get(format, str(format))
    if backend not in ("eager", runtime):
        raise BackendUnavailableError(
            f"{str(folder)!r} is a {format!r} export and runs on {runtime!r}; backend {backend!r} was asked for. "
            "Load the original model for other backends."
        )
    if precision != manifest["precision"]:
        raise BackendUnavailableError(
            f"{str(folder)!r} was exported in {manifest['precision']}; precision {precision!r} was asked for."
        )
    if format == "tensorrt":
        raise BackendUnavailableError(
            f"{str(folder)!r} holds a TensorRT engine; loading TensorRT exports is not implemented yet. "
            "Use load(name, backend='tensorrt') on a CUDA machine with Torch-TensorRT."
        )
    high = int(manifest["batch"]["max"])
    batch = _check_batch(batch_size)
    if batch is not None and batch > high:
        raise InputError(f"batch_size={batch} exceeds the exported batch range (max {high}).")
    resolved = _resolve_device(device)
    config = ModelConfig.from_dict(manifest["config"])
    model = ArtifactViTNet.from_config(config, warn_random_encoder=False)
    from safetensors.torch import load_file

    state = load_file(str(_verify(folder, manifest["torch_weights"])))
    missing, unexpected = model.load_state_dict(state, strict=False)
    bad_missing = [k for k in missing if not k.startswith("encoder.") and ".denoiser." not in k]
    if unexpected or bad_missing:
        raise WeightsError(
            f"{TORCH_WEIGHTS} in {str(folder)!r} does not fit {config.name!r}: missing {bad_missing[:5]}, "
            f"unexpected {list(unexpected)[:5]}."
        )
    model.eval().to(resolved)
    entries = manifest["files"]
    encoder = _verify(folder, entries[0])
    decoders = [_verify(folder, e) for e in entries[1:]]
    details: dict[str, Any] = {
        "artifact": str(folder),
        "format": format,
        "weights_sha256": manifest["weights_sha256"],
    }
    if format == "onnx":
        details["runtime"] = "onnxruntime"
        details["providers"] = _onnx.install(model, encoder, decoders, resolved)
        details["onnx_opset"] = manifest.get("onnx_opset")
    else:
        model.set_encoder_features(ProgramFeatures(torch.export.load(str(encoder)).module().to(resolved)))
        model.set_decoders(
            [ProgramDecoder(torch.export.load(str(p)).module().to(resolved)) for p in decoders]
        )
        details["runtime"] = "torch.export"
    runner = ModuleRunner(model, runtime, precision, details=details)
    return Reconstructor(
        model=model,
        config=config,
        device=resolved,
        runner=runner,
        backend=runtime,
        precision=precision,
        weights_path=None,
        batch_size=batch if batch is not None else min(16, high),
    )


__all__ = [
    "FORMATS",
    "MANIFEST",
    "export_model",
    "is_artifact",
    "load_artifact",
    "parse_batch",
    "readme_text",
]
