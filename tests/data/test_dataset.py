"""SliceDataset over a folder of fastMRI and CMRxRecon files: indexing, masks, targets, no leaked handles."""

from __future__ import annotations

import pickle
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from fastrecon.data.dataset import SliceDataset, SliceSample
from fastrecon.errors import InputError
from fastrecon.physics import ifft2c, rss
from fastrecon.physics.masks import (
    CMRxUniformMask,
    EquispacedMaskFractionFunc,
    RandomMaskFunc,
    seed_from_name,
)
from tests.data._files import complex_random, write_fastmri_file, write_mat73

C, H, W = 3, 32, 24


def _open_files() -> int:
    return h5py.h5f.get_obj_count(h5py.h5f.OBJ_ALL, h5py.h5f.OBJ_FILE)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """Two fastMRI files (full-size target; cropped target) and one CMRxRecon cine plus its mask file."""
    k1 = complex_random((2, C, H, W), seed=1)
    t1 = rss(ifft2c(torch.from_numpy(k1))).numpy() * 1.5  # a stored target that differs from our RSS
    write_fastmri_file(tmp_path / "file_a.h5", k1, target=t1, recon_size=(H, W))
    k2 = complex_random((3, C, H, W), seed=2)
    write_fastmri_file(
        tmp_path / "file_b.h5", k2, target=np.ones((3, 16, 16), np.float32), recon_size=(16, 16)
    )
    cine = complex_random((H, W, C, 2, 2), seed=3)  # MATLAB (kx, ky, kc, kz, t)
    (tmp_path / "P001").mkdir()
    write_mat73(tmp_path / "P001" / "cine_sax.mat", {"kspace_full": cine})
    write_mat73(tmp_path / "P001" / "cine_sax_mask.mat", {"mask04": np.ones((H, W))})
    return tmp_path


def test_indexing_and_types(folder: Path) -> None:
    mask_func = EquispacedMaskFractionFunc([0.25], [2])
    dataset = SliceDataset(folder, mask_func)
    assert len(dataset) == 2 + 3 + 4
    assert [e.name for e in dataset.entries] == ["P001/cine_sax.mat", "file_a.h5", "file_b.h5"]
    sample = dataset[0]
    assert isinstance(sample, SliceSample)
    assert sample.masked_kspace.shape == (C, H, W) and sample.masked_kspace.dtype == torch.complex64
    assert sample.mask.shape == (W,) and sample.mask.dtype == torch.bool
    assert sample.target.shape == (H, W) and sample.target.dtype == torch.float32
    assert dataset.locate(4) == (folder.resolve() / "file_a.h5", 0)
    assert dataset[-1].fname == "file_b.h5" and dataset[-1].slice_index == 2
    with pytest.raises(IndexError):
        dataset[len(dataset)]


def test_masking_and_targets(folder: Path) -> None:
    mask_func = RandomMaskFunc([0.25], [2])
    dataset = SliceDataset(folder, mask_func)
    for index in range(len(dataset)):
        sample = dataset[index]
        path, local = dataset.locate(index)
        if path.suffix == ".h5":
            with h5py.File(path, "r") as handle:
                full = torch.from_numpy(handle["kspace"][local])
                stored = handle["reconstruction_rss"][local]
        else:
            with h5py.File(path, "r") as handle:
                raw = handle["kspace_full"][local // 2, local % 2]
                full = torch.from_numpy(raw["real"] + 1j * raw["imag"]).to(torch.complex64).transpose(-1, -2)
                stored = None
        expected_mask = mask_func(W, seed=seed_from_name(sample.fname))
        assert torch.equal(sample.mask, expected_mask)
        assert torch.equal(
            sample.masked_kspace, torch.where(expected_mask, full, torch.zeros((), dtype=full.dtype))
        )
        if stored is not None and stored.shape == (H, W):  # file_a: the file's own target and max
            np.testing.assert_array_equal(sample.target.numpy(), stored)
            with h5py.File(path, "r") as handle:
                assert sample.max_value == pytest.approx(float(handle.attrs["max"]))
        else:  # file_b (cropped target) and CMRxRecon: RSS of the fully sampled coil images
            torch.testing.assert_close(sample.target, rss(ifft2c(full.unsqueeze(0)))[0])
            assert sample.max_value == pytest.approx(float(sample.target.max()))
        assert sample.has_target


def test_one_mask_per_file_and_reproducible(folder: Path) -> None:
    mask_func = RandomMaskFunc([0.25], [2])
    a = SliceDataset(folder, mask_func)
    b = SliceDataset(folder, RandomMaskFunc([0.25], [2]))
    masks_b = [b[i].mask for i in range(len(b))]
    for i in range(len(a)):
        assert torch.equal(a[i].mask, masks_b[i])
    assert torch.equal(a[4].mask, a[5].mask)  # two slices of file_a
    unseeded = SliceDataset(folder, RandomMaskFunc([0.25], [2], seed=0), use_seed=False)
    assert not all(torch.equal(unseeded[4].mask, unseeded[4].mask) for _ in range(5))


def test_no_leaked_file_handles_and_pickle_safe(folder: Path) -> None:
    before = _open_files()
    dataset = SliceDataset(folder, CMRxUniformMask(4, acs_lines=4))
    assert _open_files() == before
    clone = pickle.loads(pickle.dumps(dataset))
    for sample, other in zip(dataset, (clone[i] for i in range(len(clone))), strict=False):
        assert torch.equal(sample.masked_kspace, other.masked_kspace)
    assert _open_files() == before
    loader = DataLoader(dataset, batch_size=2, shuffle=False)
    batches = list(loader)
    assert batches[0].masked_kspace.shape == (2, C, H, W) and list(batches[0].fname) == [
        "P001/cine_sax.mat",
        "P001/cine_sax.mat",
    ]
    assert _open_files() == before


def test_dataloader_workers(folder: Path) -> None:
    dataset = SliceDataset(folder, CMRxUniformMask(4, acs_lines=4))
    loader = DataLoader(dataset, batch_size=3, num_workers=2)
    masks = torch.cat([batch.mask for batch in loader])
    assert masks.shape == (len(dataset), W)
    assert torch.equal(masks[0], dataset[0].mask)


def test_undersampled_files_keep_their_own_sampling(tmp_path: Path) -> None:
    mask = np.zeros(W, dtype=bool)
    mask[::3] = True
    mask[W // 2 - 2 : W // 2 + 2] = True
    write_fastmri_file(
        tmp_path / "test_file.h5",
        complex_random((2, C, H, W), seed=4) * mask,
        mask=mask,
        lim=(W - 3, W // 2 - 1),
    )
    kus = complex_random((H, W, C, 1, 2), seed=5) * mask[None, :, None, None, None]
    write_mat73(tmp_path / "cine_sax_kus_Uniform4.mat", {"kus": kus})
    dataset = SliceDataset(tmp_path, RandomMaskFunc([0.08], [8]))  # ignored for undersampled files
    for sample in dataset:
        assert not sample.has_target and float(sample.target.abs().sum()) == 0.0
        expected = torch.from_numpy(mask.copy())
        if sample.fname.endswith(".h5"):
            # fastMRI's padding from the header: columns outside [left, right) are not acquired.
            left = W // 2 - (W // 2 - 1)
            expected[:left] = False
            expected[left + W - 2 :] = False
        assert torch.equal(sample.mask, expected), sample.fname
        assert sample.num_low_frequencies == 4


def test_fully_sampled_without_mask_func(folder: Path) -> None:
    dataset = SliceDataset([folder / "file_a.h5"])
    sample = dataset[0]
    assert bool(sample.mask.all()) and sample.num_low_frequencies == W
    assert dataset.entries[0].name == "file_a.h5"


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        SliceDataset(tmp_path / "missing")
    with pytest.raises(InputError, match="no .h5 or .mat"):
        SliceDataset(tmp_path)
    with pytest.raises(InputError, match="cmrx_key"):
        SliceDataset(tmp_path, cmrx_key="kspace_sub05")
