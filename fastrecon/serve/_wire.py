"""The MRD streaming protocol on a socket: bounded reads, messages in, encoded messages out.

Incoming envelopes (message id, lengths, texts) are read here as python-ismrmrd-server reads them:
texts end at their first NUL (its client, like scanners, sends NUL-terminated XML headers and JSON
parameters). The objects are built by ``ismrmrd`` (``Acquisition``, ``Waveform``, the XML header types);
outgoing messages are written by ``ismrmrd.ProtocolSerializer``. :class:`BoundedReader`

- refuses any single field larger than ``max_message_bytes`` (a forged length cannot make the server
  allocate gigabytes), and checks an acquisition's or waveform's fixed header before its data are
  allocated; images and arrays are refused by their id, before their bodies are read;
- turns a quiet socket into an error only after ``idle_timeout`` seconds (reads wake up every
  ``tick`` so a shutdown is noticed);

and every failure (end of stream, unknown id, bad XML, sizes that do not add up) is a :class:`ProtocolError`.
"""

from __future__ import annotations

import ctypes
import io
import socket
import struct
import time
from collections.abc import Callable, Iterator
from typing import Any

from fastrecon.errors import DataFormatError

# Message ids of the MRD streaming protocol (ismrmrd.serialization.ISMRMRDMessageID).
CONFIG_FILE, CONFIG_TEXT, HEADER, CLOSE, TEXT = 1, 2, 3, 4, 5
ACQUISITION, IMAGE, WAVEFORM, NDARRAY = 1008, 1022, 1026, 1030
CONFIG_FILE_BYTES = 1024  # a CONFIG_FILE message is a fixed, NUL-padded 1024-byte name
KNOWN_IDS = {
    CONFIG_FILE: "CONFIG_FILE",
    CONFIG_TEXT: "CONFIG_TEXT",
    HEADER: "HEADER",
    CLOSE: "CLOSE",
    TEXT: "TEXT",
    ACQUISITION: "ACQUISITION",
    IMAGE: "IMAGE",
    WAVEFORM: "WAVEFORM",
    NDARRAY: "NDARRAY",
}
# What a client may send to a reconstruction server: raw data, never images or arrays.
RAW_IDS = frozenset({CONFIG_FILE, CONFIG_TEXT, HEADER, TEXT, ACQUISITION, WAVEFORM})


class ProtocolError(DataFormatError):
    """A client's stream is not valid MRD: malformed, truncated, unknown message id, too large, or idle."""


class BoundedReader(io.RawIOBase):
    """A readable stream over a socket for ``ismrmrd.ProtocolDeserializer``.

    ``read(n)`` returns exactly ``n`` bytes, or fewer only at the end of the stream. It refuses
    ``n > max_message_bytes``; after :attr:`expect_acquisition` is set, the next read (the acquisition
    header) is checked so that its data would fit the same limit. ``should_stop()`` is polled every
    ``tick`` seconds while waiting.
    """

    def __init__(
        self,
        sock: socket.socket,
        *,
        max_message_bytes: int,
        idle_timeout: float,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> None:
        super().__init__()
        self._sock = sock
        self._buffer = bytearray()
        self._eof = False
        self.max_message_bytes = int(max_message_bytes)
        self.idle_timeout = float(idle_timeout)
        self.should_stop = should_stop
        self.expect: int | None = None  # ACQUISITION or WAVEFORM: check the next read (its fixed header)
        # (monotonic time, message): a point by which something must have arrived, however the bytes trickle
        # in (the header within a few seconds of connecting: an idle or trickling client must not hold a slot).
        self.deadline: tuple[float, str] | None = None
        self.short_read = False  # a read ended early: the stream stopped inside a message
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def _fill(self, wanted: int) -> None:
        last = time.monotonic()
        while len(self._buffer) < wanted and not self._eof:
            try:
                chunk = self._sock.recv(max(65536, wanted - len(self._buffer)))
            except TimeoutError:
                if self.should_stop():
                    raise ProtocolError("the server is shutting down; the stream was not finished.") from None
                self._check_deadline()
                if time.monotonic() - last > self.idle_timeout:
                    raise ProtocolError(
                        f"no data from the client for {self.idle_timeout:g} s in the middle of the stream."
                    ) from None
                continue
            if not chunk:
                self._eof = True
                break
            last = time.monotonic()
            self._buffer += chunk
            self._check_deadline()

    def _check_deadline(self) -> None:
        if self.deadline is not None and time.monotonic() > self.deadline[0]:
            raise ProtocolError(self.deadline[1])

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            raise ProtocolError("an unbounded read was asked for; MRD messages have explicit lengths.")
        if size > self.max_message_bytes:
            raise ProtocolError(
                f"a message field of {size} bytes exceeds the server's limit of {self.max_message_bytes} bytes "
                "(a malformed or hostile length)."
            )
        self._fill(size)
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        self.bytes_read += len(data)
        if len(data) < size:
            self.short_read = True
        if self.expect is not None:
            expect, self.expect = self.expect, None
            self._check_fixed_header(expect, data)
        return data

    def _check_fixed_header(self, message_id: int, data: bytes) -> None:
        """Refuse an acquisition or waveform whose header declares more data than the limit, before
        ``ismrmrd`` allocates its arrays."""
        import ismrmrd

        if message_id == ACQUISITION:
            if len(data) < ctypes.sizeof(ismrmrd.AcquisitionHeader):
                return  # truncated: reported by the caller
            head = ismrmrd.AcquisitionHeader.from_buffer_copy(data)
            samples, channels, dims = (
                int(head.number_of_samples),
                int(head.active_channels),
                int(head.trajectory_dimensions),
            )
            size = samples * (channels * 8 + dims * 4)
            what = f"an acquisition of {channels} channels x {samples} samples (trajectory dimensions {dims})"
        else:
            if len(data) < ctypes.sizeof(ismrmrd.WaveformHeader):
                return
            wave = ismrmrd.WaveformHeader.from_buffer_copy(data)
            samples, channels = int(wave.number_of_samples), int(wave.channels)
            size = samples * channels * 4
            what = f"a waveform of {channels} channels x {samples} samples"
        if size > self.max_message_bytes:
            raise ProtocolError(
                f"{what} is {size} bytes; the server's limit is {self.max_message_bytes} bytes."
            )


def _read_exactly(reader: BoundedReader, size: int, what: str) -> bytes:
    data = reader.read(size)
    if len(data) < size:
        raise ProtocolError(f"truncated {what} message: the stream ended inside it.")
    return data


def _read_text(reader: BoundedReader, what: str) -> str:
    """A length-prefixed text (uint32 length, bytes). Senders built like python-ismrmrd-server's client
    (and scanners) end it with a NUL terminator: the text stops at the first NUL."""
    (length,) = struct.unpack("<I", _read_exactly(reader, 4, what))
    data = _read_exactly(reader, length, what)
    try:
        return data.split(b"\0", 1)[0].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"malformed {what} message: its text is not UTF-8 ({exc}).") from None


def _read_body(reader: BoundedReader, message_id: int) -> Any:
    import ismrmrd
    from ismrmrd.serialization import ConfigFile, ConfigText

    name = KNOWN_IDS[message_id]
    if message_id == CONFIG_FILE:
        payload = _read_exactly(reader, CONFIG_FILE_BYTES, name)
        try:
            return ConfigFile(payload.split(b"\0", 1)[0].decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise ProtocolError(f"malformed {name} message: the file name is not UTF-8 ({exc}).") from None
    if message_id == CONFIG_TEXT:
        return ConfigText(_read_text(reader, name))
    if message_id == TEXT:
        return _read_text(reader, name)
    if message_id == HEADER:
        xml = _read_text(reader, name)
        try:
            return ismrmrd.xsd.CreateFromDocument(xml)
        except Exception as exc:  # xsdata's ParserError and the XML parser's own errors
            detail = " ".join(str(exc).split())[:300]
            raise ProtocolError(f"malformed {name} message: {detail}") from None
    reader.expect = message_id  # the fixed header is checked before its data are allocated
    try:
        if message_id == ACQUISITION:
            return ismrmrd.Acquisition.deserialize_from(reader.read)
        return ismrmrd.Waveform.deserialize_from(reader.read)
    finally:
        reader.expect = None


def messages(reader: BoundedReader, *, accepted: frozenset[int] = RAW_IDS) -> Iterator[tuple[int, Any]]:
    """``(message id, object)`` pairs until the client's CLOSE; :class:`ProtocolError` on anything else.

    The message envelopes (id, lengths, NUL-terminated texts) are read here, as python-ismrmrd-server
    reads them; the objects are built by ``ismrmrd`` (``Acquisition``, ``Waveform``, the XML header).
    Message ids outside ``accepted`` (images, arrays) are refused before their bodies are read.
    """
    while True:
        head = reader.read(2)
        if len(head) < 2:
            raise ProtocolError(
                "the stream ended without a CLOSE message (client disconnected or stream truncated)."
            )
        (message_id,) = struct.unpack("<H", head)
        if message_id not in KNOWN_IDS:
            raise ProtocolError(
                f"unknown MRD message id {message_id}; expected one of "
                f"{', '.join(f'{k} ({v})' for k, v in KNOWN_IDS.items())}."
            )
        if message_id == CLOSE:
            return
        if message_id not in accepted:
            raise ProtocolError(
                f"got a {KNOWN_IDS[message_id]} message; fastrecon serve reconstructs raw acquisitions "
                "(expected config, header, text, acquisitions, waveforms, CLOSE)."
            )
        try:
            item = _read_body(reader, message_id)
        except ProtocolError:
            raise
        except Exception as exc:  # short reads inside ismrmrd's deserialisers, inconsistent sizes
            if reader.short_read:
                raise ProtocolError(
                    f"truncated {KNOWN_IDS[message_id]} message: the stream ended inside it."
                ) from None
            detail = " ".join(str(exc).split())[:300]
            raise ProtocolError(f"malformed {KNOWN_IDS[message_id]} message: {detail}") from None
        yield message_id, item


def encode(item: Any) -> bytes:
    """One message as bytes: an ``ismrmrd.Image``, a ``str`` (TEXT), or ``None`` for CLOSE."""
    import ismrmrd

    buffer = io.BytesIO()
    serializer = ismrmrd.ProtocolSerializer(buffer)
    if item is None:
        serializer.close()
    else:
        serializer.serialize(item)
    return buffer.getvalue()


def send_all(sock: socket.socket, data: bytes, *, timeout: float) -> None:
    """Send ``data``; :class:`TimeoutError` when the client takes no bytes for ``timeout`` seconds (a stalled
    client must not hold the server). The socket's own timeout is a short tick."""
    view = memoryview(data)
    last = time.monotonic()
    while view:
        try:
            sent = sock.send(view)
        except TimeoutError:
            if time.monotonic() - last > timeout:
                raise TimeoutError(f"the client read nothing for {timeout:g} s; giving up on it.") from None
            continue
        view = view[sent:]
        last = time.monotonic()
