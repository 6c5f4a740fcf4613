"""`fastrecon evaluate` and `fastrecon reconstruct` end to end on files written in the real formats."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

import fastrecon
from fastrecon import register
from fastrecon.cli import main
from fastrecon.data.fastmri import write_fastmri
from fastrecon.data.simulate import simulate_cine
from fastrecon.metrics import evaluate_fastmri
from fastrecon.physics import ifft2c, rss
from fastrecon.physics.masks import EquispacedMaskFractionFunc, seed_from_name
from fastrecon.registry import _REGISTRY
from tests.data._files import write_mat73
from tests.helpers import tiny_vit_config


@pytest.fixture(scope="module")
def name() -> str:
    cfg = tiny_vit_config("test-eval-vit", cascades=2)
    register(cfg, overwrite=True)
    yield cfg.name
    _REGISTRY.pop(cfg.name, None)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    for i in range(2):
        sim = simulate_cine((32, 32), frames=2, num_coils=4, seed=i)
        write_fastmri(tmp_path / f"vol{i}.h5", sim.kspace, target=sim.target)
    return tmp_path


def test_evaluate_cli_table_csv_json(name: str, folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = folder / "results" / "eval"
    code = main(
        [
            "evaluate",
            "--model",
            name,
            "--weights",
            "none",
            "--data",
            str(folder),
            "--accel",
            "4",
            "--center-fraction",
            "0.125",
            "--protocol",
            "fastmri",
            "--out",
            str(out),
            "--device",
            "cpu",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "zero-filled" in printed and name in printed and "protocol fastmri" in printed
    with open(out.with_suffix(".csv")) as handle:
        rows = list(csv.DictReader(handle))
    assert [r["file"] for r in rows] == ["vol0.h5", "vol0.h5", "vol1.h5", "vol1.h5", "MEAN", "MEAN"]
    payload = json.loads(out.with_suffix(".json").read_text())
    assert payload["protocol"] == "fastmri" and payload["settings"]["acceleration"] == 4

    # Independent zero-filled numbers for vol1: fastMRI seeds the mask with the file name.
    with h5py.File(folder / "vol1.h5") as handle:
        kspace = torch.from_numpy(handle["kspace"][()])
        target = torch.from_numpy(handle["reconstruction_rss"][()])
    mask = EquispacedMaskFractionFunc([0.125], [4])(32, seed=seed_from_name("vol1.h5"))
    expected = evaluate_fastmri(target, rss(ifft2c(kspace * mask), dim=1))
    zf = next(r for r in rows if r["file"] == "vol1.h5" and r["method"] == "zero-filled")
    assert float(zf["ssim"]) == pytest.approx(expected.ssim, abs=1e-6)
    assert float(zf["psnr"]) == pytest.approx(expected.psnr, abs=1e-4)
    # An untrained ViT model returns its zero-filled input exactly, so its scores match zero-filled.
    model_row = next(r for r in rows if r["file"] == "vol1.h5" and r["method"] == name)
    assert float(model_row["ssim"]) == pytest.approx(expected.ssim, abs=1e-5)


def test_evaluate_cmrx_protocol(name: str, folder: Path) -> None:
    from fastrecon.evaluation import evaluate_folder

    recon = fastrecon.load(name, weights=None, device="cpu")
    report = evaluate_folder(
        recon, folder, acceleration=4, center_fraction=0.125, protocol="cmrxrecon", show_progress=False
    )
    assert report.protocol == "cmrxrecon-2023"
    assert report.means["zero-filled"].count == 4  # 2 volumes x 2 images, scored per image


def test_reconstruct_cli_fastmri_and_cmrx(name: str, folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "rec" / "vol0_recon.h5"
    assert (
        main(
            [
                "reconstruct",
                str(folder / "vol0.h5"),
                "--model",
                name,
                "--weights",
                "none",
                "--accel",
                "4",
                "--center-fraction",
                "0.125",
                "--out",
                str(out),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    with h5py.File(out) as handle:
        image = handle["reconstruction"][()]
        assert handle.attrs["model"] == name
    with h5py.File(folder / "vol0.h5") as handle:
        kspace = torch.from_numpy(handle["kspace"][()])
    mask = EquispacedMaskFractionFunc([0.125], [4])(32, seed=seed_from_name("vol0.h5"))
    np.testing.assert_allclose(image, rss(ifft2c(kspace * mask), dim=1).numpy(), rtol=1e-5, atol=1e-6)

    # CMRxRecon v7.3: already-undersampled `kspace_sub04` (MATLAB order kx, ky, kc, kz, t).
    sim = simulate_cine((32, 32), frames=2, num_coils=4, seed=5)
    cmrx_mask = np.zeros(32, dtype=bool)
    cmrx_mask[::4] = True
    cmrx_mask[12:20] = True
    under = sim.kspace.numpy() * cmrx_mask  # (t, c, kx, ky)
    matlab = under.transpose(2, 3, 1, 0)[:, :, :, None, :]  # (kx, ky, kc, kz=1, t)
    mat = write_mat73(tmp_path / "cine_lax.mat", {"kspace_sub04": matlab.astype(np.complex64)})
    out2 = tmp_path / "rec" / "cine.h5"
    assert (
        main(
            [
                "reconstruct",
                str(mat),
                "--model",
                name,
                "--weights",
                "none",
                "--out",
                str(out2),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    with h5py.File(out2) as handle:
        np.testing.assert_allclose(
            handle["reconstruction"][()],
            rss(ifft2c(torch.from_numpy(under)), dim=1).numpy(),
            rtol=1e-5,
            atol=1e-6,
        )


def test_cli_list_info_and_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list"]) == 0
    listed = capsys.readouterr().out
    assert "clip-x8" in listed and "varnet-x10" in listed and "demo-x8" in listed
    assert main(["info", "varnet-x8"]) == 0
    info = capsys.readouterr().out
    assert "29,936,966 trainable" in info and "not found" in info
    assert main(["info", "clip-x88"]) == 2
    assert "Did you mean" in capsys.readouterr().err
    assert (
        main(["reconstruct", "missing.h5", "--model", "varnet-x8", "--weights", "none", "--out", "x.h5"]) == 2
    )


def test_fastmri_protocol_crops_like_fastmri(name: str, tmp_path: Path) -> None:
    """640x368-style files: k-space larger than the 320x320-style reconstruction matrix in the header."""
    from fastrecon.evaluation import evaluate_folder
    from fastrecon.metrics import center_crop

    sim = simulate_cine((48, 40), frames=2, num_coils=4, seed=3)
    cropped_target = center_crop(sim.target, (24, 24))
    write_fastmri(tmp_path / "knee.h5", sim.kspace, target=cropped_target, recon_size=(24, 24))
    recon = fastrecon.load(name, weights=None, device="cpu")
    report = evaluate_folder(recon, tmp_path, acceleration=4, center_fraction=0.125, show_progress=False)
    mask = EquispacedMaskFractionFunc([0.125], [4])(40, seed=seed_from_name("knee.h5"))
    zero_filled = center_crop(rss(ifft2c(sim.kspace * mask), dim=1), (24, 24))
    expected = evaluate_fastmri(cropped_target, zero_filled)
    zf = report.means["zero-filled"]
    assert zf.ssim == pytest.approx(expected.ssim, abs=1e-5) and zf.psnr == pytest.approx(
        expected.psnr, abs=1e-3
    )
    uncropped = evaluate_fastmri(sim.target, rss(ifft2c(sim.kspace * mask), dim=1))
    assert abs(uncropped.psnr - zf.psnr) > 0.1  # the crop matters, so this test can tell


def test_cmrx_ranking_subset_on_a_cine_file(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from fastrecon.metrics import cmrx_run4ranking, evaluate_cmrx

    frames, slices = 4, 3
    sim = simulate_cine((36, 32), frames=frames * slices, num_coils=4, seed=7)
    full = sim.kspace.numpy().reshape(frames, slices, 4, 36, 32)  # (t, z, c, kx, ky), item n = t * Z + z
    matlab = full.transpose(3, 4, 2, 1, 0)  # MATLAB order (kx, ky, kc, kz, t)
    write_mat73(tmp_path / "cine_sax.mat", {"kspace_full": matlab.astype(np.complex64)})
    out = tmp_path / "eval"
    assert main([
        "evaluate", "--model", name, "--weights", "none", "--data", str(tmp_path), "--accel", "4",
        "--center-fraction", "0.125", "--protocol", "cmrxrecon", "--cmrx-ranking", "--out", str(out), "--device", "cpu",
    ]) == 0  # fmt: skip
    with open(out.with_suffix(".csv")) as handle:
        rows = list(csv.DictReader(handle))
    zf = next(r for r in rows if r["file"] == "cine_sax.mat" and r["method"] == "zero-filled")
    assert int(zf["count"]) == 3 * 2  # first three frames x central two slices

    kspace = torch.from_numpy(full.reshape(frames * slices, 4, 36, 32))
    mask = EquispacedMaskFractionFunc([0.125], [4])(32, seed=seed_from_name("cine_sax.mat"))
    target = rss(ifft2c(kspace), dim=1).reshape(frames, slices, 36, 32)
    zero_filled = rss(ifft2c(kspace * mask), dim=1).reshape(frames, slices, 36, 32)
    expected = evaluate_cmrx(cmrx_run4ranking(target), cmrx_run4ranking(zero_filled), year=2023)
    assert float(zf["ssim"]) == pytest.approx(expected.ssim, abs=1e-6)
    assert float(zf["psnr"]) == pytest.approx(expected.psnr, abs=1e-4)


def test_fastmri_data_range_is_the_volume_max_attribute(name: str, tmp_path: Path) -> None:
    """fastMRI scores a volume with data range ``attrs['max']`` (its validation passes it), not the maximum
    of the evaluated slices; files without the attribute fall back to the target volume's maximum."""
    from fastrecon.evaluation import evaluate_folder

    sim = simulate_cine((32, 32), frames=2, num_coils=4, seed=5)
    peak = float(sim.target.max())
    write_fastmri(tmp_path / "with" / "vol.h5", sim.kspace, target=sim.target, attrs={"max": 1.5 * peak})
    write_fastmri(tmp_path / "without" / "vol.h5", sim.kspace)  # no target, no 'max': RSS of the k-space
    mask = EquispacedMaskFractionFunc([0.125], [4])(32, seed=seed_from_name("vol.h5"))
    zero_filled = rss(ifft2c(sim.kspace * mask), dim=1)
    recon = fastrecon.load(name, weights=None, device="cpu")
    for folder, maxval in (("with", 1.5 * peak), ("without", None)):
        report = evaluate_folder(
            recon, tmp_path / folder, acceleration=4, center_fraction=0.125, show_progress=False
        )
        zf = report.means["zero-filled"]
        expected = evaluate_fastmri(sim.target, zero_filled, maxval=maxval)
        assert zf.ssim == pytest.approx(expected.ssim, abs=1e-6) and zf.psnr == pytest.approx(
            expected.psnr, abs=1e-4
        )
    by_volume_max = evaluate_fastmri(sim.target, zero_filled)
    with_attr = evaluate_fastmri(sim.target, zero_filled, maxval=1.5 * peak)
    assert with_attr.psnr - by_volume_max.psnr == pytest.approx(20 * np.log10(1.5), abs=1e-6)
    assert abs(with_attr.ssim - by_volume_max.ssim) > 1e-4  # so the test can tell which range was used
