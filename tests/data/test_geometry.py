"""Image geometry: voxel size from an ISMRMRD header, affines that put slice centres where they belong."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from fastrecon.data.geometry import ImageGeometry, fastmri_geometry, geometry_from_ismrmrd_header
from fastrecon.errors import DataFormatError, InputError
from tests.data._files import fastmri_header


def oblique() -> ImageGeometry:
    """An oblique stack: directions rotated about z by 30 degrees, 3 slices 4 mm apart along them."""
    c, s = np.cos(np.pi / 6), np.sin(np.pi / 6)
    read, phase, normal = (c, s, 0.0), (-s, c, 0.0), (0.0, 0.0, 1.0)
    positions = np.array([[10.0, -20.0, 5.0 + 4.0 * n] for n in range(3)])
    return ImageGeometry((0.5, 0.8, 3.0), positions, read, phase, normal)


def test_voxel_size_from_the_recon_space() -> None:
    xml = fastmri_header(4, enc=(640, 368), rec=(320, 320), lim_max=367, lim_center=184, num_slices=2)
    geometry = geometry_from_ismrmrd_header(xml)
    assert geometry is not None
    assert geometry.voxel_size_mm == pytest.approx((140 / 320, 140 / 320, 3.0))
    assert geometry.positions is None and geometry.read_dir == (1.0, 0.0, 0.0)


def test_encoded_space_fallback_and_missing_field_of_view() -> None:
    xml = fastmri_header(4, enc=(64, 48), rec=(32, 32), lim_max=47, lim_center=24, num_slices=1).decode()
    no_recon_fov = xml.replace("<fieldOfView_mm><x>140</x><y>140</y><z>3</z></fieldOfView_mm>", "")
    geometry = geometry_from_ismrmrd_header(no_recon_fov)
    assert geometry is not None and geometry.voxel_size_mm == pytest.approx((280 / 64, 161 / 48, 4.5))
    bare = no_recon_fov.replace("<fieldOfView_mm><x>280</x><y>161</y><z>4.5</z></fieldOfView_mm>", "")
    assert geometry_from_ismrmrd_header(bare) is None
    with pytest.raises(DataFormatError, match="not valid XML"):
        geometry_from_ismrmrd_header("<ismrmrdHeader><encoding>")


@pytest.mark.parametrize("bad", ["nan", "inf", "-inf"])
def test_a_field_of_view_that_is_not_a_size_is_skipped(bad: str) -> None:
    """A nan/inf field of view gives no voxel size from that space (was an InputError failing the file)."""
    xml = fastmri_header(4, enc=(64, 48), rec=(32, 32), lim_max=47, lim_center=24, num_slices=1).decode()
    recon_bad = xml.replace("<x>140</x><y>140</y>", f"<x>{bad}</x><y>140</y>")
    geometry = geometry_from_ismrmrd_header(recon_bad)
    assert geometry is not None and geometry.voxel_size_mm == pytest.approx((280 / 64, 161 / 48, 4.5))
    assert geometry_from_ismrmrd_header(recon_bad.replace("<x>280</x>", f"<x>{bad}</x>")) is None


def test_fastmri_file(tmp_path: Path) -> None:
    path = tmp_path / "f.h5"
    with h5py.File(path, "w") as handle:
        handle["kspace"] = np.zeros((1, 2, 8, 8), np.complex64)
    assert fastmri_geometry(path) is None
    with h5py.File(path, "a") as handle:
        handle["ismrmrd_header"] = fastmri_header(2, (8, 8), (8, 8), 7, 4, 1)
    geometry = fastmri_geometry(path)
    assert geometry is not None and geometry.voxel_size_mm == pytest.approx((140 / 8, 140 / 8, 3.0))


def test_affine_puts_each_slice_centre_at_its_position() -> None:
    geometry = oblique()
    shape = (3, 6, 5)
    affine = geometry.affine_lps(shape)
    for n in range(3):
        centre = affine @ np.array([shape[1] // 2, shape[2] // 2, n, 1.0])
        np.testing.assert_allclose(centre[:3], geometry.positions[n], atol=1e-12)  # type: ignore[index]
    # One step along H moves 0.5 mm along read, along W 0.8 mm along phase.
    np.testing.assert_allclose(affine[:3, 0], np.array(geometry.read_dir) * 0.5)
    np.testing.assert_allclose(affine[:3, 1], np.array(geometry.phase_dir) * 0.8)
    np.testing.assert_allclose(affine[:3, 2], [0.0, 0.0, 4.0])  # the positions' spacing, not the thickness
    ras = geometry.affine_ras(shape)
    np.testing.assert_allclose(ras[:2], -affine[:2])
    np.testing.assert_allclose(ras[2:], affine[2:])


def test_without_positions_slices_are_stacked_around_the_origin() -> None:
    geometry = ImageGeometry((1.0, 1.0, 2.5))
    np.testing.assert_allclose(geometry.slice_centres(3), [[0, 0, -2.5], [0, 0, 0], [0, 0, 2.5]])
    np.testing.assert_allclose(geometry.corners((1, 4, 4))[0], [-2.0, -2.0, 0.0])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"voxel_size_mm": (1.0, 0.0, 1.0)}, "voxel_size_mm"),
        ({"voxel_size_mm": (1.0, 1.0)}, "voxel_size_mm"),
        ({"read_dir": (0.0, 0.0, 0.0)}, "read_dir .* zero vector"),
        ({"slice_dir": (1.0, float("nan"), 0.0)}, "slice_dir"),
        ({"positions": np.zeros((3, 2))}, "positions has shape"),
        ({"read_dir": (1.0, 0.0, 0.0), "phase_dir": (1.0, 1.0, 0.0)}, "not perpendicular"),
    ],
)
def test_bad_geometry_is_refused(kwargs: dict, match: str) -> None:
    with pytest.raises(InputError, match=match):
        ImageGeometry(**kwargs)


def test_positions_must_match_the_slices() -> None:
    with pytest.raises(InputError, match="2 slice positions for 3 slices"):
        ImageGeometry(positions=np.zeros((2, 3))).slice_centres(3)
