"""The README's first command: `fastrecon demo` with the bundled, checksum-pinned demo-x8 checkpoint."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import fastrecon
from fastrecon.cli import main
from fastrecon.weights import ZOO_DIR, sha256_file

ROW = re.compile(r"^\s+(zero-filled|CG-SENSE|demo-x8)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)$", re.M)


def _rows(printed: str) -> dict[str, tuple[float, float, float]]:
    rows = {
        m.group(1): (float(m.group(2)), float(m.group(3)), float(m.group(4))) for m in ROW.finditer(printed)
    }
    assert set(rows) == {"zero-filled", "CG-SENSE", "demo-x8"}, printed
    return rows


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
    rows = _rows(printed)
    (zf_ssim, zf_psnr, zf_nmse), (model_ssim, model_psnr, model_nmse) = rows["zero-filled"], rows["demo-x8"]
    assert model_ssim > zf_ssim + 0.05 and model_psnr > zf_psnr + 3 and model_nmse < 0.5 * zf_nmse, printed
    assert rows["CG-SENSE"][0] > zf_ssim, printed  # the classical yardstick helps too
    assert out.is_file() and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 20_000


@pytest.mark.parametrize(
    ("source", "ssim_margin", "psnr_margin"), [("cardiac", 0.1, 3.0), ("epi", 0.1, 1.0), ("mr", 0.0, 0.0)]
)
def test_model_beats_zero_filled_on_held_out_sources(
    source: str, ssim_margin: float, psnr_margin: float
) -> None:
    """demo-x8 never trained on these: the demo's cardiac subject, nibabel's real EPI brain volume and
    pydicom's real MR image (where its lead is small: README, Demo numbers)."""
    from fastrecon.demo import run_case, source_image

    recon = fastrecon.load("demo-x8", device="cpu")
    scores = run_case(recon, source_image(source), seed=1234).metrics()
    zero_filled, model = scores["zero-filled"], scores["demo-x8"]
    assert model.ssim > zero_filled.ssim + ssim_margin, (source, scores)
    assert model.psnr > zero_filled.psnr + psnr_margin, (source, scores)


@pytest.mark.parametrize("suffix", [".png", ".npy"])
def test_demo_on_a_users_image(tmp_path: Path, capsys: pytest.CaptureFixture[str], suffix: str) -> None:
    import matplotlib.image

    yy, xx = np.mgrid[-1:1:90j, -1:1:120j]
    picture = ((xx**2 / 0.8 + yy**2 / 0.6) < 1) * (0.5 + 0.4 * np.cos(6 * xx) * np.sin(4 * yy))
    path = tmp_path / f"mine{suffix}"
    if suffix == ".png":
        matplotlib.image.imsave(path, picture, cmap="gray")
    else:
        np.save(path, picture)
    out = tmp_path / "mine-demo.png"
    assert main(["demo", "--image", str(path), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"96x128 mine{suffix} slice" in printed, printed  # longer side fitted to 128, aspect kept
    rows = _rows(printed)
    assert all(0 < ssim <= 1 and psnr > 10 for ssim, psnr, _ in rows.values()), printed
    assert out.is_file() and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_demo_image_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--image", str(tmp_path / "missing.png"), "--out", str(tmp_path / "x.png")]) == 2
    assert "missing.png" in capsys.readouterr().err
    bad = tmp_path / "notes.txt"
    bad.write_text("not an image")
    assert main(["demo", "--image", str(bad), "--out", str(tmp_path / "x.png")]) == 2
    assert "unknown suffix" in capsys.readouterr().err
