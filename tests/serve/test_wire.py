"""The MRD envelope reader (fastrecon.serve._wire) on a socket pair: what python-ismrmrd-server's client
sends (NUL-terminated texts) is accepted; hostile sizes are refused before anything large is allocated."""

from __future__ import annotations

import ctypes
import json
import socket
import struct

import ismrmrd
import numpy as np
import pytest

from fastrecon.data.mrd_header import build_header, header_xml
from fastrecon.serve import _wire
from tests.serve._client import payload


def _messages(data: bytes) -> list[tuple[int, object]]:
    left, right = socket.socketpair()
    with left, right:
        left.sendall(data)
        left.shutdown(socket.SHUT_WR)
        right.settimeout(0.05)
        reader = _wire.BoundedReader(right, max_message_bytes=2**20, idle_timeout=5.0)
        return list(_wire.messages(reader))


def _nul_text(message_id: int, text: str) -> bytes:
    """As python-ismrmrd-server's Connection.send_metadata / send_text write them: text + NUL."""
    body = (text + "\0").encode("utf-8")
    return struct.pack("<HI", message_id, len(body)) + body


def test_nul_terminated_texts_from_the_reference_client() -> None:
    header = build_header(encoded_size=(64, 32), num_coils=4)
    parameters = json.dumps({"parameters": {"config": "fastrecon"}})
    data = (
        struct.pack("<H", _wire.CONFIG_FILE)
        + struct.pack("1024s", b"fastrecon")
        + _nul_text(_wire.CONFIG_TEXT, "<config/>")
        + _nul_text(_wire.HEADER, header_xml(header))
        + _nul_text(_wire.TEXT, parameters)
        + struct.pack("<H", _wire.CLOSE)
    )
    items = _messages(data)
    assert [message_id for message_id, _ in items] == [1, 2, 3, 5]
    assert items[0][1] == "fastrecon" and items[1][1] == "<config/>" and items[3][1] == parameters
    parsed = items[2][1]
    assert isinstance(parsed, ismrmrd.xsd.ismrmrdHeader)
    assert parsed.encoding[0].encodedSpace.matrixSize.x == 64


def test_serializer_messages_round_trip() -> None:
    header = build_header(encoded_size=(16, 8), num_coils=2)
    acq = ismrmrd.Acquisition.from_array(np.arange(32, dtype=np.complex64).reshape(2, 16))
    wave = ismrmrd.Waveform.from_array(np.ones((2, 5), np.uint32))
    items = _messages(payload(ismrmrd.serialization.ConfigFile("x"), header, "hi", wave, acq))
    assert [message_id for message_id, _ in items] == [1, 3, 5, 1026, 1008]
    np.testing.assert_array_equal(items[4][1].data, acq.data)  # type: ignore[attr-defined]


@pytest.mark.parametrize("kind", ["image", "ndarray"])
def test_images_and_arrays_refused_by_id(kind: str) -> None:
    if kind == "image":
        image = ismrmrd.Image.from_array(np.zeros((4, 4), np.float32))
        raw = bytearray(payload(image))
        head = ismrmrd.ImageHeader.from_buffer_copy(bytes(raw[2 : 2 + ctypes.sizeof(ismrmrd.ImageHeader)]))
        head.matrix_size[0] = head.matrix_size[1] = head.matrix_size[2] = 60000
        raw[2 : 2 + ctypes.sizeof(ismrmrd.ImageHeader)] = bytes(head)
        data = bytes(raw)
    else:
        data = struct.pack("<HHHH", _wire.NDARRAY, 1, 0, 1) + struct.pack("<Q", 2**40)
    with pytest.raises(_wire.ProtocolError, match="reconstructs raw acquisitions"):
        _messages(data)


def test_waveform_with_hostile_size_refused() -> None:
    wave = ismrmrd.Waveform.from_array(np.ones((1, 4), np.uint32))
    raw = bytearray(payload(wave, close=False))
    size = ctypes.sizeof(ismrmrd.WaveformHeader)
    head = ismrmrd.WaveformHeader.from_buffer_copy(bytes(raw[2 : 2 + size]))
    head.number_of_samples, head.channels = 65535, 65535
    with pytest.raises(_wire.ProtocolError, match="a waveform of 65535 channels x 65535 samples"):
        _messages(struct.pack("<H", _wire.WAVEFORM) + bytes(head))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "ended without a CLOSE"),
        (b"\x03", "ended without a CLOSE"),
        (struct.pack("<HI", 3, 100) + b"<x", "truncated HEADER message"),
        (struct.pack("<H", 1) + b"abc", "truncated CONFIG_FILE message"),
        (struct.pack("<HI", 5, 2) + b"\xff\xfe", "malformed TEXT message: its text is not UTF-8"),
        (_nul_text(3, "Dummy XML header"), "malformed HEADER message"),
    ],
)
def test_bad_envelopes(data: bytes, message: str) -> None:
    with pytest.raises(_wire.ProtocolError, match=message):
        _messages(data)
