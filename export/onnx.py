"""The ``onnxruntime`` backend: the ViT encoder and each cascade's decoder as ONNX graphs (DESIGN.md 4, 6).

What runs where, per cascade::

    torch        |x|, percentile scaling, encoder pre-processing (resize to S, mean/std)
    ONNX Runtime encoder.onnx     pixels (B, 3, S, S)                     -> features_0..L-1 (B, D, g, g)
    ONNX Runtime decoder-TT.onnx  features_0..L-1 (B, D, g, g), pixels (B, 2, H, W) -> correction (B, 2, H, W)
    torch        complex re-assembly, data consistency (complex64), sensitivity maps, RSS

The graphs are exported with torch's dynamo exporter (``torch.onnx.export(..., dynamo=True)``, needs
``onnxscript``), with a dynamic batch and, for the decoders, dynamic ``H, W`` (one file per cascade serves
every matrix size), and installed through the model's seams (``set_encoder_features``,
``set_decoders``). Tensors go to ONNX Runtime through numpy on the CPU.

Files are cached under ``$FASTRECON_HOME/onnx/<key>/`` where ``<key>`` digests the model config, the
weights' sha256, the exported shapes and the torch / onnx / onnxscript versions (:func:`cache_key`);
each file is written to a temporary name and renamed into place, with a ``.sha256`` sidecar that is
checked before a cached file is used (a mismatch is re-exported, never loaded).

Precision: fp32 only (ONNX Runtime's CPU provider has no fp16 kernels for most of these ops).
E2E-VarNet models are refused: their U-Nets have no replacement seam yet.

Whole forward as one ONNX graph (tried with torch 2.14.1, onnx 1.23.2, onnxscript 0.7.2, onnxruntime
1.32.0, demo-x8, prepared input, k-space passed as real/imag pairs ``(N, C, H, W, 2)``):
``torch.export`` of the whole prepared forward succeeds (one graph), but the ONNX conversion stops at
the first complex op without a complex ONNX function: ``DispatchError: No ONNX function found for
aten.where.self. Failure message: No decompositions registered for the complex-valued input``. The graph
holds complex ``where`` (7), ``zeros`` (7), ``view_as_complex`` (3), ``complex`` (6), ``real`` (6),
``unsqueeze`` / ``reshape`` and fftshift rolls besides the ops that do have complex functions (``mul``,
``sub``, ``sum``, ``conj``, ``view_as_real``, ``_fft_c2c`` -> ONNX ``DFT``). So the whole forward needs
rewriting on real pairs. The FFT itself is not the blocker: ``view_as_real(fft2c(view_as_complex(x)))``
exports to ``DFT`` and runs in ONNX Runtime, but its CPU ``DFT`` is much less accurate at non-power-of-two
lengths (max abs error vs torch, peak ~4.3: 2.4e-6 at 32x32, 4.0e-5 at 30x26, 1.3e-4 at 128x112), i.e.
~3e-5 relative per 2-D transform at 128x112, which would eat the 100 dB fp32 gate's margin across
2 transforms x 12 cascades. Hence this backend keeps the DC and FFTs in torch.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import os
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from fastrecon import _features
from fastrecon.errors import BackendUnavailableError, InputError
from fastrecon.models.denoiser import ViTDenoiser
from fastrecon.models.encoders import FrozenEncoder
from fastrecon.models.unrolled import UnrolledNet
from fastrecon.models.vit_unrolled import ViTUnrolledNet
from fastrecon.registry import EncoderConfig
from fastrecon.weights import fastrecon_home, sha256_file

from ._backend import Backend, ModuleRunner, register_backend
from .cache import state_dict_sha256
from .encoder_export import EncoderFeatures, check_batch_range, prepare_for_export

CACHE_FORMAT = 1
"""Layout version of the cache folders; part of every key."""

BACKEND_BATCH = (1, 2, 1024)
"""``(min, example, max)`` batch of the backend's graphs (ONNX itself keeps only a named dynamic dim)."""

MAX_SIZE = 16384
"""Largest ``H`` / ``W`` the decoder export declares (the graph itself has no bound)."""

ENCODER_FILE = "encoder.onnx"
ENCODER_INPUT = "pixels"
DECODER_INPUT = "pixels"
DECODER_OUTPUT = "correction"
SIDE_SUFFIX = ".sha256"


def decoder_file(index: int, suffix: str = ".onnx") -> str:
    """File name of cascade ``index``'s decoder (``decoder-03.onnx``)."""
    return f"decoder-{index:02d}{suffix}"


def feature_names(num_blocks: int) -> list[str]:
    """Names of the encoder outputs / decoder feature inputs: ``features_0 .. features_{L-1}``."""
    return [f"features_{i}" for i in range(num_blocks)]


# --- graphs --------------------------------------------------------------------------------------------


class DecoderGraph(nn.Module):
    """``(features_0, ..., features_{L-1}, pixels) -> denoiser.decode(features, pixels)``: what gets exported.

    Positional tensors (not a sequence) so every input of the exported graph has its own name.
    """

    def __init__(self, denoiser: ViTDenoiser) -> None:
        super().__init__()
        self.denoiser = denoiser

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.denoiser.decode(inputs[:-1], inputs[-1])


def encoder_example(config: EncoderConfig, batch: int) -> tuple[torch.Tensor]:
    size = config.img_size
    gen = torch.Generator().manual_seed(0)
    return (torch.randn(batch, 3, size, size, generator=gen),)


def decoder_example(
    config: EncoderConfig, batch: int, height: int = 40, width: int = 36
) -> tuple[torch.Tensor, ...]:
    """Example inputs for the decoder export: features ``(batch, D, g, g)`` and pixels ``(batch, 2, H, W)``.

    The example H, W differ from each other and from ``img_size`` so that no size specialises.
    """
    gen = torch.Generator().manual_seed(0)
    grid = config.img_size // config.patch_size
    feats = tuple(
        torch.randn(batch, config.embed_dim, grid, grid, generator=gen) for _ in range(config.num_blocks)
    )
    return (*feats, torch.randn(batch, 2, height, width, generator=gen))


def encoder_dynamic_shapes(batch: tuple[int, int, int]) -> tuple[dict[int, Any]]:
    low, _, high = batch
    return ({0: torch.export.Dim("batch", min=low, max=high)},)


def decoder_dynamic_shapes(
    config: EncoderConfig, batch: tuple[int, int, int]
) -> tuple[tuple[dict[int, Any], ...]]:
    """One spec per tensor of :class:`DecoderGraph`'s ``*inputs`` (a single varargs parameter)."""
    low, _, high = batch
    b = torch.export.Dim("batch", min=low, max=high)
    h = torch.export.Dim("height", min=8, max=MAX_SIZE)
    w = torch.export.Dim("width", min=8, max=MAX_SIZE)
    return ((*({0: b} for _ in range(config.num_blocks)), {0: b, 2: h, 3: w}),)


def cpu_copy(module: nn.Module) -> nn.Module:
    """``module`` itself when all its tensors are on the CPU, else a CPU copy (the caller's stays put)."""
    tensors = [*module.parameters(), *module.buffers()]
    if all(t.device.type == "cpu" for t in tensors):
        return module
    return copy.deepcopy(module).cpu()


def encoder_graph(encoder: FrozenEncoder) -> EncoderFeatures:
    """The module exported for the encoder: pruned, fp32, on the CPU (the caller's module is untouched)."""
    work = prepare_for_export(encoder, torch.float32)
    return EncoderFeatures(cpu_copy(work)).eval()  # type: ignore[arg-type]


def decoder_graph(denoiser: ViTDenoiser) -> DecoderGraph:
    return DecoderGraph(cpu_copy(denoiser)).eval()  # type: ignore[arg-type]


@contextlib.contextmanager
def _no_mha_fastpath() -> Any:
    """open_clip's fused attention fast path does not trace: switch it off for the export."""
    mha = torch.backends.mha
    before = mha.get_fastpath_enabled()
    mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        mha.set_fastpath_enabled(before)


def _rename_dims(proto: Any, names: dict[str, str]) -> None:
    """Give the exporter's symbolic dims (``s16``) readable names (``batch``) everywhere in the graph."""
    graph = proto.graph
    for value in [*graph.input, *graph.output, *graph.value_info]:
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param in names:
                dim.dim_param = names[dim.dim_param]


def _dim_names(proto: Any, input_name: str, wanted: dict[int, str]) -> dict[str, str]:
    for value in proto.graph.input:
        if value.name == input_name:
            dims = value.type.tensor_type.shape.dim
            return {dims[i].dim_param: name for i, name in wanted.items() if dims[i].dim_param}
    return {}


def to_onnx(
    module: nn.Module,
    args: tuple[torch.Tensor, ...],
    dynamic_shapes: tuple[Any, ...],
    *,
    input_names: list[str],
    output_names: list[str],
    dims: dict[int, str],
    metadata: dict[str, str],
) -> Any:
    """Export ``module`` with the dynamo exporter; returns the ``onnx.ModelProto`` (weights inside).

    The dims of the last input listed in ``dims`` (index -> name) are renamed in the graph, and
    ``metadata`` goes into the model's ``metadata_props``.
    """
    _features.import_optional("onnxscript")
    onnx = _features.import_optional("onnx")
    with _no_mha_fastpath(), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's own deprecation chatter
        with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
            program = torch.onnx.export(
                module,
                args,
                dynamo=True,
                dynamic_shapes=dynamic_shapes,
                input_names=input_names,
                output_names=output_names,
                external_data=False,
                verbose=False,
            )
    if program is None:
        raise BackendUnavailableError("torch.onnx.export returned no program; expected an ONNXProgram.")
    proto = program.model_proto
    _rename_dims(proto, _dim_names(proto, input_names[-1], dims))
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(proto)
    return proto


def export_encoder_onnx(
    encoder: FrozenEncoder,
    *,
    batch: tuple[int, int, int] = BACKEND_BATCH,
    metadata: dict[str, str] | None = None,
) -> Any:
    """``encoder.features`` as an ONNX model: ``pixels (batch, 3, S, S)`` -> ``features_i (batch, D, g, g)``."""
    low, opt, high = check_batch_range(batch)
    return to_onnx(
        encoder_graph(encoder),
        encoder_example(encoder.config, opt),
        encoder_dynamic_shapes((low, opt, high)),
        input_names=[ENCODER_INPUT],
        output_names=feature_names(encoder.config.num_blocks),
        dims={0: "batch"},
        metadata={"fastrecon_piece": "encoder", **(metadata or {})},
    )


def export_decoder_onnx(
    denoiser: ViTDenoiser,
    config: EncoderConfig,
    *,
    batch: tuple[int, int, int] = BACKEND_BATCH,
    metadata: dict[str, str] | None = None,
) -> Any:
    """``denoiser.decode`` as an ONNX model: ``features_i (batch, D, g, g)``, ``pixels (batch, 2, height, width)``
    -> ``correction (batch, 2, height, width)``; batch, height and width dynamic."""
    low, opt, high = check_batch_range(batch)
    return to_onnx(
        decoder_graph(denoiser),
        decoder_example(config, opt),
        decoder_dynamic_shapes(config, (low, opt, high)),
        input_names=[*feature_names(config.num_blocks), DECODER_INPUT],
        output_names=[DECODER_OUTPUT],
        dims={0: "batch", 2: "height", 3: "width"},
        metadata={"fastrecon_piece": "decoder", **(metadata or {})},
    )


# --- files ---------------------------------------------------------------------------------------------


def write_atomic(path: Path, writer: Callable[[Path], object]) -> Path:
    """``writer(temp)`` into a temporary file beside ``path``, then ``os.replace`` it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.tmp-")
    os.close(handle)
    temp = Path(name)
    try:
        writer(temp)
        with open(temp, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(temp, 0o644)  # mkstemp creates 0600; cached and exported files are plain readable files
        os.replace(temp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
    return path


def save_proto(proto: Any, path: Path) -> Path:
    """Write an ``onnx.ModelProto`` atomically, then its ``.sha256`` sidecar (also atomically)."""
    onnx = _features.import_optional("onnx")
    write_atomic(path, lambda temp: onnx.save_model(proto, str(temp)))
    digest = sha256_file(path)
    write_atomic(path.with_name(path.name + SIDE_SUFFIX), lambda temp: temp.write_text(digest + "\n"))
    return path


def verified(path: Path) -> bool:
    """True when ``path`` exists and its bytes match its ``.sha256`` sidecar."""
    side = path.with_name(path.name + SIDE_SUFFIX)
    if not path.is_file() or not side.is_file():
        return False
    return side.read_text().strip() == sha256_file(path)


def versions() -> dict[str, str]:
    """The versions an exported graph depends on (part of the cache key and of export manifests)."""
    onnx = _features.import_optional("onnx")
    onnxscript = _features.import_optional("onnxscript")
    return {"torch": torch.__version__, "onnx": onnx.__version__, "onnxscript": onnxscript.__version__}


def opset_of(path: Path) -> int | None:
    """The default-domain opset an ONNX file was written with."""
    onnx = _features.import_optional("onnx")
    proto = onnx.load(str(path), load_external_data=False)
    for entry in proto.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    return None


def cache_key(model: ViTUnrolledNet, config_json: str, batch: tuple[int, int, int]) -> dict[str, Any]:
    """Everything the cached graphs of ``model`` depend on (its digest names the cache folder)."""
    return {
        "cache_format": CACHE_FORMAT,
        "config": json.loads(config_json),
        "weights_sha256": state_dict_sha256(model),
        "shapes": {
            "batch": list(batch),
            "img_size": model.encoder.config.img_size,
            "decoder_height_width": "dynamic",
        },
        "versions": versions(),
    }


def key_digest(key: dict[str, Any]) -> str:
    text = json.dumps(key, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def default_onnx_dir() -> Path:
    """``$FASTRECON_HOME/onnx``."""
    return fastrecon_home() / "onnx"


# --- ONNX Runtime ----------------------------------------------------------------------------------------


def providers_for(device: torch.device) -> list[Any]:
    """ONNX Runtime execution providers for ``device``: CPU; on CUDA, TensorRT / CUDA when present.

    A CUDA device without a CUDA execution provider is refused (running the graphs on the CPU instead
    would be a silent fallback).
    """
    ort = _features.import_optional("onnxruntime")
    available = list(ort.get_available_providers())
    if device.type != "cuda":
        return ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" not in available:
        raise BackendUnavailableError(
            f"device is {device}, but this onnxruntime has no CUDA execution provider (available: "
            f"{', '.join(available)}); install onnxruntime-gpu, or load with device='cpu'."
        )
    index = device.index if device.index is not None else torch.cuda.current_device()
    chosen: list[Any] = []
    if "TensorrtExecutionProvider" in available:
        chosen.append(("TensorrtExecutionProvider", {"device_id": index}))
    chosen.append(("CUDAExecutionProvider", {"device_id": index}))
    chosen.append("CPUExecutionProvider")
    return chosen


class OrtGraph:
    """One ONNX Runtime session: torch tensors in (via numpy on the CPU), torch tensors out on ``device``."""

    def __init__(self, path: Path, device: torch.device) -> None:
        ort = _features.import_optional("onnxruntime")
        self.path = Path(path)
        self.device = device
        options = ort.SessionOptions()
        options.log_severity_level = 3
        if device.type == "cpu":
            # As many threads as torch uses (torch.set_num_threads, `fastrecon bench --threads`): ONNX
            # Runtime's own default (all cores, spin-waiting) was 4x slower than 1 thread on a busy 2-core machine.
            options.intra_op_num_threads = torch.get_num_threads()
            options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), sess_options=options, providers=providers_for(device))
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.providers = list(self.session.get_providers())

    def __call__(self, *tensors: torch.Tensor) -> list[torch.Tensor]:
        if len(tensors) != len(self.input_names):
            raise InputError(
                f"{self.path.name} takes {len(self.input_names)} inputs {self.input_names}; got {len(tensors)}."
            )
        feeds = {
            name: t.detach().to("cpu", torch.float32).contiguous().numpy()
            for name, t in zip(self.input_names, tensors, strict=True)
        }
        outputs = self.session.run(self.output_names, feeds)
        return [torch.from_numpy(o).to(self.device) for o in outputs]


class OrtFeatures:
    """Drop-in for ``FrozenEncoder.features``: ``pixels (B, 3, S, S)`` -> ``num_blocks`` maps ``(B, D, g, g)``."""

    def __init__(self, graph: OrtGraph) -> None:
        self.graph = graph

    def __call__(self, pixels: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(m.to(pixels.dtype) for m in self.graph(pixels))


class OrtDecoder:
    """Drop-in for ``ViTDenoiser.decode``: features and pixels ``(N, 2, H, W)`` -> correction ``(N, 2, H, W)``."""

    def __init__(self, graph: OrtGraph) -> None:
        self.graph = graph

    def __call__(self, features: Sequence[torch.Tensor], pixels: torch.Tensor) -> torch.Tensor:
        return self.graph(*features, pixels)[0].to(pixels.dtype)


@dataclass
class OnnxFiles:
    """Where the graphs of one model live and how they were obtained."""

    folder: Path
    encoder: Path
    decoders: list[Path]
    cache_hits: int = 0
    exported: int = 0
    seconds: float = 0.0
    notes: dict[str, Any] = field(default_factory=dict)


def obtain_files(
    model: ViTUnrolledNet, *, root: Path | None = None, batch: tuple[int, int, int] = BACKEND_BATCH
) -> OnnxFiles:
    """The model's ONNX files from the cache, exporting (and storing) any that are missing or invalid."""
    start = time.perf_counter()
    config_json = _config_json(model)
    key = cache_key(model, config_json, batch)
    folder = (root or default_onnx_dir()) / key_digest(key)
    folder.mkdir(parents=True, exist_ok=True)
    key_file = folder / "key.json"
    if not key_file.is_file():
        write_atomic(key_file, lambda temp: temp.write_text(json.dumps(key, indent=2, sort_keys=True)))
    meta = {"fastrecon_config": config_json, "fastrecon_weights_sha256": key["weights_sha256"]}
    files = OnnxFiles(
        folder, folder / ENCODER_FILE, [folder / decoder_file(t) for t in range(len(model.cascades))]
    )

    def ensure(path: Path, make: Callable[[], Any]) -> None:
        if verified(path):
            files.cache_hits += 1
            return
        if path.exists():
            warnings.warn(
                f"cached ONNX file {path} does not match its sha256 sidecar; exporting it again.",
                RuntimeWarning,
                stacklevel=3,
            )
        save_proto(make(), path)
        files.exported += 1

    ensure(files.encoder, lambda: export_encoder_onnx(model.encoder, batch=batch, metadata=meta))
    for t, (cascade, path) in enumerate(zip(model.cascades, files.decoders, strict=True)):
        denoiser = cascade.denoiser
        ensure(
            path,
            lambda d=denoiser, t=t: export_decoder_onnx(  # type: ignore[misc]
                d, model.encoder.config, batch=batch, metadata={**meta, "fastrecon_cascade": str(t)}
            ),
        )
    files.seconds = time.perf_counter() - start
    return files


def _config_json(model: ViTUnrolledNet) -> str:
    """A description of the architecture when the model carries no registry config (tests, raw modules)."""
    config = model.encoder.config
    den = cast(ViTDenoiser, model.cascades[0].denoiser)
    return json.dumps(
        {
            "encoder": {k: str(v) for k, v in vars(config).items()},
            "num_cascades": len(model.cascades),
            "decoder_params": sum(p.numel() for p in den.parameters()),
            "skip_layers": list(den.skip_layers),
            "quantile": den.quantile,
            "stage_sizes": list(den.stage_sizes),
        },
        sort_keys=True,
    )


def install(
    model: ViTUnrolledNet, encoder: Path, decoders: Sequence[Path], device: torch.device
) -> list[str]:
    """Open sessions on the files and put them in the model's seams; returns the providers in use."""
    if len(decoders) != len(model.cascades):
        raise InputError(f"got {len(decoders)} decoder files for {len(model.cascades)} cascades.")
    enc = OrtGraph(encoder, device)
    model.set_encoder_features(OrtFeatures(enc))
    model.set_decoders([OrtDecoder(OrtGraph(path, device)) for path in decoders])
    return enc.providers


def check_vit(model: UnrolledNet, backend: str) -> ViTUnrolledNet:
    if not isinstance(model, ViTUnrolledNet):
        raise BackendUnavailableError(
            f"backend {backend!r} runs ViT-prior models (encoder and decoders as graphs); this is a "
            f"{type(model).__name__}, whose U-Nets have no export seam yet. Use backend 'eager', 'triton' or 'compile'."
        )
    return model


def _onnxruntime(model: UnrolledNet, device: torch.device, precision: str) -> ModuleRunner:
    vit = check_vit(model, "onnxruntime")
    _features.import_optional("onnxruntime")
    providers_for(device)  # refuse a CUDA device without a CUDA provider before exporting anything
    files = obtain_files(vit)
    providers = install(vit, files.encoder, files.decoders, device)
    details = {
        "runtime": "onnxruntime",
        "providers": providers,
        "onnx_dir": str(files.folder),
        "sessions_from_cache": files.exported == 0,
        "cache_hits": files.cache_hits,
        "exported": files.exported,
        "prepare_seconds": round(files.seconds, 3),
        "onnx_opset": opset_of(files.encoder),
        "graphs": "encoder + per-cascade decoders (dynamic batch, H, W); DC and complex parts in torch",
    }
    return ModuleRunner(model, "onnxruntime", precision, details=details)


ONNXRUNTIME = register_backend(
    Backend(
        "onnxruntime",
        ("fp32",),
        _onnxruntime,
        "ViT encoder and decoders as ONNX graphs run by ONNX Runtime (cached on disk); DC in torch",
    )
)

__all__ = [
    "ONNXRUNTIME",
    "OrtDecoder",
    "OrtFeatures",
    "OrtGraph",
    "cache_key",
    "export_decoder_onnx",
    "export_encoder_onnx",
    "install",
    "obtain_files",
    "providers_for",
    "save_proto",
    "verified",
    "versions",
]
