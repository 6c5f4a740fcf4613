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
        ({"recon_size": (128, 64)}, "reconSpace x = 128 is larger than encodedSpace x = 64"),
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
