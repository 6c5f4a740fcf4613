"""The ``onnxruntime`` backend: fp32 parity gate on demo-x8 and on a tiny ViT with non-zero heads,
proof that ONNX Runtime ran (not bit-identical, reported by ``info()``), and the on-disk cache."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

import fastrecon
from fastrecon import parity
from fastrecon.errors import BackendUnavailableError
from fastrecon.registry import register
from tests.helpers import masked_kspace, seed_nonzero_heads, tiny_varnet_config, tiny_vit_config, zero_filled


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh ``$FASTRECON_HOME`` for this module: the first load exports, later ones hit the cache."""
    path = tmp_path_factory.mktemp("fastrecon-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FASTRECON_HOME", str(path))
        yield path


def _assert_not_zero_filled(image: torch.Tensor, kspace: torch.Tensor, mask: torch.Tensor) -> None:
    margin = parity.compare(image, zero_filled(kspace, mask))
    assert margin.psnr_db < 60.0, (
        f"the model returns its zero-filled input ({margin}); parity would prove nothing"
    )


def test_demo_x8_passes_fp32_gate_and_reuses_the_cache(home: Path) -> None:
    kspace, mask = masked_kspace(num=3, coils=6, height=128, width=112, accel=8, acs=16, seed=1)
    eager = fastrecon.load("demo-x8", device="cpu")
    reference = eager.reconstruct(kspace, mask)
    _assert_not_zero_filled(reference, kspace, mask)

    ort = eager.with_backend("onnxruntime")
    info = ort.info()
    assert info["backend"] == "onnxruntime" and info["runtime"] == "onnxruntime"
    assert info["providers"] == ["CPUExecutionProvider"]
    assert info["sessions_from_cache"] is False and info["exported"] == 1 + 6
    assert Path(info["onnx_dir"]).parent == home / "onnx"
    report = parity.compare(ort.reconstruct(kspace, mask), reference, precision="fp32")
    assert report.passed, str(report)
    assert not report.bit_identical, "ONNX Runtime output is bit-identical to eager: did it run?"

    again = fastrecon.load("demo-x8", device="cpu", backend="onnxruntime")
    info2 = again.info()
    assert info2["sessions_from_cache"] is True and info2["exported"] == 0 and info2["cache_hits"] == 7
    assert info2["onnx_dir"] == info["onnx_dir"]
    assert not list(Path(info["onnx_dir"]).glob(".*tmp-*")), "temporary files left in the cache"
    report2 = parity.compare(again.reconstruct(kspace, mask), reference, precision="fp32")
    assert report2.passed, str(report2)


def test_tiny_vit_with_nonzero_heads_passes_gate_at_two_matrix_sizes(home: Path) -> None:
    register(tiny_vit_config("test-onnx-tiny-vit"), overwrite=True)
    eager = fastrecon.load("test-onnx-tiny-vit", weights=None, device="cpu")
    seed_nonzero_heads(eager.model, seed=0, std=0.05)
    ort = eager.with_backend("onnxruntime")
    # One decoder file per cascade serves every matrix size (dynamic H, W), odd sizes included.
    for shape in ((32, 24), (37, 29)):
        kspace, mask = masked_kspace(num=2, coils=4, height=shape[0], width=shape[1], accel=4, acs=6, seed=2)
        reference = eager.reconstruct(kspace, mask)
        _assert_not_zero_filled(reference, kspace, mask)
        report = parity.compare(ort.reconstruct(kspace, mask), reference, precision="fp32")
        assert report.passed, f"{shape}: {report}"
        assert not report.bit_identical


def test_a_corrupt_cached_file_is_exported_again(home: Path) -> None:
    register(tiny_vit_config("test-onnx-tiny-vit-1", cascades=1), overwrite=True)
    eager = fastrecon.load("test-onnx-tiny-vit-1", weights=None, device="cpu")
    seed_nonzero_heads(eager.model, seed=3, std=0.05)
    first = eager.with_backend("onnxruntime").info()
    decoder = Path(first["onnx_dir"]) / "decoder-00.onnx"
    decoder.write_bytes(decoder.read_bytes()[:-10])
    with pytest.warns(RuntimeWarning, match="does not match its sha256"):
        second = eager.with_backend("onnxruntime")
    assert second.info()["exported"] == 1 and second.info()["cache_hits"] == 1
    kspace, mask = masked_kspace(num=1, coils=4, height=32, width=24, accel=4, acs=6, seed=4)
    report = parity.compare(second.reconstruct(kspace, mask), eager.reconstruct(kspace, mask))
    assert report.passed, str(report)


def test_weights_change_the_cache_key(home: Path) -> None:
    from fastrecon.export.onnx import BACKEND_BATCH, _config_json, cache_key, key_digest

    register(tiny_vit_config("test-onnx-tiny-vit-key", cascades=1), overwrite=True)
    model = fastrecon.load("test-onnx-tiny-vit-key", weights=None, device="cpu").model
    before = key_digest(cache_key(model, _config_json(model), BACKEND_BATCH))  # type: ignore[arg-type]
    seed_nonzero_heads(model, seed=5, std=0.05)
    after = key_digest(cache_key(model, _config_json(model), BACKEND_BATCH))  # type: ignore[arg-type]
    assert before != after


def test_varnet_and_fp16_are_refused_with_the_working_alternatives(home: Path) -> None:
    register(tiny_varnet_config("test-onnx-tiny-varnet"), overwrite=True)
    with pytest.raises(BackendUnavailableError, match="'eager', 'triton' or 'compile'"):
        fastrecon.load("test-onnx-tiny-varnet", weights=None, device="cpu", backend="onnxruntime")
    with pytest.raises(BackendUnavailableError, match="runs precision fp32; 'fp16'"):
        fastrecon.load("demo-x8", device="cpu", backend="onnxruntime", precision="fp16")
