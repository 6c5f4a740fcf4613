"""MRD headers: schema-valid headers (fastMRI's included), and the encodings fastrecon refuses."""

from __future__ import annotations

import ismrmrd
import pytest

from fastrecon.data.fastmri import ismrmrd_header_xml, parse_ismrmrd_header
from fastrecon.data.mrd import KSpaceAssembler
from fastrecon.data.mrd_header import build_header, encoding_of
from fastrecon.errors import DataFormatError


def test_fastmri_header_is_schema_valid_and_still_parsed() -> None:
    xml = ismrmrd_header_xml((640, 368), (320, 320), padding=(18, 350))
    header = ismrmrd.xsd.CreateFromDocument(xml)  # raises on a header the schema refuses
    assert header.encoding[0].trajectory.value == "cartesian"
    parsed = parse_ismrmrd_header(xml)
    assert parsed.encoded_size == (640, 368)
    assert parsed.recon_size == (320, 320)
    assert parsed.padding == (18, 350)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"trajectory": "spiral"}, "non-Cartesian trajectory 'spiral'"),
        ({"trajectory": "radial"}, "non-Cartesian trajectory 'radial'"),
        ({"encoded_z": 8, "e2_limits": (0, 7, 4)}, "3-D encoding"),
        ({"e2_limits": (0, 7, 4)}, "3-D encoding"),
        ({"encoded_size": (64, 5000)}, "expected sides from 1 to 4096"),
    ],
)
def test_headers_refused(changes: dict, message: str) -> None:
    arguments = {"encoded_size": (64, 64), "recon_size": (64, 64), **changes}
    with pytest.raises(DataFormatError, match=message):
        KSpaceAssembler(build_header(**arguments))


def test_header_not_xml_refused() -> None:
    with pytest.raises(DataFormatError, match="not a valid ISMRMRD XML header"):
        encoding_of("<ismrmrdHeader><encoding>")
    with pytest.raises(DataFormatError, match="not a valid ISMRMRD XML header"):
        encoding_of("<ismrmrdHeader/>")  # schema: experimentalConditions and encoding are required


@pytest.mark.parametrize(
    ("encoded", "recon", "fov", "recon_fov", "height"),
    [
        ((128, 64), (64, 64), (256.0, 64.0, 5.0), (128.0, 64.0, 5.0), 64),  # 2x oversampled readout
        (
            (128, 64),
            (128, 64),
            (256.0, 64.0, 5.0),
            (128.0, 64.0, 5.0),
            64,
        ),  # same, recon matrix interpolated 2x
        ((64, 64), (128, 64), (64.0, 64.0, 5.0), (64.0, 64.0, 5.0), 64),  # interpolated, not oversampled
        (
            (128, 64),
            (48, 40),
            (128.0, 64.0, 5.0),
            (240.0, 200.0, 5.0),
            48,
        ),  # fields of view of no use: matrices
    ],
)
def test_readout_oversampling_from_the_fields_of_view(encoded, recon, fov, recon_fov, height) -> None:  # type: ignore[no-untyped-def]
    header = build_header(encoded_size=encoded, recon_size=recon, fov_mm=fov, recon_fov_mm=recon_fov)
    encoding = encoding_of(header)
    assert encoding.height == height and encoding.remove_oversampling == (height < encoded[0])
