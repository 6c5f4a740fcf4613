"""MRD images: geometry and indices from the acquisitions, field of view and crop from reconSpace, meta."""

from __future__ import annotations

import ismrmrd
import numpy as np
import pytest

from fastrecon.data.mrd import KSpaceAssembler
from fastrecon.data.mrd_header import build_header
from fastrecon.data.mrd_images import image_array, read_mrd_images, to_mrd_images, write_mrd_images
from fastrecon.errors import OutputExistsError
from tests.data._mrd import raw_case


@pytest.fixture(scope="module")
def case():  # type: ignore[no-untyped-def]
    return raw_case()


def test_images_geometry_and_crop(case) -> None:  # type: ignore[no-untyped-def]
    header = build_header(encoded_size=(128, 64), recon_size=(48, 40), recon_fov_mm=(240.0, 200.0, 5.0))
    assembler = KSpaceAssembler(header)
    slices = []
    for acq in case.acquisitions:
        slices += assembler.add(acq)
    images = np.random.default_rng(0).random((2, 48, 64)).astype(np.float32)
    mrd = to_mrd_images(
        images, slices, assembler.encoding, meta={"FastreconModel": "demo-x8"}, series_index=3
    )
    assert [m.image_index for m in mrd] == [1, 2]
    first = mrd[1]
    assert tuple(first.matrix_size) == (48, 40, 1)
    assert tuple(first.field_of_view) == (240.0, 200.0, 5.0)
    assert (first.slice, first.image_series_index, first.image_type) == (1, 3, ismrmrd.IMTYPE_MAGNITUDE)
    assert tuple(first.position) == (0.0, 0.0, 5.0)
    assert tuple(first.read_dir) == (1.0, 0.0, 0.0) and tuple(first.phase_dir) == (0.0, 1.0, 0.0)
    assert first.meta["FastreconModel"] == "demo-x8"
    np.testing.assert_array_equal(image_array(first), images[1][:, 12:52])
    scaled = to_mrd_images(images, slices, assembler.encoding, dtype="uint16")
    assert scaled[0].data.dtype == np.uint16 and int(scaled[0].data.max()) == 4095


def test_write_and_read_images(case, tmp_path) -> None:  # type: ignore[no-untyped-def]
    assembler = KSpaceAssembler(case.header)
    slices = []
    for acq in case.acquisitions:
        slices += assembler.add(acq)
    images = np.random.default_rng(1).random((2, 64, 64)).astype(np.float32)
    out = write_mrd_images(
        tmp_path / "x.mrd", to_mrd_images(images, slices, assembler.encoding), header=case.header
    )
    back = read_mrd_images(out)
    np.testing.assert_array_equal(np.stack([image_array(i) for i in back]), images)
    with pytest.raises(OutputExistsError, match="already exists"):
        write_mrd_images(out, back)


def test_phase_oversampling_cropped_by_the_fields_of_view() -> None:
    """60 lines over 120 mm (1.2x phase oversampling of a 100 mm field of view), recon matrix interpolated to
    64: the image keeps the 50 columns that cover 100 mm, not 60 columns labelled 100 mm."""
    from fastrecon.data.mrd import MRDSlice, SliceKey

    header = build_header(
        encoded_size=(64, 60), recon_size=(64, 64), fov_mm=(64.0, 120.0, 5.0), recon_fov_mm=(64.0, 100.0, 5.0)
    )
    encoding = KSpaceAssembler(header).encoding
    item = MRDSlice(
        kspace=np.zeros((1, 64, 60), np.complex64), mask=np.ones(60, bool), key=SliceKey(), head=None
    )
    image = np.random.default_rng(2).random((1, 64, 60)).astype(np.float32)
    (mrd,) = to_mrd_images(image, [item], encoding)
    assert tuple(mrd.matrix_size) == (64, 50, 1) and tuple(mrd.field_of_view) == (64.0, 100.0, 5.0)
    np.testing.assert_array_equal(image_array(mrd), image[0][:, 5:55])
