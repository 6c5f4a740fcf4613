"""TensorRT engines for the frozen ViT encoder, built with Torch-TensorRT's dynamo path (DESIGN.md section 4).

:func:`build_encoder_engine` exports ``encoder.features`` (:func:`export_encoder`), compiles it with
``torch_tensorrt.dynamo.compile`` with PyTorch fallback disabled, saves the program through an
:class:`EngineCache`, and returns an :class:`EncoderEngine`: a callable with the signature of
``FrozenEncoder.features``, so models can use it in its place.

Order of checks in :func:`build_encoder_engine`: arguments first (batch range, precision, device
string; pure), then CUDA (:class:`BackendUnavailableError` when torch sees no GPU), then the import
of ``torch_tensorrt`` and ``tensorrt`` (:class:`MissingDependencyError` naming
``pip install "fastrecon[tensorrt]"``). CUDA comes first because without a GPU installing TensorRT
would not help. Nothing here imports ``torch_tensorrt`` or touches CUDA at module import.

The pure parts are separate and tested without TensorRT: :func:`compile_settings` (the
Torch-TensorRT-version-dependent precision arguments), :func:`save_settings`, :func:`make_engine_key`
and :func:`torch_fallback_nodes` (what of a compiled graph would still run in PyTorch).
"""

from __future__ import annotations

import contextlib
import copy
import json
import operator
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fastrecon import _features
from fastrecon.errors import BackendUnavailableError, InputError, InputTypeError, UnknownNameError
from fastrecon.export.cache import EngineCache, EngineKey, state_dict_sha256
from fastrecon.export.encoder_export import (
    DEFAULT_BATCH,
    BatchRange,
    check_batch_range,
    export_encoder,
)
from fastrecon.models.encoders import FrozenEncoder

PRECISIONS = ("fp32", "fp16")
"""Engine precisions. ``fp16`` keeps LayerNorm/softmax in fp32 (DESIGN.md section 4: fp16 ViTs overflow there)."""

# ATen ops kept in fp32 under Torch-TensorRT's rule-based autocast. The pass compares the node's
# qualified target name (a string) with this set, so these are strings, not OpOverload objects.
# Both IR spellings: torch.export gives layer_norm / softmax.int, decompositions native_layer_norm / _softmax.
FP32_OPS = frozenset(
    {
        "torch.ops.aten.layer_norm.default",
        "torch.ops.aten.native_layer_norm.default",
        "torch.ops.aten.softmax.int",
        "torch.ops.aten._softmax.default",
    }
)

# Top-level call_function targets of a fully compiled graph that are not computation: symbolic-shape
# bookkeeping of the dynamic batch (sizes, SymInt arithmetic, asserts). Allowed only where the node
# does not produce a tensor: a Python ``operator.add`` on tensors would be PyTorch work.
_BOOKKEEPING_PREFIXES = ("_operator.", "torch.ops.aten.sym_", "torch.sym_", "torch.ops.aten._assert_scalar")


def parse_version(version: str) -> tuple[int, int]:
    """``"2.13.0+cu130"`` / ``"2.14.0.dev20260101"`` -> ``(2, 13)`` / ``(2, 14)``."""
    match = re.match(r"^\s*v?(\d+)\.(\d+)", str(version))
    if match is None:
        raise InputError(f"version {version!r}: expected 'MAJOR.MINOR[...]', e.g. '2.13.0'.")
    return int(match.group(1)), int(match.group(2))


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise UnknownNameError(f"unknown engine precision {precision!r}. Available: {', '.join(PRECISIONS)}.")
    return precision


def compile_settings(torch_tensorrt_version: str, precision: str) -> dict[str, Any]:
    """Keyword arguments for ``torch_tensorrt.dynamo.compile`` for this Torch-TensorRT version.

    Always: ``require_full_compilation=True`` and ``min_block_size=1`` (no PyTorch fallback; an
    unsupported op fails the build instead of running silently in PyTorch).

    ``fp16`` by version (checked against the release branches of pytorch/TensorRT):

    - ``>= 2.10``: rule-based autocast, ``enable_autocast=True``,
      ``autocast_low_precision_type=torch.float16``, with LayerNorm and softmax excluded
      (``autocast_excluded_ops``) so they stay fp32. In 2.10-2.12 autocast forces
      ``use_explicit_typing=True`` (the default there); 2.13 removed ``enabled_precisions`` and
      ``use_explicit_typing`` from ``dynamo.compile``, where they would fall into ``**kwargs`` and
      be ignored, i.e. a silent fp32 engine.
    - ``< 2.10`` (no autocast): TensorRT weak typing, ``enabled_precisions={torch.float16}``
      (``use_explicit_typing`` defaults to False there).

    ``fp32``: fp32 is every version's default; ``disable_tf32=True`` so matmuls and convolutions
    do not drop to TF32 (10-bit mantissa) on Ampere and newer.
    """
    check_precision(precision)
    version = parse_version(torch_tensorrt_version)
    settings: dict[str, Any] = {"require_full_compilation": True, "min_block_size": 1}
    if precision == "fp16":
        if version >= (2, 10):
            settings.update(
                enable_autocast=True,
                autocast_low_precision_type=torch.float16,
                autocast_excluded_ops=set(FP32_OPS),
            )
        else:
            settings.update(enabled_precisions={torch.float16})
    else:
        settings.update(disable_tf32=True)
    return settings


def save_settings(torch_tensorrt_version: str, trt_input: Any) -> dict[str, Any]:
    """Keyword arguments for ``torch_tensorrt.save(trt_gm, path, output_format="exported_program", ...)``.

    The saved program must keep the dynamic batch. ``>= 2.11``: pass the ``torch_tensorrt.Input``
    with min/opt/max shapes as ``arg_inputs``; ``save`` infers ``dynamic_shapes`` from it and, with
    ``retrace=True``, keeps the compiled graph's symbolic shapes. ``< 2.11``: ``save`` accepts only
    tensors and ``retrace=True`` re-exports with static shapes, so use ``retrace=False`` (the graph
    is serialised as compiled, symbolic shapes included).
    """
    if parse_version(torch_tensorrt_version) >= (2, 11):
        return {"output_format": "exported_program", "arg_inputs": [trt_input], "retrace": True}
    return {"output_format": "exported_program", "retrace": False}


def encoder_architecture(encoder: FrozenEncoder) -> str:
    """What pins the encoder's graph besides its weights: library, arch, blocks, size, options."""
    config = encoder.config
    options = json.dumps(config.timm_kwargs, sort_keys=True, default=str)
    return (
        f"{config.source}:{config.arch}:blocks={config.num_blocks}:img={config.img_size}:"
        f"patch={config.patch_size}:dim={config.embed_dim}:{options}"
    )


def make_engine_key(
    encoder: FrozenEncoder,
    *,
    batch: tuple[int, int, int],
    precision: str,
    gpu_name: str,
    sm: tuple[int, int],
    tensorrt_version: str,
    cuda_version: str | None,
    torch_version: str,
    torch_tensorrt_version: str,
) -> EngineKey:
    """The cache key of an engine for ``encoder`` built in the given environment (pure, no GPU needed)."""
    if not isinstance(encoder, FrozenEncoder):
        raise InputTypeError(f"encoder is a {type(encoder).__name__}; expected a fastrecon FrozenEncoder.")
    return EngineKey(
        gpu_name=str(gpu_name),
        sm=(int(sm[0]), int(sm[1])),
        tensorrt_version=str(tensorrt_version),
        cuda_version=str(cuda_version),
        torch_version=str(torch_version),
        torch_tensorrt_version=str(torch_tensorrt_version),
        precision=check_precision(precision),
        batch=check_batch_range(batch),
        img_size=int(encoder.config.img_size),
        weights_sha256=state_dict_sha256(_pruned(encoder)),
        architecture=encoder_architecture(encoder),
        settings=settings_text(compile_settings(str(torch_tensorrt_version), precision)),
    )


def settings_text(settings: dict[str, Any]) -> str:
    """Canonical text of compile settings for the cache key (sets sorted, dtypes by name)."""

    def plain(value: Any) -> Any:
        if isinstance(value, set | frozenset):
            return sorted(plain(v) for v in value)
        return value if isinstance(value, bool | int | float | str) or value is None else str(value)

    return json.dumps({k: plain(v) for k, v in settings.items()}, sort_keys=True, separators=(",", ":"))


def _pruned(encoder: FrozenEncoder) -> FrozenEncoder:
    """The weights an engine embeds: those of the pruned encoder (pruning a copy if needed)."""
    return encoder if encoder.is_pruned else copy.deepcopy(encoder).prune()


def engine_inputs(batch: tuple[int, int, int], img_size: int) -> list[tuple[int, int, int, int]]:
    """The ``(min, opt, max)`` input shapes ``(B, 3, S, S)`` of an engine's optimisation profile."""
    return [(b, 3, int(img_size), int(img_size)) for b in check_batch_range(batch)]


def torch_fallback_nodes(graph_module: torch.fx.GraphModule) -> list[str]:
    """Names of the top-level nodes of a compiled graph that would run in PyTorch, not TensorRT.

    A fully compiled graph calls TensorRT engine submodules (not ``fx.GraphModule``) and otherwise
    only unpacks outputs (``getitem``) and computes symbolic sizes (no tensor results). Reported: ``call_module`` of a
    ``GraphModule`` (the partitioner's ``_run_on_gpu_*`` PyTorch segments), any other
    ``call_function``/``call_method``, and ``"<no TensorRT engine>"`` when there is no engine at all.
    """
    found: list[str] = []
    engines = 0
    for node in graph_module.graph.nodes:
        if node.op == "call_module":
            target = graph_module.get_submodule(str(node.target))
            if isinstance(target, torch.fx.GraphModule) or str(node.target).startswith("_run_on_gpu"):
                found.append(f"{node.name} (PyTorch submodule {node.target})")
            else:
                engines += 1
        elif node.op == "call_function":
            name = _qualified_name(node.target)
            if node.target is operator.getitem:  # unpacks an engine's outputs; computes nothing
                continue
            makes_tensor = isinstance(node.meta.get("val"), torch.Tensor)
            if name.startswith(_BOOKKEEPING_PREFIXES) and not makes_tensor:
                continue
            found.append(f"{node.name} ({name})")
        elif node.op == "call_method":
            found.append(f"{node.name} (method {node.target})")
    if engines == 0:
        found.append("<no TensorRT engine>")
    return found


def _qualified_name(target: Any) -> str:
    try:
        return str(torch.fx.node._get_qualified_name(target))
    except Exception:  # noqa: BLE001 - odd targets (lambdas, builtins): fall back to repr
        return repr(target)


class EncoderEngine:
    """A built encoder engine: ``engine(pixels (B, 3, S, S)) -> num_blocks x (B, D, g, g)``.

    Drop-in for ``FrozenEncoder.features``. ``B`` must lie in the built ``batch`` range and the
    pixels must be on the engine's CUDA device. The engine runs in fp32 input (fp16 inside for
    ``precision="fp16"``); outputs come back in the pixels' dtype. No autograd through the engine.

    Attributes for reporting: ``cache_hit`` (loaded from the cache rather than built),
    ``build_seconds`` (wall time to obtain the engine: loading on a hit; export, compile and save
    on a miss), ``key`` and ``path`` (the cache file, ``None`` without a cache).
    """

    def __init__(
        self,
        module: Callable[[torch.Tensor], Any],
        *,
        batch: BatchRange,
        img_size: int,
        device: torch.device,
        precision: str,
        key: EngineKey | None = None,
        cache_hit: bool = False,
        build_seconds: float = 0.0,
        path: Path | None = None,
        input_dtype: torch.dtype = torch.float32,
    ) -> None:
        self.module = module
        self.batch = check_batch_range(batch)
        self.img_size = int(img_size)
        self.device = torch.device(device)
        self.precision = check_precision(precision)
        self.key = key
        self.cache_hit = bool(cache_hit)
        self.build_seconds = float(build_seconds)
        self.path = path
        self.input_dtype = input_dtype

    def __repr__(self) -> str:
        return (
            f"EncoderEngine(precision={self.precision!r}, batch={self.batch}, img_size={self.img_size}, "
            f"device={str(self.device)!r}, cache_hit={self.cache_hit}, build_seconds={self.build_seconds:.1f})"
        )

    def check_input(self, pixels: torch.Tensor) -> None:
        """Raise :class:`InputError` / :class:`InputTypeError` unless ``pixels`` fits the engine."""
        if not isinstance(pixels, torch.Tensor):
            raise InputTypeError(
                f"pixels is a {type(pixels).__name__}; expected a torch.Tensor (B, 3, S, S)."
            )
        size = self.img_size
        if pixels.ndim != 4 or tuple(pixels.shape[1:]) != (3, size, size):
            raise InputError(
                f"pixels have shape {tuple(pixels.shape)}; this engine expects (B, 3, {size}, {size})."
            )
        if pixels.is_complex() or not pixels.is_floating_point():
            raise InputTypeError(f"pixels have dtype {pixels.dtype}; expected a real floating-point dtype.")
        low, _, high = self.batch
        if not low <= pixels.shape[0] <= high:
            raise InputError(
                f"batch {pixels.shape[0]} is outside this engine's range {low}..{high} "
                f"(built with batch={self.batch}); split the batch or rebuild with a wider range."
            )
        if pixels.device != self.device:
            raise InputError(
                f"pixels are on {pixels.device}; this engine runs on {self.device}. Move them with .to({str(self.device)!r})."
            )

    def __call__(self, pixels: torch.Tensor) -> tuple[torch.Tensor, ...]:
        self.check_input(pixels)
        with torch.no_grad():
            out = self.module(pixels.to(self.input_dtype).contiguous())
        maps = tuple(out) if isinstance(out, list | tuple) else (out,)
        return tuple(m.to(pixels.dtype) for m in maps)


def build_encoder_engine(
    encoder: FrozenEncoder,
    *,
    batch: tuple[int, int, int] = DEFAULT_BATCH,
    precision: str = "fp16",
    cache: EngineCache | None = None,
    device: str | torch.device = "cuda",
) -> EncoderEngine:
    """Build (or load from ``cache``) a TensorRT engine for ``encoder.features``.

    Args:
        encoder: the frozen encoder; it is not modified (export works on a pruned copy on ``device``).
        batch: ``(min, opt, max)`` batch sizes of the engine's optimisation profile (``opt >= 2``).
        precision: ``"fp16"`` (LayerNorm/softmax kept fp32) or ``"fp32"``.
        cache: where to look for and store the engine; ``None`` builds every time and stores nothing.
        device: a CUDA device.

    Raises:
        InputError / UnknownNameError: bad ``batch`` or ``precision``.
        BackendUnavailableError: ``device`` is not CUDA, torch sees no GPU, or the compiled graph
            would still run parts in PyTorch.
        MissingDependencyError: ``torch_tensorrt`` / ``tensorrt`` cannot be imported.
    """
    start = time.perf_counter()
    batch = check_batch_range(batch)
    check_precision(precision)
    target = torch.device(device)
    if target.type != "cuda":
        raise BackendUnavailableError(
            f"device={str(device)!r}: TensorRT engines run on CUDA devices only; expected 'cuda' or 'cuda:N'."
        )
    _features.requires_cuda("building a TensorRT engine")
    torch_tensorrt = _features.import_optional("torch_tensorrt")
    tensorrt = _features.import_optional("tensorrt")
    if target.index is None:
        target = torch.device("cuda", torch.cuda.current_device())

    key = make_engine_key(
        encoder,
        batch=batch,
        precision=precision,
        gpu_name=torch.cuda.get_device_name(target),
        sm=torch.cuda.get_device_capability(target),
        tensorrt_version=str(tensorrt.__version__),
        cuda_version=torch.version.cuda,
        torch_version=torch.__version__,
        torch_tensorrt_version=str(torch_tensorrt.__version__),
    )
    return obtain_engine(torch_tensorrt, encoder, key=key, cache=cache, device=target, start=start)


def obtain_engine(
    torch_tensorrt: Any,
    encoder: FrozenEncoder,
    *,
    key: EngineKey,
    cache: EngineCache | None,
    device: torch.device,
    start: float | None = None,
) -> EncoderEngine:
    """The cache-or-build step of :func:`build_encoder_engine`, for an already checked environment.

    Uses only the ``torch_tensorrt`` module it is given (``Input``, ``dynamo.compile``, ``save``,
    ``load``, ``__version__``) and ``key`` (batch range and precision come from it), so the flow can
    be exercised with a stand-in module. On a hit the saved program is loaded, never rebuilt; on a
    miss the encoder is exported on ``device``, compiled without PyTorch fallback, and stored.
    """
    start = time.perf_counter() if start is None else start
    batch, precision, size = key.batch, key.precision, key.img_size
    trt_version = str(torch_tensorrt.__version__)
    common: dict[str, Any] = {"batch": batch, "img_size": size, "device": device, "precision": precision}

    if cache is not None:
        loaded = cache.load(key, lambda path: _load_program(torch_tensorrt, path, device))
        if loaded is not None:
            return EncoderEngine(
                loaded,
                **common,
                key=key,
                cache_hit=True,
                build_seconds=time.perf_counter() - start,
                path=cache.path_for(key),
            )

    settings = compile_settings(trt_version, precision)
    work = copy.deepcopy(encoder).to(device)  # never move, prune or cast the caller's module
    if not work.is_pruned:
        work.prune()
    # Export on the target device: attention lowers to device-specific ATen ops.
    program = export_encoder(work, batch=batch, dtype=torch.float32)
    shapes = engine_inputs(batch, size)
    trt_input = torch_tensorrt.Input(
        min_shape=shapes[0], opt_shape=shapes[1], max_shape=shapes[2], dtype=torch.float32
    )
    compiled = torch_tensorrt.dynamo.compile(program, inputs=[trt_input], device=device, **settings)
    leftovers = torch_fallback_nodes(compiled)
    if leftovers:
        raise BackendUnavailableError(
            f"Torch-TensorRT {trt_version} did not compile the whole encoder ({encoder.config.arch}) into "
            f"TensorRT; these parts would run in PyTorch: {', '.join(leftovers[:8])}"
            f"{' ...' if len(leftovers) > 8 else ''}. Refusing a partial engine."
        )
    path = None
    if cache is not None:
        saving = save_settings(trt_version, trt_input)
        path = cache.store(
            key,
            lambda temp: torch_tensorrt.save(compiled, str(temp), **saving),
            info={"build_seconds": round(time.perf_counter() - start, 3), "encoder": encoder.config.arch},
        )
    return EncoderEngine(
        compiled, **common, key=key, cache_hit=False, build_seconds=time.perf_counter() - start, path=path
    )


def _load_program(torch_tensorrt: Any, path: Path, device: torch.device) -> nn.Module:
    """``torch_tensorrt.load(path).module()``: the saved ExportedProgram as a callable module."""
    with torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext():
        program = torch_tensorrt.load(str(path))
    module = program.module()
    if not callable(module):
        raise InputTypeError(f"{path} did not load as an exported program; got {type(program).__name__}.")
    return module  # type: ignore[no-any-return]
