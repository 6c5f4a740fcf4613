"""``fastrecon export`` / :func:`fastrecon.export.artifact.export_model` and ``fastrecon.load(DIR)``.

The exported folder must reproduce the eager fp32 model through the fp32 parity gate, describe every
file in its manifest, and its ONNX files must run in plain onnxruntime without fastrecon.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import fastrecon
from fastrecon import parity
from fastrecon.cli import main
from fastrecon.errors import BackendUnavailableError, InputError
from fastrecon.export.artifact import MANIFEST, export_model, parse_batch
from fastrecon.export.cache import state_dict_sha256
from fastrecon.weights import sha256_file
from tests.helpers import masked_kspace, zero_filled


@pytest.fixture(scope="module")
def data() -> tuple[torch.Tensor, torch.Tensor]:
    return masked_kspace(num=3, coils=6, height=120, width=104, accel=8, acs=16, seed=1)


@pytest.fixture(scope="module")
def reference(data: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    kspace, mask = data
    image = fastrecon.load("demo-x8", device="cpu").reconstruct(kspace, mask)
    assert parity.compare(image, zero_filled(kspace, mask)).psnr_db < 60.0, "demo-x8 returns zero-filled"
    return image


def _export(out: Path, *extra: str) -> Path:
    assert main(["export", "demo-x8", *extra, "-o", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def onnx_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _export(tmp_path_factory.mktemp("art") / "demo-onnx", "--format", "onnx")


def test_onnx_export_runs_through_load_and_passes_the_gate(
    onnx_dir: Path, data: tuple[torch.Tensor, torch.Tensor], reference: torch.Tensor
) -> None:
    kspace, mask = data
    rec = fastrecon.load(onnx_dir, device="cpu")
    info = rec.info()
    assert info["backend"] == "onnxruntime" and info["format"] == "onnx" and info["artifact"] == str(onnx_dir)
    report = parity.compare(rec.reconstruct(kspace, mask), reference, precision="fp32")
    assert report.passed, str(report)
    assert not report.bit_identical
    with pytest.raises(BackendUnavailableError, match="exported artifact"):
        rec.with_backend("eager")
    with pytest.raises(BackendUnavailableError, match="runs on 'onnxruntime'"):
        fastrecon.load(onnx_dir, device="cpu", backend="compile")


def test_manifest_describes_every_file(onnx_dir: Path) -> None:
    manifest = json.loads((onnx_dir / MANIFEST).read_text())
    model = fastrecon.load("demo-x8", device="cpu").model
    assert manifest["weights_sha256"] == state_dict_sha256(model)
    assert manifest["config"]["name"] == "demo-x8" and manifest["format"] == "onnx"
    assert isinstance(manifest["onnx_opset"], int) and manifest["onnx_opset"] >= 18
    names = [e["file"] for e in manifest["files"]]
    assert names == ["encoder.onnx", *(f"decoder-{t:02d}.onnx" for t in range(len(model.cascades)))]
    for entry in manifest["files"]:
        assert sha256_file(onnx_dir / entry["file"]) == entry["sha256"]
    encoder = manifest["files"][0]
    size = model.encoder.config.img_size
    assert encoder["inputs"] == [{"name": "pixels", "shape": ["batch", 3, size, size], "dtype": "float32"}]
    assert len(encoder["outputs"]) == model.encoder.config.num_blocks
    decoder = manifest["files"][1]
    assert decoder["inputs"][-1]["shape"] == ["batch", 2, "height", "width"]
    assert decoder["outputs"] == [
        {"name": "correction", "shape": ["batch", 2, "height", "width"], "dtype": "float32"}
    ]
    assert sha256_file(onnx_dir / "torch-weights.safetensors") == manifest["torch_weights"]["sha256"]
    readme = (onnx_dir / "README.txt").read_text()
    assert "pixels" in readme and "correction" in readme and manifest["weights_sha256"] in readme
    assert sorted(p.name for p in onnx_dir.iterdir()) == sorted(
        [*names, MANIFEST, "README.txt", "torch-weights.safetensors"]
    )


def test_onnx_files_run_in_plain_onnxruntime_without_fastrecon(onnx_dir: Path, tmp_path: Path) -> None:
    """``python -I`` with only onnxruntime + numpy; outputs equal the torch encoder and decoder."""
    model = fastrecon.load("demo-x8", device="cpu").model
    size = model.encoder.config.img_size
    gen = torch.Generator().manual_seed(0)
    pixels = torch.randn(2, 3, size, size, generator=gen)
    image = torch.randn(2, 2, 50, 46, generator=gen)
    np.save(tmp_path / "pixels.npy", pixels.numpy())
    np.save(tmp_path / "image.npy", image.numpy())
    script = textwrap.dedent(
        f"""
        import sys
        import numpy as np
        import onnxruntime as ort
        folder, work = {str(onnx_dir)!r}, {str(tmp_path)!r}
        enc = ort.InferenceSession(folder + "/encoder.onnx", providers=["CPUExecutionProvider"])
        feats = enc.run(None, {{"pixels": np.load(work + "/pixels.npy")}})
        dec = ort.InferenceSession(folder + "/decoder-00.onnx", providers=["CPUExecutionProvider"])
        names = [i.name for i in dec.get_inputs()]
        out = dec.run(None, {{**dict(zip(names[:-1], feats)), "pixels": np.load(work + "/image.npy")}})[0]
        np.save(work + "/feats0.npy", feats[0])
        np.save(work + "/out.npy", out)
        assert not any(m.split(".")[0] == "fastrecon" for m in sys.modules), "fastrecon was imported"
        print("ok", out.shape)
        """
    )
    done = subprocess.run([sys.executable, "-I", "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "ok (2, 2, 50, 46)" in done.stdout
    with torch.no_grad():
        feats = model.encoder.features(pixels)
        expected = model.cascades[0].denoiser.decode(feats, image)
    assert np.abs(np.load(tmp_path / "feats0.npy") - feats[0].numpy()).max() < 1e-4
    assert np.abs(np.load(tmp_path / "out.npy") - expected.numpy()).max() < 1e-4


def test_exported_program_export_runs_through_load(
    tmp_path: Path, data: tuple[torch.Tensor, torch.Tensor], reference: torch.Tensor
) -> None:
    out = _export(tmp_path / "demo-ep", "--format", "exported-program", "--batch", "1:4:16")
    manifest = json.loads((out / MANIFEST).read_text())
    assert [e["file"] for e in manifest["files"]][:2] == ["encoder.pt2", "decoder-00.pt2"]
    program = torch.export.load(str(out / "decoder-00.pt2"))
    assert isinstance(program, torch.export.ExportedProgram)
    kspace, mask = data
    rec = fastrecon.load(out, device="cpu")
    assert rec.info()["runtime"] == "torch.export" and rec.batch_size == 16
    image = rec.reconstruct(kspace, mask)
    # The artifact's torch decoders are never loaded (zero heads: they would return zero-filled), so
    # a pass here means the exported programs ran.
    assert parity.compare(image, zero_filled(kspace, mask)).psnr_db < 60.0
    report = parity.compare(image, reference, precision="fp32")
    assert report.passed, str(report)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--batch", "8:1:2"], "expected min <= opt <= max"),
        (["--batch", "1:8"], "MIN:OPT:MAX"),
        (["--format", "onnnx"], "unknown export format 'onnnx'"),
        (["--precision", "fp16"], "format 'onnx' is exported in fp32"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(
    args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["export", "demo-x8", *args, "-o", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("fastrecon: error:") and message in err, err
    assert not (tmp_path / "x").exists()


def test_tensorrt_without_tensorrt_is_one_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from fastrecon import _features

    if _features.has_cuda() and _features.has_module("torch_tensorrt"):
        pytest.skip("TensorRT is available here")
    start = time.perf_counter()
    assert (
        main(["export", "demo-x8", "--format", "tensorrt", "--precision", "fp16", "-o", str(tmp_path / "t")])
        == 2
    )
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("fastrecon: error:"), err
    assert "CUDA" in err or "fastrecon[tensorrt]" in err
    assert "Traceback" not in err and time.perf_counter() - start < 30  # refused before any export
    assert not (tmp_path / "t").exists()


def test_a_non_empty_folder_is_refused_without_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "busy"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(InputError, match="not empty"):
        export_model("demo-x8", format="onnx", out_dir=out)
    assert (out / "keep.txt").read_text() == "mine"
    assert parse_batch("1:8:32") == (1, 8, 32)


@pytest.mark.slow
def test_clip_x8_random_weights_onnx_export_runs_in_plain_onnxruntime(tmp_path: Path) -> None:
    """The issue's acceptance test: ``fastrecon export clip-x8 --format onnx --weights none`` (minutes)."""
    start = time.perf_counter()
    out = tmp_path / "clip"
    assert main(["export", "clip-x8", "--format", "onnx", "--weights", "none", "-o", str(out)]) == 0
    seconds = time.perf_counter() - start
    sizes = {p.name: p.stat().st_size for p in out.iterdir()}
    print(f"clip-x8 onnx export: {seconds:.1f} s; sizes {sizes}")
    script = (
        "import sys, numpy as np, onnxruntime as ort\n"
        f"s = ort.InferenceSession({str(out / 'encoder.onnx')!r}, providers=['CPUExecutionProvider'])\n"
        "f = s.run(None, {'pixels': np.zeros((1, 3, 224, 224), np.float32)})\n"
        "assert 'fastrecon' not in sys.modules\n"
        "print(len(f), f[0].shape)\n"
    )
    done = subprocess.run([sys.executable, "-I", "-c", script], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "6 (1, 768, 14, 14)" in done.stdout
