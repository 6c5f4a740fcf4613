"""Raw-socket helpers for server tests: byte payloads, and reading a server's answer with a deadline."""

from __future__ import annotations

import io
import socket
from dataclasses import dataclass, field
from typing import Any

import ismrmrd


def payload(*items: Any, close: bool = True) -> bytes:
    """Serialised messages: ``ismrmrd`` objects, ``ConfigFile``, headers, TEXT strings; CLOSE at the end."""
    buffer = io.BytesIO()
    serializer = ismrmrd.ProtocolSerializer(buffer)
    for item in items:
        serializer.serialize(item)
    if close:
        serializer.close()
    return buffer.getvalue()


@dataclass
class Answer:
    images: list[Any] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    closed: bool = False


def read_answer(sock: socket.socket) -> Answer:
    answer = Answer()
    reader = sock.makefile("rb")
    try:
        for item in ismrmrd.ProtocolDeserializer(reader).deserialize():
            if isinstance(item, ismrmrd.Image):
                answer.images.append(item)
            elif isinstance(item, str):
                answer.texts.append(str(item))
        answer.closed = True
    except (EOFError, OSError):
        pass
    finally:
        reader.close()
    return answer


def exchange(port: int, data: bytes, *, timeout: float = 30.0) -> Answer:
    """Send ``data``, half-close, and read everything the server answers (bounded by ``timeout``)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except OSError:  # the server may hang up first; its answer is still readable
            pass
        return read_answer(sock)
