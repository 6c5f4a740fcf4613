"""The MRD streaming protocol on a socket: bounded reads, messages in, encoded messages out.

Messages are (de)serialised by ``ismrmrd.ProtocolSerializer`` / ``ProtocolDeserializer``; this module
feeds the deserialiser from a socket through :class:`BoundedReader`, which

- refuses any single field larger than ``max_message_bytes`` (a forged length cannot make the server
  allocate gigabytes), and checks an acquisition's header before its data are allocated;
- turns a quiet socket into an error only after ``idle_timeout`` seconds (reads wake up every
  ``tick`` so a shutdown is noticed);

and maps the deserialiser's failures (end of stream, unknown id, bad XML) to :class:`ProtocolError`.
"""

from __future__ import annotations

import ctypes
import io
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

from fastrecon.errors import DataFormatError

# Message ids of the MRD streaming protocol (ismrmrd.serialization.ISMRMRDMessageID).
CONFIG_FILE, CONFIG_TEXT, HEADER, CLOSE, TEXT = 1, 2, 3, 4, 5
ACQUISITION, IMAGE, WAVEFORM, NDARRAY = 1008, 1022, 1026, 1030
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
        self.expect_acquisition = False
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
        if self.expect_acquisition:
            self.expect_acquisition = False
            self._check_acquisition_header(data)
        return data

    def _check_acquisition_header(self, data: bytes) -> None:
        import ismrmrd

        if len(data) < ctypes.sizeof(ismrmrd.AcquisitionHeader):
            return  # truncated: the deserialiser reports it
        head = ismrmrd.AcquisitionHeader.from_buffer_copy(data)
        samples, channels, dims = (
            int(head.number_of_samples),
            int(head.active_channels),
            int(head.trajectory_dimensions),
        )
        size = samples * (channels * 8 + dims * 4)
        if size > self.max_message_bytes:
            raise ProtocolError(
                f"an acquisition of {channels} channels x {samples} samples (trajectory dimensions {dims}) is "
                f"{size} bytes; the server's limit is {self.max_message_bytes} bytes."
            )


def messages(reader: BoundedReader) -> Iterator[tuple[int, Any]]:
    """``(message id, object)`` pairs until the client's CLOSE; :class:`ProtocolError` on anything else."""
    import ismrmrd

    deserializer = ismrmrd.ProtocolDeserializer(reader)
    stream = deserializer.deserialize()
    while True:
        try:
            message_id = int(deserializer.peek())
        except EOFError:
            raise ProtocolError(
                "the stream ended without a CLOSE message (client disconnected or stream truncated)."
            ) from None
        if message_id not in KNOWN_IDS:
            raise ProtocolError(
                f"unknown MRD message id {message_id}; expected one of "
                f"{', '.join(f'{k} ({v})' for k, v in KNOWN_IDS.items())}."
            )
        reader.expect_acquisition = message_id == ACQUISITION
        try:
            item = next(stream)
        except StopIteration:
            return  # CLOSE
        except ProtocolError:
            raise
        except Exception as exc:  # short reads, bad XML (xsdata), undecodable text, inconsistent sizes
            if isinstance(exc, EOFError) or reader.short_read:
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
