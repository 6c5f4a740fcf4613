"""The MRD streaming server: one thread per connection, one shared model worker.

Per connection (python-ismrmrd-server's conventions): the client sends a config (CONFIG_FILE or
CONFIG_TEXT, optional), the XML header, optionally a TEXT with JSON parameters, the acquisitions
(waveforms are ignored) and CLOSE. Complete slices are reconstructed as soon as they are assembled and
each image is sent back as soon as it is ready; after the last image the server sends CLOSE. Any error
(malformed, truncated or unknown message, a header the model cannot take, a failed reconstruction)
is answered with one TEXT naming it, then CLOSE, to that client only.

Memory is bounded: at most ``max_inflight`` slices per connection wait for the model (the client is
made to wait, not the server to grow), incomplete slices per client and for all clients together
(``max_pending_bytes``, ``max_total_pending_bytes``), each message
by ``max_message_bytes``, and connections by ``max_connections``. A client that stops reading is
dropped after ``send_timeout`` seconds, and never blocks the model worker or other clients.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import queue
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from fastrecon.data.mrd import KSpaceAssembler, MRDSlice, PendingBudget
from fastrecon.data.mrd_images import to_mrd_images
from fastrecon.errors import DataFormatError, FastreconError, InputError
from fastrecon.serve import _wire
from fastrecon.serve.worker import Job, ModelWorker, describe

log = logging.getLogger("fastrecon.serve")

_TICK = 0.25  # seconds: how often blocked socket calls wake up to look for a shutdown
LATENCY_WINDOW = 100_000  # latencies kept for the summary (the most recent ones)


@dataclass
class ServeOptions:
    """Server limits and outputs (the defaults suit one scanner or a handful of clients)."""

    host: str = "127.0.0.1"
    port: int = 9002
    batch_size: int = 8
    max_connections: int = 16
    max_inflight: int = 4
    idle_timeout: float = 300.0
    header_timeout: float = 30.0  # from connecting to the end of the XML header
    send_timeout: float = 30.0
    max_message_bytes: int = 64 * 2**20
    max_pending_bytes: int = 1024 * 2**20  # incomplete slices per client
    max_total_pending_bytes: int = 4 * 2**30  # incomplete slices of all clients together
    image_dtype: str = "float32"
    series_index: int = 1


def latency_summary(latencies_s: list[float]) -> dict[str, float]:
    """``count`` and ``p50_ms`` / ``p90_ms`` / ``max_ms`` of latencies given in seconds."""
    if not latencies_s:
        return {"count": 0}
    values = np.asarray(latencies_s, dtype=np.float64) * 1000.0
    return {
        "count": len(values),
        "p50_ms": float(np.percentile(values, 50)),
        "p90_ms": float(np.percentile(values, 90)),
        "max_ms": float(values.max()),
    }


class Connection:
    """One client: a reader (this thread) and a writer thread that sends images, TEXT and CLOSE."""

    def __init__(self, server: MRDServer, sock: socket.socket, peer: str) -> None:
        self.server = server
        self.sock = sock
        self.peer = peer
        self.failed = threading.Event()
        self.outbox: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.inflight = threading.BoundedSemaphore(server.options.max_inflight)
        self.submitted = 0
        self.sent = 0
        self.assembler: KSpaceAssembler | None = None
        self._reader: _wire.BoundedReader | None = None
        self._writer = threading.Thread(target=self._write_loop, name=f"fastrecon-send-{peer}", daemon=True)

    # --- reading ------------------------------------------------------------------------------------

    def run(self) -> None:
        self._writer.start()
        try:
            self._read()
        except (FastreconError, OSError) as exc:
            self.fail(describe(exc) if isinstance(exc, FastreconError) else f"connection error: {exc}")
        except Exception as exc:  # a bug: still answer the client, keep serving the others
            log.exception("%s: unexpected error", self.peer)
            self.fail(describe(exc))
        finally:
            if self.assembler is not None:
                self.assembler.close()  # incomplete slices of a stream that ended early: back to the budget
            self._writer.join()
            _linger_close(self.sock)
            log.info("%s: closed (%d images sent)", self.peer, self.sent)

    def _read(self) -> None:
        options = self.server.options
        reader = _wire.BoundedReader(
            self.sock,
            max_message_bytes=options.max_message_bytes,
            idle_timeout=options.idle_timeout,
            should_stop=lambda: self.failed.is_set() or self.server.forced.is_set(),
        )
        reader.deadline = (
            time.monotonic() + options.header_timeout,
            f"no MRD header within {options.header_timeout:g} s of connecting (expected config and header first).",
        )
        self._reader = reader
        for message_id, item in _wire.messages(reader):
            if self.failed.is_set():
                return
            if message_id in (_wire.CONFIG_FILE, _wire.CONFIG_TEXT):
                log.info("%s: config %r", self.peer, str(item)[:200])
            elif message_id == _wire.HEADER:
                self._header(item)
            elif message_id == _wire.TEXT:
                log.info("%s: parameters %r", self.peer, str(item)[:200])
            elif message_id == _wire.ACQUISITION:
                self._acquisition(item)
            # WAVEFORM (physiological signals) is read and not used; images and arrays are refused
            # by _wire.messages before their bodies are read.
        if self.assembler is not None:
            for item in self.assembler.flush():
                self._submit(item)
            if self.submitted == 0:  # as read_mrd refuses such a file: tell the client why nothing comes back
                raise DataFormatError(
                    f"no image to reconstruct: no imaging acquisitions ({self.assembler.acquisitions} "
                    f"acquisitions, {self.assembler.skipped} skipped as noise or other non-imaging data, the rest "
                    "calibration-only lines)."
                )
        self.outbox.put(("done", self.submitted))

    def _header(self, header: Any) -> None:
        if self.assembler is not None:
            raise _wire.ProtocolError("a second MRD header arrived; expected one header per connection.")
        self.assembler = KSpaceAssembler(
            header, max_pending_bytes=self.server.options.max_pending_bytes, budget=self.server.pending_budget
        )
        if self._reader is not None:
            self._reader.deadline = None
        encoding = self.assembler.encoding
        channels = encoding.receiver_channels
        if channels is not None:
            self.server.check_coils(channels, "the header's receiverChannels")
        log.info(
            "%s: header: matrix %s -> %s, %s channels",
            self.peer,
            encoding.encoded,
            (encoding.height, encoding.width),
            channels,
        )

    def _acquisition(self, acquisition: Any) -> None:
        if self.assembler is None:
            raise _wire.ProtocolError(
                "an acquisition arrived before the MRD header; expected the header first."
            )
        if self.assembler.coils is None:
            self.server.check_coils(int(acquisition.active_channels), "the acquisitions' active_channels")
        for item in self.assembler.add(acquisition):
            self._submit(item)

    def _submit(self, item: MRDSlice) -> None:
        # At most max_inflight slices wait for the model per client: a fast sender waits here.
        while not self.inflight.acquire(timeout=_TICK):
            if self.failed.is_set() or self.server.forced.is_set():
                raise _wire.ProtocolError("the connection was closed while slices were waiting.")
        self.submitted += 1
        self.server.worker.submit(Job(item, self._deliver, cancelled=self.failed.is_set))

    # --- writing ------------------------------------------------------------------------------------

    def _deliver(self, job: Job, image: np.ndarray | None, error: str | None) -> None:
        if error is not None:
            self.outbox.put(("error", error))
        else:
            self.outbox.put(("image", (job, image)))

    def fail(self, message: str) -> None:
        """Answer this client with TEXT(message) then CLOSE (once), and stop reading from it."""
        if not self.failed.is_set():
            log.warning("%s: %s", self.peer, message)
        self.outbox.put(("error", message))

    def _write_loop(self) -> None:
        expected: int | None = None
        index = 0
        try:
            while True:
                kind, payload = self.outbox.get()
                if kind == "error":
                    self.failed.set()
                    self._send(payload)
                    self._send(None)
                    return
                if kind == "done":
                    expected = payload
                elif kind == "image":
                    job, image = payload
                    index += 1
                    try:
                        self._send_image(job, image, index)
                    except (OSError, TimeoutError):
                        raise
                    except Exception as exc:  # building the image failed: tell this client, end its stream
                        log.exception("%s: image %d could not be built", self.peer, index)
                        self.failed.set()
                        self._send(describe(exc))
                        self._send(None)
                        return
                    self.inflight.release()
                if expected is not None and self.sent >= expected:
                    self._send(None)
                    return
        except (OSError, TimeoutError) as exc:
            log.warning("%s: sending failed: %s", self.peer, exc)
        finally:
            self.failed.set()
            # End our side (after TEXT/CLOSE); the reader notices `failed` at its next message or tick.
            with contextlib.suppress(OSError):
                self.sock.shutdown(socket.SHUT_WR)

    def _send_image(self, job: Job, image: np.ndarray, index: int) -> None:
        options = self.server.options
        recon = self.server.recon
        assembler = self.assembler
        if assembler is None:  # pragma: no cover - slices exist only after a header
            raise DataFormatError("an image without a header")
        ready_ms = (job.done_at - job.slice.completed_at) * 1000.0
        meta = {
            "FastreconModel": recon.config.name,
            "FastreconBackend": getattr(recon, "backend", None),
            "FastreconPrecision": getattr(recon, "precision", None),
            "FastreconLatencyMs": f"{ready_ms:.1f}",
        }
        (mrd,) = to_mrd_images(
            image[None],
            [job.slice],
            assembler.encoding,
            meta=meta,
            series_index=options.series_index,
            first_index=index,
            dtype=options.image_dtype,
        )
        self._send(mrd)
        latency = time.monotonic() - job.slice.completed_at
        self.sent += 1
        self.server.record_latency(latency)
        log.info(
            "%s: image %d (slice %s) sent, latency %.1f ms", self.peer, index, job.slice.key, latency * 1000
        )

    def _send(self, item: Any) -> None:
        _wire.send_all(self.sock, _wire.encode(item), timeout=self.server.options.send_timeout)


def _linger_close(sock: socket.socket, seconds: float = 2.0, limit: int = 64 * 2**20) -> None:
    """Close after reading (and dropping) what the client still sends, for at most ``seconds`` / ``limit``
    bytes: closing with unread data makes the kernel reset the connection, and the client could then lose
    the TEXT and CLOSE it was sent."""
    deadline = time.monotonic() + seconds
    received = 0
    with contextlib.suppress(OSError):
        while time.monotonic() < deadline and received < limit:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                continue
            if not chunk:
                break
            received += len(chunk)
    _close(sock)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


class MRDServer:
    """Listens on ``options.host:options.port`` (port 0: any free port; see :attr:`address`).

    Use :meth:`start` (a background accept thread) and :meth:`shutdown`, or :meth:`serve_forever`.
    """

    def __init__(self, recon: Any, options: ServeOptions | None = None) -> None:
        self.recon = recon
        self.options = options or ServeOptions()
        if self.options.image_dtype not in ("float32", "uint16"):
            raise InputError(f"image dtype {self.options.image_dtype!r}; expected 'float32' or 'uint16'.")
        self.worker = ModelWorker(recon, batch_size=self.options.batch_size)
        self.pending_budget = PendingBudget(self.options.max_total_pending_bytes)
        self.stopping = threading.Event()
        self.forced = threading.Event()
        self.stop_requested = threading.Event()
        # The most recent latencies only: a server that runs for months must not grow with every image.
        self._latencies: collections.deque[float] = collections.deque(maxlen=LATENCY_WINDOW)
        self.images_sent = 0
        self._lock = threading.Lock()
        self._connections: set[threading.Thread] = set()
        self._listener = socket.create_server((self.options.host, self.options.port), reuse_port=False)
        self._listener.settimeout(_TICK)
        self.address: tuple[str, int] = self._listener.getsockname()[:2]
        self._accept_thread: threading.Thread | None = None
        self.connections_served = 0

    def check_coils(self, coils: int, where: str) -> None:
        contract = self.recon.config.contract
        if not contract.min_coils <= coils <= contract.max_coils:
            raise InputError(
                f"{where} say {coils} coils; model {self.recon.config.name!r} accepts "
                f"{contract.min_coils}..{contract.max_coils}."
            )

    def record_latency(self, seconds: float) -> None:
        with self._lock:
            self._latencies.append(seconds)
            self.images_sent += 1

    def latency_summary(self) -> dict[str, float]:
        """:func:`latency_summary` of the last :data:`LATENCY_WINDOW` images, with ``images`` = all sent."""
        with self._lock:
            summary = latency_summary(list(self._latencies))
            summary["images"] = self.images_sent
            return summary

    def start(self) -> MRDServer:
        """Start the model worker and accept connections in a background thread."""
        self._accept_thread = threading.Thread(
            target=self.serve_forever, name="fastrecon-accept", daemon=True
        )
        self._accept_thread.start()
        return self

    def serve_forever(self) -> None:
        if not self.worker._thread.is_alive():
            self.worker.start()
        log.info("listening on %s:%d", *self.address)
        try:
            while not self.stopping.is_set():
                try:
                    sock, peer_address = self._listener.accept()
                except TimeoutError:
                    continue
                except OSError:
                    if self.stopping.is_set():
                        break
                    raise
                self._accept(sock, f"{peer_address[0]}:{peer_address[1]}")
        finally:
            self._listener.close()

    def _accept(self, sock: socket.socket, peer: str) -> None:
        sock.settimeout(_TICK)
        self._connections = {t for t in self._connections if t.is_alive()}
        if len(self._connections) >= self.options.max_connections:
            log.warning("%s: refused, %d connections already", peer, len(self._connections))
            try:
                message = f"server busy: {len(self._connections)} connections already; try again later."
                _wire.send_all(sock, _wire.encode(message) + _wire.encode(None), timeout=2.0)
            except OSError:
                pass
            _close(sock)
            return
        self.connections_served += 1
        log.info("%s: connected", peer)
        connection = Connection(self, sock, peer)
        thread = threading.Thread(target=connection.run, name=f"fastrecon-conn-{peer}", daemon=True)
        self._connections.add(thread)
        thread.start()

    def request_stop(self) -> None:
        """Ask for a shutdown (safe from a signal handler): sets :attr:`stop_requested` for the thread
        that calls :meth:`shutdown`. A second request (SIGTERM or Ctrl-C again) does not wait for the
        connections in flight: they are answered with TEXT + CLOSE at once."""
        if self.stop_requested.is_set():
            self.forced.set()
        self.stop_requested.set()

    def shutdown(self, timeout: float = 60.0) -> dict[str, float]:
        """Stop accepting, let connections in flight finish (up to ``timeout`` s, then cut them off),
        stop the model worker; returns (and logs) the latency summary."""
        self.stopping.set()
        if self._accept_thread is not None:
            self._accept_thread.join()
        else:
            self._listener.close()
        deadline = time.monotonic() + timeout
        for thread in list(self._connections):
            thread.join(max(0.0, deadline - time.monotonic()))
        if any(t.is_alive() for t in self._connections):
            self.forced.set()
            for thread in list(self._connections):
                thread.join(10.0)
        if self.worker._thread.is_alive():
            self.worker.stop(timeout=60.0)
        summary = self.latency_summary()
        log.info("shut down: %s", _format_summary(summary))
        return summary


def _format_summary(summary: dict[str, float]) -> str:
    if not summary.get("count"):
        return "no images sent"
    return (
        f"{int(summary['images'])} images, latency p50 {summary['p50_ms']:.1f} ms, "
        f"p90 {summary['p90_ms']:.1f} ms, max {summary['max_ms']:.1f} ms"
    )
