"""The README's first command: `fastrecon demo` with the bundled, checksum-pinned demo-x8 checkpoint."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import fastrecon
from fastrecon.cli import main
from fastrecon.weights import ZOO_DIR, sha256_file


def test_bundled_checkpoint_is_pinned() -> None:
    config = fastrecon.get_config("demo-x8")
    path = ZOO_DIR / config.weights.filename
    assert path.is_file(), "the demo checkpoint must ship inside the package"
    assert config.weights.sha256 == sha256_file(path)
    assert path.stat().st_size < 5 * 2**20
    assert config.encoder is not None and config.encoder.pretrained is None  # said plainly: not pretrained


def test_demo_beats_zero_filled(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "demo.png"
    assert main(["demo", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    rows = {
        m.group(1): (float(m.group(2)), float(m.group(3)), float(m.group(4)))
        for m in re.finditer(r"^\s+(zero-filled|demo-x8)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)$", printed, re.M)
    }
    assert set(rows) == {"zero-filled", "demo-x8"}, printed
    (zf_ssim, zf_psnr, zf_nmse), (model_ssim, model_psnr, model_nmse) = rows["zero-filled"], rows["demo-x8"]
    assert model_ssim > zf_ssim + 0.05 and model_psnr > zf_psnr + 3 and model_nmse < 0.5 * zf_nmse, printed
    assert out.is_file() and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 20_000
