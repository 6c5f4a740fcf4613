"""``reconstruct_file`` on fastMRI files follows fastMRI's own flow (issue 10, section 6).

The oracle is written here, independently of fastrecon's data path: fastMRI's mask function (vendored,
``tests/physics/_fastmri_subsample.py``) called as ``apply_mask(data, mask_func, seed=..., padding=...)`` does
it, the ACS block of ``get_pad_and_num_low_freqs`` with the mask function's count, the same model run in
float64 on the unscaled data, and ``run_pretrained_varnet_inference.py``'s crop.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import torch

import fastrecon
from fastrecon.data.simulate import simulate_cine
from fastrecon.errors import DataFormatError, InputError
from fastrecon.prepare import PreparedInput
from fastrecon.reconstruct_file import reconstruct_file
from tests.data._files import write_fastmri_file
from tests.models._fastmri_oracle import rel_err
from tests.physics import _fastmri_subsample as fm

H, W, COILS, SLICES = 64, 80, 6, 2
LEFT, RIGHT = 6, 74  # acquired columns [6, 74) of 80: the header's encoding limits
RECON = (48, 40)  # reconSpace matrix (x, y) = (H, W) crop


@pytest.fixture(scope="module")
def recon() -> fastrecon.Reconstructor:
    return fastrecon.load("demo-x8", device="cpu")


def _padded_volume(seed: int = 3) -> np.ndarray:
    """Fully sampled simulated k-space with the non-acquired edge columns zero, as in fastMRI's files."""
    kspace = simulate_cine((H, W), frames=SLICES, num_coils=COILS, seed=seed).kspace.numpy().copy()
    kspace[..., :LEFT] = 0
    kspace[..., RIGHT:] = 0
    return kspace


def _write_padded(path: Path, kspace: np.ndarray) -> Path:
    # fastMRI: padding_left = enc_y // 2 - center, padding_right = padding_left + maximum + 1.
    return write_fastmri_file(path, kspace, recon_size=RECON, lim=(RIGHT - LEFT - 1, W // 2 - LEFT))


def _fastmri_flow(
    model: torch.nn.Module,
    kspace: np.ndarray,
    fname: str,
    accel: float,
    center_fraction: float,
    *,
    padding: tuple[int, int] | None = (LEFT, RIGHT),
    num_low: int | None = None,
    crop: tuple[int, int] | None = RECON,
) -> tuple[torch.Tensor, int]:
    """fastMRI's flow in float64: ``VarNetDataTransform`` + ``VarNet(masked, mask, num_low_frequencies)``
    + the inference script's crop. Returns the images and the ACS count the model got."""
    data = torch.view_as_real(torch.from_numpy(kspace).to(torch.complex128))  # (N, C, H, W, 2)
    mask_func = fm.EquispacedMaskFractionFunc([center_fraction], [accel])
    shape = (1, *data.shape[-3:])  # apply_mask's shape for one slice (C, H, W, 2)
    mask, count = mask_func(shape, None, tuple(map(ord, fname)))
    if padding is not None:
        mask[..., : padding[0], :] = 0
        mask[..., padding[1] :, :] = 0
    masked = data * mask + 0.0
    count = count if num_low is None else num_low
    width = data.shape[-2]
    pad = (width - count + 1) // 2  # get_pad_and_num_low_freqs with a count
    acs = torch.zeros(1, 1, 1, width, dtype=torch.bool)
    acs[..., pad : pad + count] = True
    columns = mask.reshape(-1).bool()
    with torch.inference_mode():
        out = model(torch.view_as_complex(masked.contiguous()), columns, acs)
    if crop is not None:
        size = crop if out.shape[-1] >= crop[1] else (out.shape[-1], out.shape[-1])
        top, left = (out.shape[-2] - size[0]) // 2, (out.shape[-1] - size[1]) // 2
        out = out[..., top : top + size[0], left : left + size[1]]
    return out, count


class _Spy:
    """A runner wrapper that records every prepared chunk (to see the ACS block the model receives)."""

    def __init__(self, runner: Any) -> None:
        self.runner = runner
        self.static_batch = runner.static_batch
        self.seen: list[PreparedInput] = []

    def __call__(self, prepared: PreparedInput, output: Any) -> torch.Tensor:
        self.seen.append(prepared)
        return self.runner(prepared, output)  # type: ignore[no-any-return]

    def info(self) -> dict[str, Any]:
        return self.runner.info()  # type: ignore[no-any-return]


def _spied(recon: fastrecon.Reconstructor) -> tuple[fastrecon.Reconstructor, _Spy]:
    spy = _Spy(recon.runner)
    return dataclasses.replace(recon, runner=spy), spy  # type: ignore[arg-type]


def _read(path: Path) -> tuple[torch.Tensor, dict[str, Any]]:
    with h5py.File(path, "r") as handle:
        return torch.from_numpy(handle["reconstruction"][()]), dict(handle.attrs)


def test_padded_file_matches_fastmri_flow(tmp_path: Path, recon: fastrecon.Reconstructor) -> None:
    kspace = _padded_volume()
    source = _write_padded(tmp_path / "file_knee.h5", kspace)
    out = reconstruct_file(recon, source, tmp_path / "out.h5", acceleration=4, center_fraction=0.08)
    image, attrs = _read(out)
    model64 = copy.deepcopy(recon.model).double()
    expected, count = _fastmri_flow(model64, kspace, "file_knee.h5", 4, 0.08)
    assert image.shape == (SLICES, *RECON)
    assert rel_err(image.double(), expected) < 1e-5
    assert attrs["num_low_frequencies"] == count == round(0.08 * W)
    assert (attrs["padding_left"], attrs["padding_right"]) == (LEFT, RIGHT)
    assert tuple(attrs["crop_size"]) == RECON
    # The test can tell: without the padding (the mask drawn over all W columns), fastMRI's flow differs.
    unpadded, _ = _fastmri_flow(model64, kspace, "file_knee.h5", 4, 0.08, padding=None)
    assert rel_err(unpadded, expected) > 1e-4  # 1e-3 here: 100x the tolerance above


def test_no_crop_keeps_full_image(tmp_path: Path, recon: fastrecon.Reconstructor) -> None:
    kspace = _padded_volume(seed=5)
    source = _write_padded(tmp_path / "vol.h5", kspace)
    out = reconstruct_file(recon, source, tmp_path / "full.h5", acceleration=4, crop=False)
    image, attrs = _read(out)
    assert image.shape == (SLICES, H, W) and "crop_size" not in attrs
    expected, _ = _fastmri_flow(copy.deepcopy(recon.model).double(), kspace, "vol.h5", 4, 0.08, crop=None)
    assert rel_err(image.double(), expected) < 1e-5


def test_stored_mask_gets_padding_and_fastmri_rule(tmp_path: Path, recon: fastrecon.Reconstructor) -> None:
    """A test file's own mask: padding removed, ACS by fastMRI's rule (the inference script passes no count)."""
    kspace = _padded_volume(seed=7)
    stored = np.zeros(W, dtype=bool)
    stored[::4] = True
    stored[34:46] = True  # 12 centred lines
    stored[:2] = True  # inside the padding: fastMRI zeroes these mask entries
    source = write_fastmri_file(
        tmp_path / "test.h5",
        kspace * stored,
        mask=stored,
        recon_size=RECON,
        lim=(RIGHT - LEFT - 1, W // 2 - LEFT),
    )
    spied, spy = _spied(recon)
    image, _ = _read(reconstruct_file(spied, source, tmp_path / "o.h5"))
    assert image.shape == (SLICES, *RECON)
    prepared = spy.seen[0]
    assert not bool(prepared.mask[..., :LEFT].any())
    assert int(prepared.acs.sum()) == 12


def test_knee_x4_acs_count_from_mask_function(tmp_path: Path, recon: fastrecon.Reconstructor) -> None:
    """A 368-wide knee at x4: the mask function's 29 ACS lines reach the model (fastMRI's rule finds 28)."""
    width, height = 368, 32
    rng = np.random.default_rng(0)
    kspace = (
        rng.standard_normal((1, 4, height, width)) + 1j * rng.standard_normal((1, 4, height, width))
    ).astype(np.complex64)
    kspace *= 1.0 / (1.0 + ((np.arange(width) - width // 2) / 8.0) ** 2)  # a k-space centre
    source = write_fastmri_file(tmp_path / "knee.h5", kspace, recon_size=(height, 320))
    drawn = fastrecon.physics.masks.create_mask_for_mask_type("equispaced_fraction", [0.08], [4]).sample(
        width, seed=tuple(map(ord, "knee.h5"))
    )
    assert drawn.num_low_frequencies == 29

    spied, spy = _spied(recon)
    out = reconstruct_file(spied, source, tmp_path / "k.h5", acceleration=4)
    acs = spy.seen[0].acs.reshape(-1)
    assert int(acs.sum()) == 29 and bool(acs[170:199].all())
    # fastMRI's rule without a count (what fastrecon did before) gives 28 lines for the same mask.
    spy.seen.clear()
    spied.reconstruct(kspace * drawn.mask.numpy(), drawn.mask)
    assert int(spy.seen[0].acs.sum()) == 28

    image, attrs = _read(out)
    assert attrs["num_low_frequencies"] == 29 and image.shape == (1, height, 320)
    model64 = copy.deepcopy(recon.model).double()
    expected, count = _fastmri_flow(model64, kspace, "knee.h5", 4, 0.08, padding=None, crop=(height, 320))
    rule, _ = _fastmri_flow(model64, kspace, "knee.h5", 4, 0.08, padding=None, num_low=28, crop=(height, 320))
    assert count == 29
    assert rel_err(image.double(), expected) < 1e-5
    assert rel_err(rule, expected) > 1e-5  # the count matters to the output


def test_num_low_frequencies_checked(recon: fastrecon.Reconstructor) -> None:
    kspace = torch.from_numpy(_padded_volume())
    mask = torch.zeros(W, dtype=torch.bool)
    mask[::4] = True
    mask[36:44] = True  # 8 centred lines: columns 36..43
    with pytest.raises(InputError, match="column 35 is not fully sampled"):
        recon.reconstruct(kspace, mask, num_low_frequencies=10)
    with pytest.raises(InputError, match="num_low_frequencies is 1; expected 2..80"):
        recon.reconstruct(kspace, mask, num_low_frequencies=1)
    with pytest.raises(InputError, match="whole number"):
        recon.reconstruct(kspace, mask, num_low_frequencies=8.0)  # type: ignore[arg-type]
    torch.testing.assert_close(
        recon.reconstruct(kspace, mask, num_low_frequencies=8),
        recon.reconstruct(kspace, mask),
        rtol=0,
        atol=0,
    )


def test_cli_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from fastrecon.cli import main

    source = _write_padded(tmp_path / "vol.h5", _padded_volume(seed=9))
    args = ["reconstruct", str(source), "--model", "demo-x8", "--device", "cpu", "--accel", "4"]
    assert main([*args, "--out", str(tmp_path / "a.h5"), "--no-crop", "--num-low-frequencies", "6"]) == 0
    image, attrs = _read(tmp_path / "a.h5")
    assert image.shape == (SLICES, H, W) and attrs["num_low_frequencies"] == 6
    assert main([*args, "--out", str(tmp_path / "b.h5"), "--acs-lines", "12"]) == 2  # more than the mask's 6
    assert "column 34 is not fully sampled" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*args, "--out", str(tmp_path / "c.h5"), "--num-low-frequencies", "0"])


def test_encoding_limits_outside_the_kspace_are_refused(
    tmp_path: Path, recon: fastrecon.Reconstructor
) -> None:
    """Limits giving columns [86, 90) of 80: an all-zero mask would be reconstructed as nothing; the header
    is named instead."""
    path = write_fastmri_file(tmp_path / "bad.h5", _padded_volume(), recon_size=RECON, lim=(3, -46))
    with pytest.raises(DataFormatError, match=r"acquired phase-encode columns \[86, 90\)"):
        reconstruct_file(recon, path, tmp_path / "out.h5", acceleration=4, center_fraction=0.08)
    assert not (tmp_path / "out.h5").exists()


class _Recorder:
    """Stands in for a reconstructor: records the k-space it is given, returns its RSS of zero-filled data."""

    config = dataclasses.make_dataclass("Config", [("name", str)])("recorder")
    weights_path = None

    def __init__(self) -> None:
        self.seen: list[torch.Tensor] = []

    def reconstruct(self, kspace: torch.Tensor, mask: Any = None, **_: Any) -> torch.Tensor:
        self.seen.append(kspace)
        return torch.ones(kspace.shape[0], *kspace.shape[-2:])


def test_upper_case_suffix_is_read(tmp_path: Path) -> None:
    """Folder mode lists ``SCAN.H5`` as an input; the single-file path reads it as fastMRI .h5 too."""
    kspace = _padded_volume()[:1]
    write_fastmri_file(tmp_path / "SCAN.H5", kspace, recon_size=RECON)
    recorder = _Recorder()
    out = reconstruct_file(recorder, tmp_path / "SCAN.H5", tmp_path / "upper.h5")
    assert torch.equal(recorder.seen[0], torch.from_numpy(kspace)) and _read(out)[0].shape == (1, *RECON)
