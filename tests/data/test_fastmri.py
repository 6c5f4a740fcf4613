"""fastMRI reader and writers on files with the released layout."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from fastrecon.data.fastmri import (
    inspect_fastmri,
    parse_ismrmrd_header,
    read_fastmri,
    write_fastmri,
    write_reconstruction,
)
from fastrecon.errors import DataFormatError, InputError, InputTypeError
from tests.data._files import complex_random, fastmri_header, write_fastmri_file

N, C, H, W = 3, 4, 64, 46


@pytest.fixture
def train_file(tmp_path: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    kspace = complex_random((N, C, H, W), seed=0)
    target = np.random.default_rng(1).random((N, 32, 32)).astype(np.float32)
    path = write_fastmri_file(
        tmp_path / "file1000001.h5", kspace, target=target, recon_size=(32, 32), lim=(41, 23)
    )
    return path, kspace, target


def test_read_training_file(train_file) -> None:
    path, kspace, target = train_file
    volume = read_fastmri(path)
    assert volume.kspace.shape == (N, C, H, W) and volume.kspace.dtype == np.complex64
    np.testing.assert_array_equal(volume.kspace, kspace)
    np.testing.assert_array_equal(volume.target, target)
    assert volume.target_key == "reconstruction_rss" and volume.mask is None and not volume.single_coil
    assert volume.recon_size == (32, 32) and volume.encoded_size == (H, W)
    # fastMRI: padding_left = enc_y // 2 - center, padding_right = padding_left + maximum + 1
    assert volume.padding == (W // 2 - 23, W // 2 - 23 + 42)
    assert volume.attrs["acquisition"] == "CORPD_FBK" and isinstance(volume.attrs["acquisition"], str)
    assert volume.attrs["max"] == pytest.approx(float(target.max()))
    assert volume.slices == range(N)


def test_read_one_slice(train_file) -> None:
    path, kspace, target = train_file
    one = read_fastmri(path, index=2)
    assert one.kspace.shape == (1, C, H, W) and one.slices == range(2, 3)
    np.testing.assert_array_equal(one.kspace[0], kspace[2])
    assert one.target is not None
    np.testing.assert_array_equal(one.target[0], target[2])
    np.testing.assert_array_equal(read_fastmri(path, index=-1).kspace[0], kspace[-1])
    with pytest.raises(InputError, match="out of range"):
        read_fastmri(path, index=N)
    info = inspect_fastmri(path)
    assert (info.num_slices, info.num_coils, info.height, info.width) == (N, C, H, W)
    assert info.target_shape == (N, 32, 32)


def test_test_file_with_mask(tmp_path: Path) -> None:
    mask = np.zeros(W, dtype=bool)
    mask[::4] = True
    kspace = complex_random((N, C, H, W), seed=2) * mask
    path = write_fastmri_file(
        tmp_path / "file_test.h5", kspace, mask=mask, attrs={"acceleration": 4, "num_low_frequency": 8}
    )
    volume = read_fastmri(path)
    assert volume.target is None and volume.target_key is None
    np.testing.assert_array_equal(volume.mask, mask)
    assert volume.attrs["acceleration"] == 4 and volume.attrs["num_low_frequency"] == 8


def test_single_coil_gets_coil_axis(tmp_path: Path) -> None:
    kspace = complex_random((N, H, W), seed=3)
    path = tmp_path / "sc.h5"
    with h5py.File(path, "w") as handle:
        handle.create_dataset("kspace", data=kspace)
        handle.create_dataset("reconstruction_esc", data=np.abs(kspace).astype(np.float32))
    volume = read_fastmri(path)
    assert volume.single_coil and volume.kspace.shape == (N, 1, H, W)
    np.testing.assert_array_equal(volume.kspace[:, 0], kspace)
    assert volume.target_key == "reconstruction_esc"
    assert volume.recon_size is None and volume.padding is None  # no header in this file


def test_header_parser_handles_namespaces_and_missing_parts() -> None:
    header = parse_ismrmrd_header(fastmri_header(15, (640, 368), (320, 320), 334, 168, 30))
    assert header.encoded_size == (640, 368) and header.recon_size == (320, 320)
    assert header.padding == (368 // 2 - 168, 368 // 2 - 168 + 335)
    assert parse_ismrmrd_header(b"<ismrmrdHeader/>").recon_size is None
    with pytest.raises(DataFormatError, match="not valid XML"):
        parse_ismrmrd_header(b"<ismrmrdHeader>")


def test_errors_name_the_file_and_keys(tmp_path: Path) -> None:
    path = tmp_path / "wrong.h5"
    with h5py.File(path, "w") as handle:
        handle.create_dataset("data", data=np.zeros(3))
    with pytest.raises(DataFormatError) as info:
        read_fastmri(path)
    assert str(path) in str(info.value) and "'data'" in str(info.value) and "'kspace'" in str(info.value)
    good = write_fastmri_file(tmp_path / "good.h5", complex_random((N, C, H, W), seed=4))
    data = good.read_bytes()
    good.write_bytes(data[: len(data) // 3])
    with pytest.raises(DataFormatError, match="truncated"):
        read_fastmri(good)
    mat = tmp_path / "v5.h5"
    mat.write_bytes(b"MATLAB 5.0 MAT-file, Platform: posix".ljust(128, b" "))
    with pytest.raises(DataFormatError, match="v5"):
        read_fastmri(mat)


def test_write_reconstruction_round_trip(tmp_path: Path) -> None:
    recon = torch.rand(N, 32, 32)
    path = write_reconstruction(tmp_path / "out" / "file1000001.h5", recon, attrs={"acceleration": 4})
    with h5py.File(path, "r") as handle:
        assert list(handle.keys()) == ["reconstruction"]
        assert handle["reconstruction"].dtype == np.float32
        np.testing.assert_array_equal(handle["reconstruction"][()], recon.numpy())
        assert handle.attrs["acceleration"] == 4
    with pytest.raises(InputTypeError):
        write_reconstruction(tmp_path / "c.h5", torch.zeros(1, 4, 4, dtype=torch.complex64))
    with pytest.raises(InputError):
        write_reconstruction(tmp_path / "c.h5", np.zeros((4, 4)))


def test_write_fastmri_round_trip(tmp_path: Path) -> None:
    kspace = torch.from_numpy(complex_random((2, C, 24, 20), seed=5))
    target = torch.rand(2, 24, 20)
    mask = torch.zeros(20, dtype=torch.bool)
    mask[::2] = True
    path = write_fastmri(tmp_path / "sim.h5", kspace, target=target, mask=mask, attrs={"acquisition": "CINE"})
    volume = read_fastmri(path)
    np.testing.assert_array_equal(volume.kspace, kspace.numpy())
    np.testing.assert_array_equal(volume.target, target.numpy())
    np.testing.assert_array_equal(volume.mask, mask.numpy())
    assert volume.recon_size == (24, 20) and volume.padding == (0, 20)
    assert volume.attrs["acquisition"] == "CINE" and volume.attrs["max"] == pytest.approx(float(target.max()))
