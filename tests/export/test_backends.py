"""The backend registry and the torch backends (eager reduced precision, compile) against the parity gate."""

from __future__ import annotations

import pytest
import torch

import fastrecon
from fastrecon import parity
from fastrecon.errors import BackendUnavailableError, MissingDependencyError, UnknownNameError
from fastrecon.export import get_backend, list_backends
from tests.helpers import (
    load_unregistered,
    masked_kspace,
    seed_nonzero_heads,
    tiny_varnet_config,
    tiny_vit_config,
    zero_filled,
)


@pytest.fixture(scope="module")
def tiny_vit() -> fastrecon.Reconstructor:
    """A tiny ViT model with seeded non-zero heads (a random model with zero heads returns its input)."""
    with pytest.warns(UserWarning, match="random"):
        recon = load_unregistered(tiny_vit_config("test-backends-vit"), device="cpu")
    seed_nonzero_heads(recon.model)
    return recon


@pytest.fixture(scope="module")
def demo() -> fastrecon.Reconstructor:
    return fastrecon.load("demo-x8", device="cpu")


def _input(recon: fastrecon.Reconstructor) -> torch.Tensor:
    if recon.config.name == "demo-x8":
        k, _ = masked_kspace(num=2, coils=8, height=64, width=56, accel=8, acs=10, seed=3)
    else:
        k, _ = masked_kspace(num=2, coils=4, height=32, width=24, seed=3)
    # The wiring check is meaningless on a model that returns zero-filled: require a clear difference.
    assert parity.compare(recon.reconstruct(k), zero_filled(k)).psnr_db < 60
    return k


def test_registry_lists_every_backend_and_answers_unknown_names() -> None:
    assert set(list_backends()) >= {"eager", "triton", "compile", "onnxruntime", "tensorrt"} - {"onnxruntime"}
    with pytest.raises(UnknownNameError, match="Available: .*compile.*Did you mean 'compile'"):
        get_backend("compiled")
    with pytest.raises(UnknownNameError, match="unknown precision 'fp8'"):
        fastrecon.load("demo-x8", device="cpu", precision="fp8")
    with pytest.raises(BackendUnavailableError, match="runs precision fp16, fp32; 'bf16' was asked for"):
        fastrecon.load("demo-x8", device="cpu", backend="tensorrt", precision="bf16")


@pytest.mark.parametrize("which", ["demo", "tiny_vit"])
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_eager_reduced_precision_passes_its_gate(
    request: pytest.FixtureRequest, which: str, precision: str
) -> None:
    recon: fastrecon.Reconstructor = request.getfixturevalue(which)
    k = _input(recon)
    half = recon.with_backend("eager", precision)
    assert half.info()["network_dtype"] == {"bf16": "bfloat16", "fp16": "float16"}[precision]
    report = parity.check(recon, k, backend="eager", precision=precision)
    assert report.passed and not report.bit_identical, report


@pytest.mark.parametrize("which", ["demo", "tiny_vit"])
def test_compile_passes_the_fp32_gate_and_really_compiles(request: pytest.FixtureRequest, which: str) -> None:
    recon: fastrecon.Reconstructor = request.getfixturevalue(which)
    k = _input(recon)
    torch._dynamo.reset()
    compiled = recon.with_backend("compile", "fp32")
    report = parity.compare(compiled.reconstruct(k), recon.reconstruct(k))
    assert report.passed and not report.bit_identical, report  # bit-identical would mean eager ran
    info = compiled.info()
    assert info["backend"] == "compile" and info["compiled_shapes"] == 1 and info["dc"] == "auto:hybrid"


def test_compile_bf16_passes_the_reduced_gate(demo: fastrecon.Reconstructor) -> None:
    k = _input(demo)
    torch._dynamo.reset()
    report = parity.check(demo, k, backend="compile", precision="bf16")
    assert report.passed and not report.bit_identical, report


def test_compile_varnet_passes_the_fp32_gate() -> None:
    with pytest.warns(UserWarning, match="random"):
        recon = load_unregistered(tiny_varnet_config("test-backends-varnet"), device="cpu")
    k, _ = masked_kspace(num=2, coils=4, height=32, width=24, seed=5)
    torch._dynamo.reset()
    report = parity.check(recon, k, backend="compile")
    assert report.passed and not report.bit_identical, report


def test_tensorrt_without_tensorrt_names_the_pip_extra(demo: fastrecon.Reconstructor) -> None:
    try:
        import torch_tensorrt  # noqa: F401
    except Exception:  # noqa: BLE001  (its import raises a bare Exception without TensorRT's libraries)
        pass
    else:
        pytest.skip("torch_tensorrt is installed here")
    with pytest.raises(MissingDependencyError, match=r'pip install "fastrecon\[tensorrt\]"'):
        fastrecon.load("demo-x8", device="cpu", backend="tensorrt", precision="fp16")


def test_tensorrt_refuses_varnet_clearly() -> None:
    recon = fastrecon.load("demo-x8", device="cpu")
    with pytest.raises(BackendUnavailableError, match="E2E-VarNet models have none"):
        from fastrecon.export.tensorrt_backend import _tensorrt
        from fastrecon.models import build_model

        _tensorrt(build_model(tiny_varnet_config()), recon.device, "fp16")


def test_parity_gate_catches_a_wrong_scale_and_nan() -> None:
    ref = torch.rand(2, 16, 16) + 0.5
    assert not parity.compare(ref * 1.001, ref).passed  # 1e-3 relative: 60 dB < 100 dB
    assert parity.compare(ref * (1 + 1e-7), ref).passed
    nan = ref.clone()
    nan[0, 0, 0] = float("nan")
    report = parity.compare(nan, ref, precision="bf16")
    assert not report.passed and not report.finite and "non-finite" in report.reasons[0]
    assert not parity.compare(ref + 0.01 * torch.randn(2, 16, 16), ref, precision="fp16").passed


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_compile_on_cuda_uses_graphs_and_triton_dc(precision: str) -> None:
    """CUDA: torch.compile (reduce-overhead: CUDA graphs) + the Triton DC ops, against the parity gate."""
    recon = fastrecon.load("demo-x8", device="cuda")
    k, _ = masked_kspace(num=4, coils=8, height=128, width=112, accel=8, acs=10, seed=7)
    k = k.cuda()
    torch._dynamo.reset()
    fast = recon.with_backend("compile", precision)
    reference = recon.reconstruct(k)
    for _ in range(3):  # warm-up, capture, replay: every call must give the same numbers
        report = parity.compare(fast.reconstruct(k), reference, precision=precision)
        assert report.passed and not report.bit_identical, report
    info = fast.info()
    assert info["dc"] == "2d-triton" and info["mode"] == "reduce-overhead"


@pytest.mark.slow
def test_clip_x8_compile_passes_the_fp32_gate() -> None:
    """The full-size ViT-B model (random encoder, seeded non-zero heads) through torch.compile."""
    with pytest.warns(UserWarning, match="random"):
        recon = fastrecon.load("clip-x8", weights=None, device="cpu")
    seed_nonzero_heads(recon.model)
    k, _ = masked_kspace(num=1, coils=4, height=96, width=80, accel=8, acs=12, seed=11)
    assert parity.compare(recon.reconstruct(k), zero_filled(k)).psnr_db < 60
    torch._dynamo.reset()
    report = parity.check(recon, k, backend="compile")
    assert report.passed and not report.bit_identical, report
