"""Raw-socket helpers for server tests: byte payloads, and reading a server's answer with a deadline."""

from __future__ import annotations

import io
import socket
from typing import Any

import ismrmrd

# What a server sent back (images, texts, closed), read by the package's own client reader.
from fastrecon.serve.client import StreamResult as Answer
from fastrecon.serve.client import read_answer


def payload(*items: Any, close: bool = True) -> bytes:
    """Serialised messages: ``ismrmrd`` objects, ``ConfigFile``, headers, TEXT strings; CLOSE at the end."""
    buffer = io.BytesIO()
    serializer = ismrmrd.ProtocolSerializer(buffer)
    for item in items:
        serializer.serialize(item)
    if close:
        serializer.close()
    return buffer.getvalue()


def exchange(port: int, data: bytes, *, timeout: float = 30.0) -> Answer:
    """Send ``data``, half-close, and read everything the server answers (bounded by ``timeout``)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except OSError:  # the server may hang up first; its answer is still readable
            pass
        return read_answer(sock)
