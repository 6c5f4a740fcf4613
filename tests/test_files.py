"""Outputs never destroy inputs or old files: refused when they would, written atomically when allowed."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

import fastrecon
from fastrecon._files import atomic_write, check_output, same_file
from fastrecon.cli import main
from fastrecon.data.fastmri import write_fastmri, write_reconstruction
from fastrecon.errors import OutputExistsError
from fastrecon.physics import fft2c
from fastrecon.reconstruct_file import reconstruct_file
from fastrecon.weights import save_checkpoint
from tests.helpers import tiny_varnet_config


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".tmp" in p.name)


@pytest.fixture
def volume(tmp_path: Path) -> Path:
    """A small fastMRI-style file: 2 slices, 4 coils, 32 x 48."""
    gen = torch.Generator().manual_seed(0)
    image = torch.randn(2, 1, 32, 48, generator=gen, dtype=torch.complex64)
    maps = torch.randn(1, 4, 1, 1, generator=gen, dtype=torch.complex64)
    return write_fastmri(tmp_path / "vol.h5", fft2c(image * maps), target=image.abs()[:, 0])


RECONSTRUCT = ["--model", "demo-x8", "--accel", "4", "--center-fraction", "0.125", "--device", "cpu"]


def test_reconstruct_never_writes_over_its_input(volume: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = digest(volume)
    links = [volume, volume.parent / "." / volume.name]
    (volume.parent / "soft.h5").symlink_to(volume)
    os.link(volume, volume.parent / "hard.h5")
    links += [volume.parent / "soft.h5", volume.parent / "hard.h5"]
    for out in links:
        for extra in ([], ["--overwrite"]):
            assert main(["reconstruct", str(volume), "--out", str(out), *RECONSTRUCT, *extra]) == 2
            err = capsys.readouterr().err
            assert "is the input file" in err and err.count("\n") == 1, err
    assert digest(volume) == before
    with h5py.File(volume, "r") as handle:
        assert "kspace" in handle


def test_existing_output_needs_overwrite(volume: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = volume.parent / "recon.h5"
    out.write_bytes(b"an older result")
    assert main(["reconstruct", str(volume), "--out", str(out), *RECONSTRUCT]) == 2
    assert "already exists" in capsys.readouterr().err and out.read_bytes() == b"an older result"
    assert main(["reconstruct", str(volume), "--out", str(out), *RECONSTRUCT, "--overwrite"]) == 0
    with h5py.File(out, "r") as handle:
        assert handle["reconstruction"].shape == (2, 32, 48)
    assert leftovers(volume.parent) == []


def test_reconstruct_file_api_refuses_the_input_and_existing_outputs(volume: Path) -> None:
    recon = fastrecon.load("demo-x8", device="cpu")
    with pytest.raises(OutputExistsError, match="is the input file"):
        reconstruct_file(recon, volume, volume, acceleration=4, center_fraction=0.125, overwrite=True)
    out = volume.parent / "out.h5"
    reconstruct_file(recon, volume, out, acceleration=4, center_fraction=0.125)
    with pytest.raises(OutputExistsError, match="already exists"):
        reconstruct_file(recon, volume, out, acceleration=4, center_fraction=0.125)


def test_failed_write_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import fastrecon.data.fastmri as fastmri

    out = tmp_path / "recon.h5"
    write_reconstruction(out, np.ones((1, 4, 4), np.float32))
    before = digest(out)

    def crash(handle: h5py.File, attrs: object) -> None:
        raise RuntimeError("disk full (simulated)")

    monkeypatch.setattr(fastmri, "_write_attrs", crash)
    with pytest.raises(RuntimeError, match="simulated"):
        write_reconstruction(out, np.zeros((1, 4, 4), np.float32))
    assert digest(out) == before and leftovers(tmp_path) == []


def test_failed_checkpoint_write_keeps_the_old_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import safetensors.torch

    from fastrecon.models import build_model

    config = tiny_varnet_config()
    model = build_model(config)
    path = tmp_path / "model.safetensors"
    save_checkpoint(model, config, path)
    before = digest(path)
    real_save = safetensors.torch.save_file

    def crash_half_way(tensors: dict[str, torch.Tensor], filename: str, metadata: dict[str, str]) -> None:
        real_save(dict(list(tensors.items())[:2]), filename, metadata=metadata)
        raise OSError("killed while writing (simulated)")

    monkeypatch.setattr(safetensors.torch, "save_file", crash_half_way)
    with pytest.raises(OSError, match="simulated"):
        save_checkpoint(model, config, path)
    assert digest(path) == before and leftovers(tmp_path) == []
    monkeypatch.setattr(safetensors.torch, "save_file", real_save)
    with pytest.raises(OutputExistsError):
        save_checkpoint(model, config, path, overwrite=False)


def test_failed_png_keeps_the_old_picture(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from matplotlib.figure import Figure

    from fastrecon.plotting import save_comparison_png

    image = np.random.default_rng(0).random((16, 16)).astype(np.float32)
    out = save_comparison_png(image, image, image, tmp_path / "demo.png")
    before = digest(out)
    real_savefig = Figure.savefig

    def crash(self: Figure, fname: object, **kwargs: object) -> None:
        Path(str(fname)).write_bytes(b"\x89PNG half")
        raise OSError("killed while writing (simulated)")

    monkeypatch.setattr(Figure, "savefig", crash)
    with pytest.raises(OSError, match="simulated"):
        save_comparison_png(image, image, image, out)
    assert digest(out) == before and leftovers(tmp_path) == []
    monkeypatch.setattr(Figure, "savefig", real_savefig)
    save_comparison_png(image, 2 * image, image, out)  # the demo replaces its own previous picture
    assert digest(out) != before and out.read_bytes()[:4] == b"\x89PNG"


def test_atomic_write_and_check_output(tmp_path: Path) -> None:
    out = tmp_path / "sub" / "file.txt"
    with atomic_write(out) as temp:
        assert temp.parent == out.parent and temp.suffix == ".txt" and temp != out
        temp.write_text("one")
    assert out.read_text() == "one"
    with pytest.raises(ValueError, match="boom"), atomic_write(out) as temp:
        temp.write_text("two")
        raise ValueError("boom")
    assert out.read_text() == "one" and leftovers(out.parent) == []
    with pytest.raises(OutputExistsError, match="appeared"), atomic_write(out, overwrite=False) as temp:
        temp.write_text("three")
    assert out.read_text() == "one"
    with pytest.raises(OutputExistsError, match="already exists"):
        check_output(out)
    assert check_output(out, overwrite=True) == out
    with pytest.raises(OutputExistsError, match="is a folder"):
        check_output(tmp_path, overwrite=True)
    (tmp_path / "link.txt").symlink_to(out)
    os.link(out, tmp_path / "hard.txt")
    assert same_file(out, tmp_path / "link.txt") and same_file(out, tmp_path / "hard.txt")
    assert not same_file(out, tmp_path / "other.txt")
    with pytest.raises(OutputExistsError, match="is the input file"):
        check_output(tmp_path / "hard.txt", inputs=[out], overwrite=True)


def test_atomic_folder_is_all_or_nothing(tmp_path: Path) -> None:
    from fastrecon._files import atomic_folder

    out = tmp_path / "series"
    with atomic_folder(out) as temp:
        (temp / "a.dcm").write_bytes(b"first")
        assert not out.exists()
    assert sorted(p.name for p in out.iterdir()) == ["a.dcm"]
    with pytest.raises(OutputExistsError, match="appeared while"), atomic_folder(out) as temp:
        (temp / "b.dcm").write_bytes(b"second")
    with pytest.raises(OSError, match="simulated"), atomic_folder(out, overwrite=True) as temp:
        (temp / "b.dcm").write_bytes(b"second")
        raise OSError("simulated crash")
    assert sorted(p.name for p in out.iterdir()) == ["a.dcm"] and leftovers(tmp_path) == []
    with atomic_folder(out, overwrite=True) as temp:
        (temp / "b.dcm").write_bytes(b"second")
    assert sorted(p.name for p in out.iterdir()) == ["b.dcm"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["series"]  # the old folder is gone too
