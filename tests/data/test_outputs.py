"""Images people can open: NIfTI read back with nibabel, DICOM series read back with pydicom, written atomically."""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import nibabel
import numpy as np
import pydicom
import pytest
import torch

from fastrecon.cli import main
from fastrecon.data.geometry import ImageGeometry
from fastrecon.data.outputs import MR_IMAGE_STORAGE, output_format, write_images
from fastrecon.errors import InputError, InputTypeError, OutputExistsError
from tests.data._files import fastmri_header, write_fastmri_file
from tests.data.test_geometry import oblique
from tests.helpers import tiny_varnet_config


@pytest.fixture
def images() -> np.ndarray:
    """3 slices of 6 x 5 (odd and even sizes), values over several orders of magnitude."""
    rng = np.random.default_rng(0)
    return (rng.random((3, 6, 5)) * 10.0 ** rng.integers(-3, 3, (3, 6, 5))).astype(np.float32)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if ".tmp" in p.name or ".old" in p.name)


def read_series(folder: Path) -> list[pydicom.Dataset]:
    return sorted((pydicom.dcmread(p) for p in folder.iterdir()), key=lambda ds: int(ds.InstanceNumber))


def test_format_rules() -> None:
    assert output_format("a/recon.h5") == "h5" and output_format("recon") == "h5"
    assert output_format("x.nii") == output_format("x.NII.GZ") == "nifti"
    assert output_format("series", "dicom") == "dicom"
    for out, fmt, match in [
        ("x.h5", "nifti", "ends in .nii"),
        ("x.nii.gz", "h5", "format asked for is h5"),
        ("x.h5", "dicom", "DICOM series is a folder"),
        ("x", "png", "expected one of h5, nifti, dicom"),
    ]:
        with pytest.raises(InputError, match=match):
            output_format(out, fmt)


@pytest.mark.parametrize("name", ["vol.nii.gz", "vol.nii"])
def test_nifti_round_trip(images: np.ndarray, tmp_path: Path, name: str) -> None:
    geometry = oblique()
    out = write_images(tmp_path / name, images, geometry, {"model": "demo-x8"})
    image = nibabel.load(out)
    assert image.shape == (6, 5, 3)
    np.testing.assert_array_equal(np.asarray(image.dataobj), np.moveaxis(images, 0, -1))
    assert image.header.get_zooms() == pytest.approx((0.5, 0.8, 4.0))
    assert image.header.get_xyzt_units()[0] == "mm" and int(image.header["sform_code"]) == 1
    np.testing.assert_allclose(image.affine, geometry.affine_ras(images.shape), atol=1e-5)
    # The centre pixel of slice 1 lies at that slice's position (RAS = LPS with x, y negated).
    centre = image.affine @ np.array([3, 2, 1, 1.0])
    np.testing.assert_allclose(centre[:3], geometry.positions[1] * [-1, -1, 1], atol=1e-4)  # type: ignore[index]
    assert b"demo-x8" in image.header["descrip"].tobytes()
    with pytest.raises(OutputExistsError, match="already exists"):
        write_images(out, images)
    write_images(out, images[:1], overwrite=True)
    assert nibabel.load(out).shape == (6, 5, 1)
    assert leftovers(tmp_path) == []


def test_dicom_series_round_trip(images: np.ndarray, tmp_path: Path) -> None:
    geometry = oblique()
    out = write_images(
        tmp_path / "series", torch.from_numpy(images), geometry, {"model": "demo-x8"}, format="dicom"
    )
    files = sorted(p.name for p in out.iterdir())
    assert files == ["IM_0001.dcm", "IM_0002.dcm", "IM_0003.dcm"]
    series = read_series(out)
    slope = float(series[0].RescaleSlope)
    assert 0 < slope <= images.max() / 65535 * (1 + 1e-6)
    corners = geometry.corners(images.shape)
    for n, ds in enumerate(series):
        assert ds.file_meta.MediaStorageSOPClassUID == MR_IMAGE_STORAGE == ds.SOPClassUID
        assert ds.Modality == "MR" and ds.InstanceNumber == n + 1
        assert (ds.Rows, ds.Columns, ds.BitsStored, ds.PixelRepresentation) == (6, 5, 16, 0)
        assert ds.pixel_array.dtype == np.uint16
        value = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        assert np.abs(value - images[n]).max() <= slope / 2 * (1 + 1e-6)  # within the quantisation
        assert [float(v) for v in ds.PixelSpacing] == pytest.approx([0.5, 0.8])
        assert float(ds.SliceThickness) == pytest.approx(3.0)
        assert float(ds.SpacingBetweenSlices) == pytest.approx(4.0)
        np.testing.assert_allclose([float(v) for v in ds.ImagePositionPatient], corners[n], atol=1e-4)
        orientation = [float(v) for v in ds.ImageOrientationPatient]
        np.testing.assert_allclose(orientation[:3], geometry.phase_dir, atol=1e-6)  # along a row: W
        np.testing.assert_allclose(orientation[3:], geometry.read_dir, atol=1e-6)  # down a column: H
        assert "demo-x8" in ds.SeriesDescription
    assert len({ds.SeriesInstanceUID for ds in series}) == 1
    assert len({ds.StudyInstanceUID for ds in series}) == 1
    assert len({ds.SOPInstanceUID for ds in series}) == 3
    # Slice order by position along the normal is the instance order (viewers sort this way).
    normal = np.cross(orientation[:3], orientation[3:])
    along = [float(np.dot([float(v) for v in ds.ImagePositionPatient], normal)) for ds in series]
    assert along == sorted(along) or along == sorted(along, reverse=True)
    assert leftovers(tmp_path) == []


def test_dicom_replaces_only_a_previous_series(images: np.ndarray, tmp_path: Path) -> None:
    out = write_images(tmp_path / "series", images, format="dicom")
    old_uid = read_series(out)[0].SeriesInstanceUID
    with pytest.raises(OutputExistsError, match="already exists"):
        write_images(out, images, format="dicom")
    write_images(out, images[:2], format="dicom", overwrite=True)
    new = read_series(out)
    assert len(new) == 2 and new[0].SeriesInstanceUID != old_uid
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    with pytest.raises(OutputExistsError, match="not a DICOM file"):
        write_images(mine, images, format="dicom", overwrite=True)
    assert (mine / "notes.txt").read_text() == "keep" and sorted(p.name for p in mine.iterdir()) == [
        "notes.txt"
    ]
    a_file = tmp_path / "file"
    a_file.write_text("keep")
    with pytest.raises(OutputExistsError, match="not a folder"):
        write_images(a_file, images, format="dicom", overwrite=True)
    assert leftovers(tmp_path) == []


def test_failed_dicom_write_keeps_the_old_series(
    images: np.ndarray, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = write_images(tmp_path / "series", images, format="dicom")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    real = pydicom.Dataset.save_as
    count = []

    def crash_on_second(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        count.append(1)
        if len(count) == 2:
            raise OSError("disk full (simulated)")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(pydicom.Dataset, "save_as", crash_on_second)
    with pytest.raises(OSError, match="simulated"):
        write_images(out, images, format="dicom", overwrite=True)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert leftovers(tmp_path) == []


def test_h5_keeps_the_fastmri_layout(images: np.ndarray, tmp_path: Path) -> None:
    out = write_images(tmp_path / "r.h5", images, ImageGeometry((0.5, 0.5, 3.0)), {"model": "m"})
    with h5py.File(out, "r") as handle:
        np.testing.assert_array_equal(handle["reconstruction"][()], images)
        assert handle.attrs["model"] == "m" and list(handle.attrs["voxel_size_mm"]) == [0.5, 0.5, 3.0]


def test_bad_images_are_refused(images: np.ndarray, tmp_path: Path) -> None:
    with pytest.raises(InputTypeError, match="complex"):
        write_images(tmp_path / "x.nii", images.astype(np.complex64))
    bad = images.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(InputError, match="NaN"):
        write_images(tmp_path / "x", bad, format="dicom")
    with pytest.raises(InputError, match="expected \\(N, H, W\\)"):
        write_images(tmp_path / "x.nii", images[None])
    assert list(tmp_path.iterdir()) == []


def test_command_line_writes_nifti_and_dicom_with_the_header_geometry(tmp_path: Path) -> None:
    from fastrecon.models import build_model
    from fastrecon.weights import save_checkpoint

    torch.manual_seed(0)
    config = tiny_varnet_config()
    model = tmp_path / "tiny.safetensors"
    save_checkpoint(build_model(config), config, model)
    rng = np.random.default_rng(0)
    kspace = (rng.standard_normal((2, 4, 32, 24)) + 1j * rng.standard_normal((2, 4, 32, 24))).astype(
        np.complex64
    )
    source = write_fastmri_file(tmp_path / "knee.h5", kspace, recon_size=(32, 24))
    with h5py.File(source, "r+") as handle:
        del handle["ismrmrd_header"]
        handle["ismrmrd_header"] = fastmri_header(4, (32, 24), (32, 24), 23, 12, 2)
    args = ["--model", str(model), "--accel", "4", "--center-fraction", "0.125", "--device", "cpu"]
    assert main(["reconstruct", str(source), "--out", str(tmp_path / "r.h5"), *args]) == 0
    with h5py.File(tmp_path / "r.h5", "r") as handle:
        expected = handle["reconstruction"][()]
    assert main(["reconstruct", str(source), "--out", str(tmp_path / "r.nii.gz"), *args]) == 0
    nifti = nibabel.load(tmp_path / "r.nii.gz")
    np.testing.assert_array_equal(np.asarray(nifti.dataobj), np.moveaxis(expected, 0, -1))
    assert nifti.header.get_zooms() == pytest.approx((140 / 32, 140 / 24, 3.0))
    assert main(["reconstruct", str(source), "--out", str(tmp_path / "dcm"), "--format", "dicom", *args]) == 0
    series = read_series(tmp_path / "dcm")
    assert len(series) == 2 and [float(v) for v in series[0].PixelSpacing] == pytest.approx(
        [140 / 32, 140 / 24]
    )
    slope = float(series[0].RescaleSlope)
    for n, ds in enumerate(series):
        assert np.abs(ds.pixel_array * slope + float(ds.RescaleIntercept) - expected[n]).max() <= slope
    # An existing series needs --overwrite, like a file.
    assert main(["reconstruct", str(source), "--out", str(tmp_path / "dcm"), "--format", "dicom", *args]) == 2


@pytest.mark.parametrize("fmt", ["h5", "dicom"])
def test_a_source_name_that_is_not_utf8_is_kept_escaped(images: np.ndarray, tmp_path: Path, fmt: str) -> None:
    """Linux file names may be any bytes; Python gives them surrogates, which HDF5/DICOM text cannot hold."""
    source = str(tmp_path / os.fsdecode(b"scan\xfe.h5"))
    out = write_images(
        tmp_path / ("r.h5" if fmt == "h5" else "series"), images, attrs={"source": source}, format=fmt
    )
    if fmt == "h5":
        with h5py.File(out, "r") as handle:
            written = handle.attrs["source"]
    else:
        written = pydicom.dcmread(out / "IM_0001.dcm").ImageComments
    assert written.endswith("scan\\udcfe.h5")


def test_dicom_text_is_utf8_and_conditional_attributes_are_present(
    images: np.ndarray, tmp_path: Path
) -> None:
    """dciodvfy's findings: non-ASCII text needs a character set; GeneralSeries' Laterality and
    PatientPosition (type 2C, required for MR) must be present, empty when unknown."""
    source = "data/Müller é/scan.h5"
    out = write_images(tmp_path / "series", images, attrs={"source": source, "model": "x"}, format="dicom")
    for ds in read_series(out):
        assert ds.SpecificCharacterSet == "ISO_IR 192" and ds.ImageComments == source
        assert ds.Laterality == "" and ds.PatientPosition == ""


@pytest.mark.parametrize("peak", [1e-3, 0.5, 200.0])
def test_dicom_window_is_valid_for_small_and_large_values(tmp_path: Path, peak: float) -> None:
    """A LINEAR window must be at least 1 wide; tiny magnitudes (fastMRI's are ~1e-4) get LINEAR_EXACT."""
    images = np.linspace(0, peak, 2 * 6 * 5, dtype=np.float32).reshape(2, 6, 5)
    for ds in read_series(write_images(tmp_path / "s", images, format="dicom")):
        width = float(ds.WindowWidth)
        assert width == pytest.approx(peak, rel=1e-6)
        assert ds.get("VOILUTFunction", "LINEAR") == ("LINEAR_EXACT" if width < 1 else "LINEAR")


def test_nifti_refuses_images_that_are_not_evenly_spaced_slices(images: np.ndarray, tmp_path: Path) -> None:
    # Two cine phases of one slice then two of the next: the positions repeat, and no affine places them.
    repeated = ImageGeometry(positions=np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 5.0]]))
    with pytest.raises(InputError, match="not 3 evenly spaced slices.*--format dicom"):
        write_images(tmp_path / "x.nii.gz", images, repeated)
    assert list(tmp_path.iterdir()) == []
    # Evenly spaced slices (a gap between them included) are written.
    even = ImageGeometry(positions=np.array([[0.0, 0.0, 1.0], [0.0, 0.0, 8.0], [0.0, 0.0, 15.0]]))
    image = nibabel.load(write_images(tmp_path / "y.nii.gz", images, even))
    np.testing.assert_allclose(image.affine[:3, 2], [0.0, 0.0, 7.0])


def test_dicom_of_repeated_positions_has_no_slice_spacing(images: np.ndarray, tmp_path: Path) -> None:
    repeated = ImageGeometry(positions=np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 5.0]]))
    series = read_series(write_images(tmp_path / "cine", images, repeated, format="dicom"))
    assert [float(ds.ImagePositionPatient[2]) for ds in series] == [0.0, 0.0, 5.0]
    assert all("SpacingBetweenSlices" not in ds for ds in series)  # no mean step (2.5 mm) that is not there
    even = ImageGeometry(positions=np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 5.0], [0.0, 0.0, 10.0]]))
    series = read_series(write_images(tmp_path / "even", images, even, format="dicom"))
    assert all(float(ds.SpacingBetweenSlices) == 5.0 for ds in series)
