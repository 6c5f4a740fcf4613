"""CMRxRecon reader on MATLAB v7.3 files written in MATLAB's layout (and by hdf5storage)."""

from __future__ import annotations

from pathlib import Path

import hdf5storage  # dev dependencies: a broken environment must fail, not skip
import numpy as np
import pytest
import scipy.io as scipy_io

from fastrecon.data.cmrxrecon import inspect_cmrxrecon, read_cmrxrecon, read_cmrxrecon_mask
from fastrecon.errors import DataFormatError, InputError
from tests.data._files import MATLAB_HEADER_TEXT, complex_random, write_mat73

KX, KY, KC, KZ, T = 12, 10, 3, 2, 4


def _expected(mat: np.ndarray) -> np.ndarray:
    """(kx, ky, kc, kz, t) MATLAB order -> (t*kz, kc, kx, ky), n = t * kz + z."""
    kx, ky, kc, kz, t = mat.shape
    return mat.transpose(4, 3, 2, 0, 1).reshape(t * kz, kc, kx, ky)


@pytest.fixture
def cine(tmp_path: Path) -> tuple[Path, np.ndarray]:
    mat = complex_random((KX, KY, KC, KZ, T), seed=1)
    return write_mat73(tmp_path / "cine_sax.mat", {"kspace_full": mat}), mat


def test_matlab_layout_round_trip(cine) -> None:
    path, mat = cine
    assert path.read_bytes()[:128].startswith(MATLAB_HEADER_TEXT)  # the file really is MATLAB-shaped
    volume = read_cmrxrecon(path)
    assert volume.key == "kspace_full" and not volume.undersampled
    assert volume.kspace.shape == (T * KZ, KC, KX, KY) and volume.kspace.dtype == np.complex64
    np.testing.assert_array_equal(volume.kspace, _expected(mat))
    # The (t, z) of each item, and back.
    for n in range(T * KZ):
        t, z = volume.frame_slice(n)
        np.testing.assert_array_equal(volume.kspace[n], mat[:, :, :, z, t].transpose(2, 0, 1))
        assert volume.index_of(t, z) == n
    assert (volume.num_frames, volume.num_slices) == (T, KZ)


def test_single_item_read_equals_full_read(cine) -> None:
    path, _ = cine
    full = read_cmrxrecon(path)
    for n in (0, 3, T * KZ - 1, -1):
        one = read_cmrxrecon(path, index=n)
        assert one.kspace.shape == (1, KC, KX, KY)
        np.testing.assert_array_equal(one.kspace[0], full.kspace[n])
        assert one.frame_slice(0) == full.frame_slice(n % (T * KZ))
    with pytest.raises(InputError, match="out of range"):
        read_cmrxrecon(path, index=T * KZ)
    info = inspect_cmrxrecon(path)
    assert (info.num_items, info.num_coils, info.height, info.width) == (T * KZ, KC, KX, KY)
    assert info.matlab_shape == (KX, KY, KC, KZ, T)


def test_hdf5storage_written_file(tmp_path: Path) -> None:
    mat = complex_random((KX, KY, KC, KZ, T), seed=2)
    path = tmp_path / "cine_lax.mat"
    hdf5storage.savemat(
        str(path), {"kspace_full": mat}, format="7.3", matlab_compatible=True, store_python_metadata=False
    )
    assert path.read_bytes()[:19] == b"MATLAB 7.3 MAT-file"
    np.testing.assert_array_equal(read_cmrxrecon(path).kspace, _expected(mat))


def test_4d_file_without_time_axis(tmp_path: Path) -> None:
    mat = complex_random((KX, KY, KC, KZ), seed=3)  # BlackBlood-like (kx, ky, kc, kz)
    path = write_mat73(tmp_path / "blackblood.mat", {"kspace_full": mat})
    volume = read_cmrxrecon(path)
    assert (volume.num_frames, volume.num_slices) == (1, KZ)
    np.testing.assert_array_equal(volume.kspace, mat.transpose(3, 2, 0, 1))
    np.testing.assert_array_equal(read_cmrxrecon(path, index=1).kspace[0], mat[:, :, :, 1].transpose(2, 0, 1))


def test_3d_file_and_double_precision(tmp_path: Path) -> None:
    mat = complex_random((KX, KY, KC), seed=4, dtype=np.complex128)
    volume = read_cmrxrecon(write_mat73(tmp_path / "one.mat", {"kspace": mat}))  # 2025 name
    assert volume.kspace.shape == (1, KC, KX, KY) and volume.kspace.dtype == np.complex64
    np.testing.assert_allclose(volume.kspace[0], mat.transpose(2, 0, 1).astype(np.complex64))


def test_2023_undersampled_and_mask_file(tmp_path: Path) -> None:
    full = complex_random((KX, KY, KC, KZ, T), seed=5)
    mask = np.zeros((KX, KY), dtype=np.float64)  # MATLAB (kx, ky), stored as double
    mask[:, ::4] = 1
    mask[:, KY // 2 - 1 : KY // 2 + 1] = 1
    path = write_mat73(tmp_path / "cine_sax.mat", {"kspace_sub04": full * mask[:, :, None, None, None]})
    mask_path = write_mat73(tmp_path / "cine_sax_mask.mat", {"mask04": mask, "mask08": mask, "mask10": mask})
    volume = read_cmrxrecon(path)
    assert volume.key == "kspace_sub04" and volume.undersampled and volume.acceleration == 4
    read_mask = read_cmrxrecon_mask(mask_path, "mask04")
    assert read_mask.shape == (KX, KY) and read_mask.dtype == bool
    np.testing.assert_array_equal(read_mask, mask != 0)
    # The mask selects columns of W = ky: zero columns in k-space are exactly the unsampled ones.
    sampled = np.abs(volume.kspace).sum(axis=(0, 1, 2)) != 0
    np.testing.assert_array_equal(sampled, read_mask[0])
    with pytest.raises(InputError, match="several masks"):
        read_cmrxrecon_mask(mask_path)


def test_2024_kus_and_logical_mask(tmp_path: Path) -> None:
    mat = complex_random((KX, KY, KC, KZ, T), seed=6)
    path = write_mat73(tmp_path / "cine_sax_kus_Uniform8.mat", {"kus": mat})
    volume = read_cmrxrecon(path)
    assert volume.key == "kus" and volume.undersampled and volume.acceleration == 8
    logical = np.zeros((KX, KY, T), dtype=bool)  # a k-t mask (kx, ky, t)
    logical[:, 1::3, :] = True
    mask = read_cmrxrecon_mask(write_mat73(tmp_path / "cine_sax_mask_ktUniform8.mat", {"mask": logical}))
    assert mask.shape == (T, KX, KY)
    np.testing.assert_array_equal(mask, logical.transpose(2, 0, 1))


def test_single_coil_variable_gets_coil_axis(tmp_path: Path) -> None:
    mat = complex_random((KX, KY, KZ, T), seed=7)  # (kx, ky, kz, t)
    volume = read_cmrxrecon(write_mat73(tmp_path / "sc.mat", {"kspace_single_full": mat}))
    assert volume.single_coil and volume.kspace.shape == (T * KZ, 1, KX, KY)
    np.testing.assert_array_equal(volume.kspace[:, 0], mat.transpose(3, 2, 0, 1).reshape(T * KZ, KX, KY))


def test_key_choice(tmp_path: Path) -> None:
    full = complex_random((KX, KY, KC, KZ, T), seed=8)
    path = write_mat73(tmp_path / "both.mat", {"kspace_sub08": full * 0, "kspace_full": full})
    assert read_cmrxrecon(path).key == "kspace_full"  # fully sampled first
    assert read_cmrxrecon(path, "kspace_sub08").acceleration == 8


# --- errors ----------------------------------------------------------------------------------------------


def test_v5_mat_file_is_explained(tmp_path: Path) -> None:
    path = tmp_path / "cine_v5.mat"
    scipy_io.savemat(str(path), {"kspace_full": complex_random((4, 4, 2), seed=0)})
    assert path.read_bytes()[:19] == b"MATLAB 5.0 MAT-file"
    with pytest.raises(DataFormatError) as info:
        read_cmrxrecon(path)
    message = str(info.value)
    assert str(path) in message and "v5" in message and "-v7.3" in message and "hdf5storage" in message


def test_truncated_file(cine) -> None:
    path, _ = cine
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataFormatError, match="truncated") as info:
        read_cmrxrecon(path)
    assert str(path) in str(info.value)


def test_garbage_and_empty_files(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.mat"
    garbage.write_bytes(b"not a mat file at all" * 10)
    with pytest.raises(DataFormatError, match="not an HDF5 file"):
        read_cmrxrecon(garbage)
    empty = tmp_path / "empty.mat"
    empty.write_bytes(b"")
    with pytest.raises(DataFormatError, match="empty"):
        read_cmrxrecon(empty)
    with pytest.raises(FileNotFoundError):
        read_cmrxrecon(tmp_path / "missing.mat")


def test_wrong_keys_name_found_and_expected(tmp_path: Path) -> None:
    path = write_mat73(tmp_path / "recon.mat", {"img4ranking": np.ones((4, 4), dtype=np.float32)})
    with pytest.raises(DataFormatError) as info:
        read_cmrxrecon(path)
    message = str(info.value)
    assert str(path) in message and "img4ranking" in message and "kspace_full" in message and "kus" in message
    with pytest.raises(DataFormatError, match="no variable 'kspace_sub10'"):
        read_cmrxrecon(path, "kspace_sub10")
    with pytest.raises(DataFormatError, match="mask04"):
        read_cmrxrecon_mask(path)


def test_wrong_rank_is_a_format_error(tmp_path: Path) -> None:
    path = write_mat73(tmp_path / "flat.mat", {"kspace_full": complex_random((KX, KY), seed=0)})
    with pytest.raises(DataFormatError, match="expected"):
        read_cmrxrecon(path)
