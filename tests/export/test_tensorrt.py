"""TensorRT encoder engines: the pure parts on any machine, the engine itself on a GPU with Torch-TensorRT.

CPU: compile/save settings per Torch-TensorRT version (checked against the argument names of each
release's ``torch_tensorrt.dynamo.compile``), cache keys, fallback detection on hand-made graphs,
the engine wrapper's input contract, and the errors without CUDA or without TensorRT.
GPU (``@pytest.mark.gpu``, skipped without CUDA or ``torch_tensorrt``): build, parity with eager,
batch range, cache hit and rebuild of a corrupt entry.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import operator
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import fastrecon._features as features
from fastrecon.errors import (
    BackendUnavailableError,
    InputError,
    InputTypeError,
    MissingDependencyError,
    UnknownNameError,
)
from fastrecon.export.cache import EngineCache, state_dict_sha256
from fastrecon.export.encoder_export import export_encoder
from fastrecon.export.tensorrt import (
    FP32_OPS,
    EncoderEngine,
    build_encoder_engine,
    compile_settings,
    engine_inputs,
    make_engine_key,
    obtain_engine,
    parse_version,
    save_settings,
    torch_fallback_nodes,
)
from fastrecon.models.encoders import FrozenEncoder, build_encoder
from fastrecon.registry import TINY_DEMO_ENCODER

DEEP_TINY = dataclasses.replace(TINY_DEMO_ENCODER, timm_kwargs={**TINY_DEMO_ENCODER.timm_kwargs, "depth": 8})
S = TINY_DEMO_ENCODER.img_size
PIP_HINT = 'pip install "fastrecon[tensorrt]"'

# Keyword arguments of ``torch_tensorrt.dynamo.compile`` that compile_settings may use, per release,
# read from pytorch/TensorRT (tags v2.9.0 and v2.13.0, branches release/2.10, 2.11, 2.12 and main
# at 2.14.0a0). Every release also takes **kwargs and silently ignores unknown names, so a wrong
# name (e.g. ``enabled_precisions`` on 2.13) would build an fp32 engine without a word.
_BASE = {"inputs", "device", "require_full_compilation", "min_block_size", "disable_tf32"}
_AUTOCAST = {"enable_autocast", "autocast_low_precision_type", "autocast_excluded_ops"}
COMPILE_PARAMS = {
    "2.9.0": _BASE | {"enabled_precisions", "use_explicit_typing"},
    "2.10.0": _BASE | {"enabled_precisions", "use_explicit_typing"} | _AUTOCAST,
    "2.11.0": _BASE | {"enabled_precisions", "use_explicit_typing"} | _AUTOCAST,
    "2.12.1": _BASE | {"enabled_precisions", "use_explicit_typing"} | _AUTOCAST,
    "2.13.0+cu130": _BASE | _AUTOCAST,
    "2.14.0.dev20260301+cu130": _BASE | _AUTOCAST,
}

# The build environment of a made-up H200 machine, for pure key tests.
ENV: dict[str, Any] = {
    "gpu_name": "NVIDIA H200",
    "sm": (9, 0),
    "tensorrt_version": "10.14.1",
    "cuda_version": "13.0",
    "torch_version": "2.14.1+cu130",
    "torch_tensorrt_version": "2.14.0",
}


@pytest.fixture(scope="module")
def encoder() -> FrozenEncoder:
    torch.manual_seed(2)
    return build_encoder(DEEP_TINY, None, warn_random=False)


# --- version-dependent settings -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ("2.13.0+cu130", (2, 13)),
        ("2.14.0.dev20260301", (2, 14)),
        ("v2.9.1", (2, 9)),
        ("10.14.1.48", (10, 14)),
    ],
)
def test_parse_version(version: str, expected: tuple[int, int]) -> None:
    assert parse_version(version) == expected


def test_parse_version_refuses_garbage() -> None:
    with pytest.raises(InputError, match="'nightly'"):
        parse_version("nightly")


@pytest.mark.parametrize("version", sorted(COMPILE_PARAMS))
@pytest.mark.parametrize("precision", ["fp16", "fp32"])
def test_compile_settings_use_only_arguments_that_release_has(version: str, precision: str) -> None:
    settings = compile_settings(version, precision)
    assert set(settings) | {"inputs", "device"} <= COMPILE_PARAMS[version]
    # No PyTorch fallback, in every version and precision.
    assert settings["require_full_compilation"] is True
    assert settings["min_block_size"] == 1


@pytest.mark.parametrize("version", ["2.10.0", "2.12.1", "2.13.0+cu130", "2.14.0.dev20260301+cu130"])
def test_fp16_uses_autocast_with_norms_and_softmax_in_fp32(version: str) -> None:
    settings = compile_settings(version, "fp16")
    assert settings["enable_autocast"] is True
    assert settings["autocast_low_precision_type"] is torch.float16
    assert settings["autocast_excluded_ops"] == set(FP32_OPS)
    assert "enabled_precisions" not in settings and "use_explicit_typing" not in settings


def test_fp16_before_autocast_uses_enabled_precisions() -> None:
    settings = compile_settings("2.9.0", "fp16")
    assert settings["enabled_precisions"] == {torch.float16}
    assert not set(settings) & {"enable_autocast", "autocast_low_precision_type"}


@pytest.mark.parametrize("version", sorted(COMPILE_PARAMS))
def test_fp32_is_plain_fp32_without_tf32(version: str) -> None:
    assert compile_settings(version, "fp32") == {
        "require_full_compilation": True,
        "min_block_size": 1,
        "disable_tf32": True,
    }


def test_unknown_precision_is_refused() -> None:
    with pytest.raises(UnknownNameError, match="'int8'.*Available: fp32, fp16"):
        compile_settings("2.13.0", "int8")


def test_fp32_ops_name_the_layer_norms_of_the_exported_encoder(encoder: FrozenEncoder) -> None:
    # Autocast compares qualified target names with FP32_OPS: a name that never occurs would
    # silently leave every LayerNorm in fp16.
    program = export_encoder(encoder, batch=(1, 2, 4))
    names = {
        torch.fx.node._get_qualified_name(n.target) for n in program.graph.nodes if n.op == "call_function"
    }
    layer_norms = {n for n in names if "layer_norm" in n}
    assert layer_norms and layer_norms <= FP32_OPS
    decomposed = program.run_decompositions()
    names = {
        torch.fx.node._get_qualified_name(n.target) for n in decomposed.graph.nodes if n.op == "call_function"
    }
    assert {n for n in names if "layer_norm" in n} <= FP32_OPS


def test_save_settings_keep_the_dynamic_batch_per_version() -> None:
    spec = object()  # stands in for torch_tensorrt.Input(min_shape, opt_shape, max_shape, dtype)
    for version in ("2.11.0", "2.13.0+cu130", "2.14.0"):
        assert save_settings(version, spec) == {
            "output_format": "exported_program",
            "arg_inputs": [spec],
            "retrace": True,
        }
    for version in ("2.9.0", "2.10.1"):
        assert save_settings(version, spec) == {"output_format": "exported_program", "retrace": False}


def test_engine_inputs() -> None:
    assert engine_inputs((1, 8, 32), 224) == [(1, 3, 224, 224), (8, 3, 224, 224), (32, 3, 224, 224)]
    with pytest.raises(InputError):
        engine_inputs((8, 1, 32), 224)


# --- cache keys -------------------------------------------------------------------------------------


def test_engine_key_from_given_environment(encoder: FrozenEncoder) -> None:
    key = make_engine_key(encoder, batch=(1, 8, 32), precision="fp16", **ENV)
    assert key.gpu_name == "NVIDIA H200" and key.sm == (9, 0)
    assert (key.tensorrt_version, key.cuda_version) == ("10.14.1", "13.0")
    assert (key.torch_version, key.torch_tensorrt_version) == ("2.14.1+cu130", "2.14.0")
    assert (key.precision, key.batch, key.img_size) == ("fp16", (1, 8, 32), S)
    assert key.weights_sha256 == state_dict_sha256(encoder)
    assert "vit_tiny_patch16_224" in key.architecture and "blocks=6" in key.architecture
    assert '"enable_autocast":true' in key.settings and "torch.ops.aten.layer_norm.default" in key.settings
    assert key.settings != make_engine_key(encoder, batch=(1, 8, 32), precision="fp32", **ENV).settings
    assert key == make_engine_key(encoder, batch=(1, 8, 32), precision="fp16", **ENV)


def test_engine_key_follows_the_weights_that_run(encoder: FrozenEncoder) -> None:
    key = make_engine_key(encoder, batch=(1, 8, 32), precision="fp16", **ENV)
    changed = copy.deepcopy(encoder)
    with torch.no_grad():
        changed.get_parameter("backbone.blocks.5.mlp.fc2.bias")[0] += 1e-3
    assert make_engine_key(changed, batch=(1, 8, 32), precision="fp16", **ENV).digest() != key.digest()
    # Blocks after num_blocks never run and are not in the engine: an unpruned encoder has the same key.
    torch.manual_seed(2)
    unpruned = build_encoder(DEEP_TINY, None, prune=False, warn_random=False)
    assert len(unpruned.blocks) == 8
    assert make_engine_key(unpruned, batch=(1, 8, 32), precision="fp16", **ENV) == key
    assert len(unpruned.blocks) == 8  # hashing pruned a copy


def test_engine_key_validates(encoder: FrozenEncoder) -> None:
    with pytest.raises(UnknownNameError):
        make_engine_key(encoder, batch=(1, 8, 32), precision="half", **ENV)
    with pytest.raises(InputError):
        make_engine_key(encoder, batch=(1, 1, 32), precision="fp16", **ENV)
    with pytest.raises(InputTypeError):
        make_engine_key(nn.Linear(2, 2), batch=(1, 8, 32), precision="fp16", **ENV)  # type: ignore[arg-type]


# --- fallback detection -----------------------------------------------------------------------------


class _StandInEngine(nn.Module):
    """Plays a TensorRT engine submodule: not an fx.GraphModule."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x, x


def _compiled_graph(
    *, torch_segment: bool = False, stray_op: bool = False, engine: bool = True
) -> torch.fx.GraphModule:
    """A graph shaped like Torch-TensorRT's output: engine call, output unpacking, symbolic sizes."""
    root = nn.Module()
    graph = torch.fx.Graph()
    x = graph.placeholder("pixels")
    graph.call_function(torch.ops.aten.sym_size.int, (x, 0))
    if engine:
        root.add_module("_run_on_acc_0", _StandInEngine())
        out = graph.call_module("_run_on_acc_0", (x,))
        a, b = (
            graph.call_function(operator.getitem, (out, 0)),
            graph.call_function(operator.getitem, (out, 1)),
        )
    else:
        a = b = x
    if torch_segment:
        inner = torch.fx.symbolic_trace(nn.ReLU())
        root.add_module("_run_on_gpu_1", inner)
        b = graph.call_module("_run_on_gpu_1", (b,))
    if stray_op:
        b = graph.call_function(torch.ops.aten.add.Tensor, (b, b))
    graph.output((a, b))
    return torch.fx.GraphModule(root, graph)


def test_fully_compiled_graph_has_no_fallback() -> None:
    gm = _compiled_graph()
    assert torch_fallback_nodes(gm) == []
    gm(torch.ones(2, 3))  # the stand-in graph is a valid module


def test_pytorch_segments_and_stray_ops_are_reported() -> None:
    (found,) = torch_fallback_nodes(_compiled_graph(torch_segment=True))
    assert "_run_on_gpu_1" in found
    (found,) = torch_fallback_nodes(_compiled_graph(stray_op=True))
    assert "torch.ops.aten.add.Tensor" in found
    # Python operators are size arithmetic only while they make no tensor.
    gm = _compiled_graph()
    (out,) = [n for n in gm.graph.nodes if n.op == "output"]
    with gm.graph.inserting_before(out):
        first = out.args[0][0]
        plus = gm.graph.call_function(operator.add, (first, first))
    plus.meta["val"] = torch.empty(2, 3)
    out.args = ((plus, out.args[0][1]),)
    (found,) = torch_fallback_nodes(gm)
    assert "_operator.add" in found
    assert torch_fallback_nodes(_compiled_graph(engine=False)) == ["<no TensorRT engine>"]


# --- the engine wrapper (a stand-in callable on the CPU) ----------------------------------------------


def _engine_around(
    encoder: FrozenEncoder, *, half_outputs: bool = False
) -> tuple[EncoderEngine, list[torch.dtype]]:
    seen: list[torch.dtype] = []

    def module(pixels: torch.Tensor) -> tuple[torch.Tensor, ...]:
        seen.append(pixels.dtype)
        out = encoder.features(pixels)
        return tuple(t.half() for t in out) if half_outputs else out

    engine = EncoderEngine(module, batch=(1, 2, 4), img_size=S, device=torch.device("cpu"), precision="fp16")
    return engine, seen


def test_engine_returns_feature_maps_in_the_callers_dtype(encoder: FrozenEncoder) -> None:
    engine, seen = _engine_around(encoder, half_outputs=True)
    pixels = torch.randn(3, 3, S, S)
    out = engine(pixels)
    assert len(out) == DEEP_TINY.num_blocks
    assert all(t.dtype == torch.float32 and t.shape == (3, 96, 8, 8) for t in out)
    out64 = engine(pixels.double())
    assert all(t.dtype == torch.float64 for t in out64)
    assert seen == [torch.float32, torch.float32]  # the engine itself always gets its fp32 input


@pytest.mark.parametrize("batch", [5, 16])
def test_engine_refuses_batches_outside_its_range(encoder: FrozenEncoder, batch: int) -> None:
    engine, seen = _engine_around(encoder)
    with pytest.raises(InputError, match=rf"batch {batch} is outside this engine's range 1\.\.4"):
        engine(torch.randn(batch, 3, S, S))
    assert seen == []


@pytest.mark.parametrize(
    ("pixels", "error", "match"),
    [
        (torch.randn(2, 1, S, S), InputError, r"\(B, 3, 128, 128\)"),
        (torch.randn(2, 3, 64, 64), InputError, r"\(B, 3, 128, 128\)"),
        (torch.randn(3, S, S), InputError, r"\(B, 3, 128, 128\)"),
        (torch.zeros(2, 3, S, S, dtype=torch.complex64), InputTypeError, "real floating-point"),
        (torch.zeros(2, 3, S, S, dtype=torch.int64), InputTypeError, "real floating-point"),
        (torch.zeros(2, 3, S, S, device="meta"), InputError, "this engine runs on cpu"),
    ],
)
def test_engine_refuses_bad_pixels(
    encoder: FrozenEncoder, pixels: torch.Tensor, error: type, match: str
) -> None:
    engine, seen = _engine_around(encoder)
    with pytest.raises(error, match=match):
        engine(pixels)
    assert seen == []


def test_engine_reports_how_it_was_obtained(encoder: FrozenEncoder) -> None:
    engine = EncoderEngine(
        encoder.features,
        batch=(1, 2, 4),
        img_size=S,
        device=torch.device("cpu"),
        precision="fp16",
        cache_hit=True,
        build_seconds=0.25,
    )
    assert engine.cache_hit is True and engine.build_seconds == 0.25
    assert "cache_hit=True" in repr(engine)


# --- build_encoder_engine without a GPU or without TensorRT ---------------------------------------------
# Order of checks: arguments, then CUDA, then the torch_tensorrt / tensorrt imports.


def test_no_cuda_is_reported_first(encoder: FrozenEncoder, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(features, "has_cuda", lambda: False)
    monkeypatch.setitem(sys.modules, "torch_tensorrt", None)  # missing too: CUDA is still named first
    with pytest.raises(BackendUnavailableError, match="CUDA"):
        build_encoder_engine(encoder)


def test_missing_torch_tensorrt_names_the_extra(
    encoder: FrozenEncoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(features, "has_cuda", lambda: True)
    monkeypatch.setitem(sys.modules, "torch_tensorrt", None)  # importing it raises, installed or not
    with pytest.raises(MissingDependencyError, match="torch_tensorrt") as info:
        build_encoder_engine(encoder)
    assert PIP_HINT in str(info.value)


def test_missing_tensorrt_names_the_extra(encoder: FrozenEncoder, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(features, "has_cuda", lambda: True)
    monkeypatch.setitem(sys.modules, "torch_tensorrt", type(sys)("torch_tensorrt"))
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(MissingDependencyError, match="'tensorrt'") as info:
        build_encoder_engine(encoder)
    assert PIP_HINT in str(info.value)


@pytest.mark.skipif(features.has_module("torch_tensorrt"), reason="torch_tensorrt is installed here")
def test_without_torch_tensorrt_installed(encoder: FrozenEncoder, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real import failure (no monkeypatched import), where CUDA is claimed."""
    monkeypatch.setattr(features, "has_cuda", lambda: True)
    with pytest.raises(MissingDependencyError) as info:
        build_encoder_engine(encoder)
    assert PIP_HINT in str(info.value)


def test_non_cuda_device_and_bad_arguments_fail_before_any_import(
    encoder: FrozenEncoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "torch_tensorrt", None)
    with pytest.raises(BackendUnavailableError, match="device='cpu'"):
        build_encoder_engine(encoder, device="cpu")
    with pytest.raises(InputError, match=">= 2"):
        build_encoder_engine(encoder, batch=(1, 1, 8))
    with pytest.raises(UnknownNameError, match="'bf8'"):
        build_encoder_engine(encoder, precision="bf8")


def test_importing_does_not_load_tensorrt_or_cuda() -> None:
    code = (
        "import sys, torch, fastrecon, fastrecon.export.tensorrt, fastrecon.export.cache, "
        "fastrecon.export.encoder_export\n"
        "loaded = [m for m in sys.modules if m.split('.')[0] in ('tensorrt', 'torch_tensorrt')]\n"
        "assert not loaded, loaded\n"
        "assert not torch.cuda.is_initialized()\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# --- the cache-or-build flow with a stand-in torch_tensorrt (CPU) ------------------------------------------


class _Opaque(nn.Module):
    """An 'engine' submodule: runs the exported program, but is not an fx.GraphModule."""

    def __init__(self, program: torch.export.ExportedProgram) -> None:
        super().__init__()
        self.program = program
        self.run = program.module()

    def forward(self, pixels: torch.Tensor) -> Any:
        return self.run(pixels)


class FakeTorchTensorRT:
    """Stands in for the ``torch_tensorrt`` module: records every call, 'compiles' into one opaque engine.

    ``partial=True`` returns the exported graph itself, as a compile that left every op in PyTorch would.
    Saving and loading go through ``torch.export.save`` / ``load`` of the exported program.
    """

    class Input:
        def __init__(self, **spec: Any) -> None:
            self.spec = spec

    def __init__(self, version: str = "2.13.0", *, partial: bool = False) -> None:
        self.__version__ = version
        self.partial = partial
        self.calls: list[tuple[str, Any]] = []
        self.dynamo = type(sys)("dynamo")
        self.dynamo.compile = self._compile  # type: ignore[attr-defined]

    def _compile(self, program: torch.export.ExportedProgram, **kwargs: Any) -> torch.fx.GraphModule:
        self.calls.append(("compile", kwargs))
        if self.partial:
            return program.module()  # type: ignore[return-value]
        root = nn.Module()
        root.add_module("_run_on_acc_0", _Opaque(program))
        graph = torch.fx.Graph()
        graph.output(graph.call_module("_run_on_acc_0", (graph.placeholder("pixels"),)))
        return torch.fx.GraphModule(root, graph)

    def save(self, module: torch.fx.GraphModule, path: str, **kwargs: Any) -> None:
        self.calls.append(("save", kwargs))
        engine = module.get_submodule("_run_on_acc_0")
        assert isinstance(engine, _Opaque)
        torch.export.save(engine.program, path)

    def load(self, path: str) -> torch.export.ExportedProgram:
        self.calls.append(("load", path))
        return torch.export.load(path)

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]


def _check_parity(engine: EncoderEngine, encoder: FrozenEncoder) -> None:
    for size in (1, 3, engine.batch[2]):
        pixels = torch.randn(size, 3, S, S)
        with torch.no_grad():
            want = encoder.features(pixels)
        for got, ref in zip(engine(pixels), want, strict=True):
            torch.testing.assert_close(
                got, ref, rtol=0, atol=8 * torch.finfo(torch.float32).eps * float(ref.abs().max())
            )


@pytest.mark.parametrize("version", ["2.13.0", "2.9.0"])
def test_flow_builds_once_then_loads_from_the_cache(
    encoder: FrozenEncoder, tmp_path: Path, version: str
) -> None:
    fake = FakeTorchTensorRT(version)
    key = make_engine_key(
        encoder, batch=(1, 2, 4), precision="fp16", **{**ENV, "torch_tensorrt_version": version}
    )
    cache = EngineCache(tmp_path)
    built = obtain_engine(fake, encoder, key=key, cache=cache, device=torch.device("cpu"))
    assert not built.cache_hit and built.build_seconds > 0 and built.path == cache.path_for(key)
    assert fake.names() == ["compile", "save"]
    compile_kwargs = fake.calls[0][1]
    (spec,) = compile_kwargs.pop("inputs")
    assert spec.spec == {
        "min_shape": (1, 3, S, S),
        "opt_shape": (2, 3, S, S),
        "max_shape": (4, 3, S, S),
        "dtype": torch.float32,
    }
    assert compile_kwargs == {"device": torch.device("cpu"), **compile_settings(version, "fp16")}
    save_kwargs = fake.calls[1][1]
    assert save_kwargs == save_settings(version, spec)  # the same Input object as compile got
    _check_parity(built, encoder)

    again = obtain_engine(fake, encoder, key=key, cache=cache, device=torch.device("cpu"))
    assert again.cache_hit and fake.names() == ["compile", "save", "load"]  # loaded, not rebuilt
    _check_parity(again, encoder)
    assert len(encoder.blocks) == DEEP_TINY.num_blocks and next(encoder.parameters()).device.type == "cpu"


def test_flow_rebuilds_a_corrupt_entry(encoder: FrozenEncoder, tmp_path: Path) -> None:
    fake, cache = FakeTorchTensorRT(), EngineCache(tmp_path)
    key = make_engine_key(encoder, batch=(1, 2, 4), precision="fp16", **ENV)
    path = obtain_engine(fake, encoder, key=key, cache=cache, device=torch.device("cpu")).path
    assert path is not None
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.warns(RuntimeWarning, match="sha256"):
        rebuilt = obtain_engine(fake, encoder, key=key, cache=cache, device=torch.device("cpu"))
    assert not rebuilt.cache_hit
    assert fake.names() == ["compile", "save", "compile", "save"]  # never loaded the bad file


def test_flow_refuses_a_partial_compile(encoder: FrozenEncoder, tmp_path: Path) -> None:
    fake, cache = FakeTorchTensorRT(partial=True), EngineCache(tmp_path)
    key = make_engine_key(encoder, batch=(1, 2, 4), precision="fp16", **ENV)
    with pytest.raises(BackendUnavailableError, match="would run in PyTorch.*torch.ops.aten"):
        obtain_engine(fake, encoder, key=key, cache=cache, device=torch.device("cpu"))
    assert "save" not in fake.names() and cache.load(key, lambda p: p) is None  # nothing stored


# --- on a GPU with Torch-TensorRT ------------------------------------------------------------------------


# Warnings raised inside the third-party compile stack are not ours to fix (pyproject turns them into errors).
def _third_party_warnings_ignored(test: Any) -> Any:
    for spec in (
        "ignore::DeprecationWarning",
        "ignore::FutureWarning",
        "ignore::UserWarning:torch_tensorrt",
        "ignore::UserWarning:tensorrt",
    ):
        test = pytest.mark.filterwarnings(spec)(test)
    return test


def _check_against_eager(engine: EncoderEngine, encoder: FrozenEncoder, precision: str) -> None:
    """Engine vs a float64 eager reference, within a bound derived from eager's own error.

    fp32: at most 3x the error of eager fp32 (TF32 off) plus 4 fp32 ulps of the output scale.
    fp16: at most 2x the error of eager ``torch.autocast`` fp16 (which also keeps LayerNorm and
    softmax in fp32) plus one fp16 ulp of the scale.
    """
    gpu32 = copy.deepcopy(encoder).cuda()
    gpu64 = copy.deepcopy(encoder).cuda().double()
    for size in (1, 3, engine.batch[2]):
        pixels = torch.randn(size, 3, S, S, device="cuda")
        got = engine(pixels)
        with torch.no_grad():
            ref = gpu64.features(pixels.double())
            if precision == "fp16":
                with torch.autocast("cuda", dtype=torch.float16):
                    eager = gpu32.features(pixels)
            else:
                eager = gpu32.features(pixels)
        for g, e, r in zip(got, eager, ref, strict=True):
            assert g.dtype == torch.float32 and g.shape == r.shape
            assert torch.isfinite(g).all()
            scale = float(r.abs().max())
            eager_err = float((e.double() - r).abs().max())
            if precision == "fp16":
                tol = 2 * eager_err + torch.finfo(torch.float16).eps * scale
            else:
                tol = 3 * eager_err + 4 * torch.finfo(torch.float32).eps * scale
            err = float((g.double() - r).abs().max())
            assert err <= tol, (
                f"{precision} batch {size}: error {err:.3g} > {tol:.3g} (eager {eager_err:.3g})"
            )


@pytest.mark.gpu
@_third_party_warnings_ignored
@pytest.mark.parametrize("precision", ["fp16", "fp32"])
def test_engine_matches_eager_and_is_cached(
    encoder: FrozenEncoder, precision: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("torch_tensorrt")
    # Eager fp32 in full fp32, so TF32 rounding does not inflate the reference error.
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    batch = (1, 2, 4)
    cache = EngineCache(tmp_path / "engines")
    engine = build_encoder_engine(encoder, batch=batch, precision=precision, cache=cache)
    assert not engine.cache_hit and engine.build_seconds > 0
    assert engine.path is not None and engine.path.is_file() and cache.temp_files() == []
    _check_against_eager(engine, encoder, precision)
    with pytest.raises(InputError, match="outside this engine's range"):
        engine(torch.randn(batch[2] + 1, 3, S, S, device="cuda"))

    # Same key: loaded, not rebuilt; the saved program keeps the whole batch range and the numbers.
    again = build_encoder_engine(encoder, batch=batch, precision=precision, cache=cache)
    assert again.cache_hit and again.key == engine.key
    assert again.build_seconds < engine.build_seconds
    _check_against_eager(again, encoder, precision)
    pixels = torch.randn(3, 3, S, S, device="cuda")
    for a, b in zip(again(pixels), engine(pixels), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=torch.finfo(torch.float16).eps * float(b.abs().max()))

    # A corrupt entry is rebuilt, never loaded.
    path = cache.path_for(engine.key)  # type: ignore[arg-type]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.warns(RuntimeWarning, match="sha256"):
        rebuilt = build_encoder_engine(encoder, batch=batch, precision=precision, cache=cache)
    assert not rebuilt.cache_hit
    assert build_encoder_engine(encoder, batch=batch, precision=precision, cache=cache).cache_hit


@pytest.mark.gpu
@_third_party_warnings_ignored
def test_compile_settings_match_the_installed_signature() -> None:
    torch_tensorrt = pytest.importorskip("torch_tensorrt")
    params = set(inspect.signature(torch_tensorrt.dynamo.compile).parameters)
    for precision in ("fp16", "fp32"):
        assert set(compile_settings(torch_tensorrt.__version__, precision)) <= params
    save_params = set(inspect.signature(torch_tensorrt.save).parameters)
    assert set(save_settings(torch_tensorrt.__version__, None)) <= save_params
