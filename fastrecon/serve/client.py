"""A small MRD streaming client: send a header and acquisitions to an MRD server, collect what comes back.

    from fastrecon.serve.client import stream_file
    result = stream_file("scan.h5", host="127.0.0.1", port=9002)
    result.images      # ismrmrd.Image objects; result.texts: TEXT messages (errors); result.closed: CLOSE seen

Also usable with any server that speaks the protocol (python-ismrmrd-server, Gadgetron's external
connections). Sending runs in a thread while the answers are read, so large streams cannot deadlock.
"""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastrecon.errors import DataFormatError, FastreconError


@dataclass
class StreamResult:
    """What the server sent back.

    Attributes:
        images: ``ismrmrd.Image`` objects in arrival order.
        texts: TEXT messages (fastrecon's server sends one naming the error when it gives up).
        closed: True when the server ended with CLOSE (a clean end of the stream).
        send_error: why sending stopped early (the server closed the connection), else None.
    """

    images: list[Any] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    closed: bool = False
    send_error: str | None = None


def read_answer(sock: socket.socket, result: StreamResult | None = None) -> StreamResult:
    """Read a server's answer from ``sock`` into ``result`` (a new one by default) until CLOSE
    (``closed`` True) or until the server hangs up or the socket times out (``closed`` False)."""
    import ismrmrd

    result = result if result is not None else StreamResult()
    reader = sock.makefile("rb")
    try:
        for item in ismrmrd.ProtocolDeserializer(reader).deserialize():
            if isinstance(item, ismrmrd.Image):
                result.images.append(item)
            elif isinstance(item, str):
                result.texts.append(str(item))
        result.closed = True
    except (EOFError, OSError):
        result.closed = False
    finally:
        reader.close()
    return result


def stream(
    header: Any,
    acquisitions: Iterable[Any],
    *,
    host: str = "127.0.0.1",
    port: int = 9002,
    config: str = "fastrecon",
    timeout: float = 120.0,
) -> StreamResult:
    """Send CONFIG_FILE ``config``, the header (``ismrmrdHeader`` or XML text), each acquisition, CLOSE;
    return the images and texts received until the server's CLOSE (or until it hangs up)."""
    import ismrmrd

    from fastrecon.data.mrd import parse_header

    header = parse_header(header)
    result = StreamResult()
    with socket.create_connection((host, port), timeout=timeout) as sock:

        def send() -> None:
            writer = sock.makefile("wb")
            try:
                serializer = ismrmrd.ProtocolSerializer(writer)
                serializer.serialize(ismrmrd.serialization.ConfigFile(config))
                serializer.serialize(header)
                for acquisition in acquisitions:
                    serializer.serialize(acquisition)
                serializer.close()
            except OSError as exc:
                result.send_error = str(exc) or type(exc).__name__
            finally:
                with contextlib.suppress(OSError):
                    writer.close()

        sender = threading.Thread(target=send, name="fastrecon-client-send", daemon=True)
        sender.start()
        try:
            read_answer(sock, result)
        finally:
            sender.join(timeout)
    return result


def stream_file(
    path: str | Path, *, group: str = "dataset", host: str = "127.0.0.1", port: int = 9002, **kwargs: Any
) -> StreamResult:
    """Stream an MRD raw file's header and acquisitions (read one at a time) to a server."""
    import ismrmrd

    with ismrmrd.Dataset(str(path), group, create_if_needed=False, mode="r") as dataset:
        header = dataset.read_xml_header()
        count = dataset.number_of_acquisitions()
        acquisitions = (dataset.read_acquisition(i) for i in range(count))
        return stream(header, acquisitions, host=host, port=port, **kwargs)


def main(argv: list[str] | None = None) -> int:
    """``python -m fastrecon.serve.client scan.h5 --port 9002 --out images.mrd.h5``: stream an MRD raw file
    to a server and write the images it returns (never over the input; an existing file only with
    --overwrite). Exit status 0 when the server ended cleanly with images and no error text, 1 otherwise,
    2 (one line on stderr) when the file, the output or the connection is refused."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m fastrecon.serve.client", description="Stream an MRD raw file to an MRD server."
    )
    parser.add_argument("input", help="MRD raw file (.h5)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9002)
    parser.add_argument("--group", default="dataset", help="MRD group in the file (default: %(default)s)")
    parser.add_argument("--config", default="fastrecon", help="CONFIG_FILE name sent first")
    parser.add_argument("--out", default=None, help="write the returned images to this MRD file")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    parser.add_argument(
        "--timeout", type=float, default=300.0, help="seconds without progress before giving up"
    )
    args = parser.parse_args(argv)
    try:
        return _run(args)
    except (FastreconError, OSError) as exc:  # one line, no traceback (exit status 2, as `fastrecon`)
        message = " ".join(str(exc).split())
        print(f"{parser.prog}: error: {message}", file=sys.stderr)
        return 2


def _run(args: Any) -> int:
    from fastrecon._files import check_output
    from fastrecon.data.mrd import mrd_raw_groups
    from fastrecon.data.mrd_images import write_mrd_images

    groups = mrd_raw_groups(args.input)
    if not groups:
        raise DataFormatError(f"{args.input!r} is not an MRD raw data file (an HDF5 file with an MRD group).")
    if args.group not in groups:
        raise DataFormatError(f"{args.input!r} has no MRD raw data group {args.group!r}; it has {groups}.")
    if args.out is not None:
        check_output(args.out, inputs=[args.input], overwrite=args.overwrite)
    try:
        result = stream_file(
            args.input,
            group=args.group,
            host=args.host,
            port=args.port,
            config=args.config,
            timeout=args.timeout,
        )
    except (ConnectionError, TimeoutError, socket.gaierror) as exc:
        raise OSError(f"cannot stream to {args.host}:{args.port}: {exc}") from exc
    for text in result.texts:
        print(f"server: {text}")
    print(f"{len(result.images)} images received; {'CLOSE received' if result.closed else 'no CLOSE'}")
    if args.out is not None and result.images:
        write_mrd_images(args.out, result.images, inputs=[args.input], overwrite=args.overwrite)
        print(f"wrote {args.out}")
    return 0 if result.closed and result.images and not result.texts else 1


if __name__ == "__main__":
    raise SystemExit(main())
