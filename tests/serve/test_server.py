"""The MRD streaming server on real sockets (127.0.0.1): images equal reconstruct(), every fault answered
with TEXT then CLOSE to that client only, concurrent clients, SIGTERM shutdown. Every wait is bounded."""

from __future__ import annotations

import io
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import ismrmrd
import numpy as np
import pytest
import torch

import fastrecon
from fastrecon.data.mrd import KSpaceAssembler
from fastrecon.data.mrd_header import build_header
from fastrecon.data.mrd_images import image_array
from fastrecon.serve import MRDServer, ServeOptions
from fastrecon.serve.client import stream, stream_file
from tests.data._mrd import raw_case, write_raw
from tests.serve._client import exchange, payload, read_answer

CONFIG = ismrmrd.serialization.ConfigFile("fastrecon")


@pytest.fixture(scope="module")
def demo() -> fastrecon.Reconstructor:
    return fastrecon.load("demo-x8", device="cpu")


@pytest.fixture(scope="module")
def server(demo):  # type: ignore[no-untyped-def]
    srv = MRDServer(demo, ServeOptions(port=0, send_timeout=10.0, idle_timeout=20.0)).start()
    yield srv
    srv.shutdown(timeout=30.0)


@pytest.fixture(scope="module")
def case():  # type: ignore[no-untyped-def]
    return raw_case()


@pytest.fixture(scope="module")
def expected(case, demo) -> np.ndarray:  # type: ignore[no-untyped-def]
    assembler = KSpaceAssembler(case.header)
    slices = []
    for acq in case.acquisitions:
        slices += assembler.add(acq)
    kspace = torch.from_numpy(np.stack([s.kspace for s in slices]))
    mask = torch.from_numpy(np.stack([s.mask for s in slices])[:, None, None, :])
    return demo.reconstruct(kspace, mask).numpy()


def _check_images(images: list, expected: np.ndarray) -> None:
    assert len(images) == len(expected)
    by_slice = {image.slice: image_array(image) for image in images}
    got = np.stack([by_slice[n] for n in range(len(expected))])
    # Batched with other clients' slices or alone: the same model, fp32 rounding at most.
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5 * float(np.abs(expected).max()))


def test_images_equal_reconstruct(server, case, expected, demo) -> None:  # type: ignore[no-untyped-def]
    result = stream(case.header, case.acquisitions, port=server.address[1], timeout=60)
    assert result.closed and result.texts == [] and result.send_error is None
    _check_images(result.images, expected)
    first = result.images[0]
    assert tuple(first.matrix_size) == (64, 64, 1)
    assert tuple(first.field_of_view) == (64.0, 64.0, 5.0)
    assert first.image_type == ismrmrd.IMTYPE_MAGNITUDE and first.image_series_index == 1
    assert sorted(image.image_index for image in result.images) == [1, 2]
    assert first.meta["FastreconModel"] == "demo-x8" and first.meta["FastreconBackend"] == "eager"
    assert float(first.meta["FastreconLatencyMs"]) >= 0
    # The same k-space given straight to reconstruct() (before assembly round-off).
    direct = demo.reconstruct(torch.from_numpy(case.kspace * case.mask), torch.from_numpy(case.mask)).numpy()
    got = np.stack([image_array(image) for image in sorted(result.images, key=lambda i: i.slice)])
    np.testing.assert_allclose(got, direct, rtol=0, atol=1e-4 * float(np.abs(direct).max()))


def test_stream_file(server, case, expected, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    raw = write_raw(tmp_path / "raw.h5", case.header, case.acquisitions)
    result = stream_file(raw, port=server.address[1], timeout=60)
    assert result.closed and result.texts == []
    _check_images(result.images, expected)


def test_client_built_like_the_reference_client(server, case, expected) -> None:  # type: ignore[no-untyped-def]
    """python-ismrmrd-server's client.py writes envelopes by hand: CONFIG_FILE, the XML header and the JSON
    parameters each ending with a NUL, then acquisitions and CLOSE, and keeps reading until CLOSE."""

    def text(message_id: int, contents: str) -> bytes:
        body = (contents + "\0").encode("utf-8")
        return struct.pack("<HI", message_id, len(body)) + body

    data = struct.pack("<H", 1) + struct.pack("1024s", b"fastrecon")
    data += text(3, case.header.toXML("utf-8")) + text(5, '{"parameters": {"config": "fastrecon"}}')
    data += b"".join(payload(acq, close=False) for acq in case.acquisitions) + struct.pack("<H", 4)
    answer = exchange(server.address[1], data)
    assert answer.closed and answer.texts == []
    _check_images(answer.images, expected)


def _acquisition_bytes(case) -> bytes:  # type: ignore[no-untyped-def]
    return payload(case.acquisitions[5], close=False)


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ("garbage", "unknown MRD message id"),
        ("unknown_id", "unknown MRD message id 999"),
        ("truncated", "truncated ACQUISITION message"),
        ("no_close", "ended without a CLOSE message"),
        ("bad_xml", "malformed HEADER message"),
        ("huge_text", "exceeds the server's limit"),
        ("huge_acquisition", "the server's limit is"),
        ("spiral", "non-Cartesian trajectory 'spiral'"),
        ("three_d", "3-D encoding"),
        ("too_many_coils", "accepts 1..32"),
        ("before_header", "before the MRD header"),
        ("image_in", "reconstructs raw acquisitions"),
        ("all_zero", "all zeros"),
        ("no_imaging", "no imaging acquisitions (5 acquisitions, 2 skipped"),
    ],
)
def test_faults_answered_with_text_then_close(server, case, fault: str, message: str) -> None:  # type: ignore[no-untyped-def]
    good_header = payload(CONFIG, case.header, close=False)
    acq = case.acquisitions[5]
    if fault == "garbage":
        data = bytes(range(7, 250)) * 4
    elif fault == "unknown_id":
        data = good_header + struct.pack("<H", 999) + b"\0" * 64
    elif fault == "truncated":
        data = good_header + _acquisition_bytes(case)[:200]
    elif fault == "no_close":
        data = good_header + _acquisition_bytes(case)
    elif fault == "bad_xml":
        xml = b"<ismrmrdHeader><encoding>"
        data = payload(CONFIG, close=False) + struct.pack("<HI", 3, len(xml)) + xml
    elif fault == "huge_text":
        data = good_header + struct.pack("<HI", 5, 2**31)
    elif fault == "huge_acquisition":
        big = ismrmrd.Acquisition.from_array(np.zeros((1, 8), np.complex64))
        raw = bytearray(payload(big, close=False))
        head = ismrmrd.AcquisitionHeader.from_buffer_copy(bytes(raw[2 : 2 + 340]))
        head.number_of_samples, head.active_channels = 65535, 1024
        data = good_header + struct.pack("<H", 1008) + bytes(head)
    elif fault == "spiral":
        data = payload(CONFIG, build_header(encoded_size=(64, 64), trajectory="spiral"), acq)
    elif fault == "three_d":
        header = build_header(encoded_size=(64, 64), encoded_z=8, e2_limits=(0, 7, 4))
        data = payload(CONFIG, header, acq)
    elif fault == "too_many_coils":
        data = payload(CONFIG, build_header(encoded_size=(128, 64), recon_size=(64, 64), num_coils=64), acq)
    elif fault == "before_header":
        data = payload(CONFIG, acq)
    elif fault == "image_in":
        image = ismrmrd.Image.from_array(np.zeros((4, 4), np.float32))
        data = good_header + payload(image)
    elif fault == "no_imaging":  # the noise scans and calibration-only lines, nothing else
        data = payload(CONFIG, case.header, *case.acquisitions[:5])
    else:  # all_zero: a complete slice of zeros cannot be reconstructed
        zero = ismrmrd.Acquisition(acq.getHead(), np.zeros_like(acq.data))
        zero.set_flag(ismrmrd.ACQ_LAST_IN_SLICE)
        data = good_header + payload(zero)
    answer = exchange(server.address[1], data)
    assert answer.closed, fault
    assert len(answer.texts) == 1 and message in answer.texts[0], answer.texts
    assert answer.images == []


def test_config_then_close_is_a_quiet_query(server) -> None:  # type: ignore[no-untyped-def]
    """Gadgetron's dependency query (and python-ismrmrd-server's handling of it): config, CLOSE, no header."""
    answer = exchange(server.address[1], payload(CONFIG))
    assert answer.closed and answer.texts == [] and answer.images == []


def test_disconnect_mid_stream_then_still_serving(server, case, expected) -> None:  # type: ignore[no-untyped-def]
    data = payload(CONFIG, case.header, *case.acquisitions[:40], close=False)
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", server.address[1]), timeout=10) as sock:
            sock.sendall(data[: len(data) // 2])
    result = stream(case.header, case.acquisitions, port=server.address[1], timeout=60)
    assert result.closed and result.texts == []
    _check_images(result.images, expected)


def test_eight_concurrent_clients(server, case, expected) -> None:  # type: ignore[no-untyped-def]
    results: dict[int, object] = {}
    spiral = payload(CONFIG, build_header(encoded_size=(64, 64), trajectory="spiral"), case.acquisitions[5])

    def client(index: int) -> None:
        if index in (2, 5):
            results[index] = exchange(server.address[1], spiral if index == 2 else b"\xff" * 100)
        else:
            results[index] = stream(case.header, case.acquisitions, port=server.address[1], timeout=120)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(180)
    assert not any(thread.is_alive() for thread in threads)
    for index in range(8):
        result = results[index]
        assert result.closed  # type: ignore[attr-defined]
        if index in (2, 5):
            assert len(result.texts) == 1 and result.images == []  # type: ignore[attr-defined]
        else:
            assert result.texts == []  # type: ignore[attr-defined]
            _check_images(result.images, expected)  # type: ignore[attr-defined]
    assert server.worker.slices >= 12
    # Still answering afterwards.
    after = stream(case.header, case.acquisitions, port=server.address[1], timeout=60)
    assert after.closed and len(after.images) == 2


def test_latency_summary(server) -> None:  # type: ignore[no-untyped-def]
    summary = server.latency_summary()
    assert summary["count"] >= 2 and 0 <= summary["p50_ms"] <= summary["p90_ms"] <= summary["max_ms"]


def test_sigterm_finishes_in_flight_and_exits_0(case, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    command = [
        sys.executable,
        "-m",
        "fastrecon.cli",
        "serve",
        "--model",
        "demo-x8",
        "--device",
        "cpu",
        "--port",
        "0",
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # blocks until the server listens (bounded by the timeout below)
        assert "listening on 127.0.0.1:" in line, line + (
            process.stderr.read() if process.poll() is not None else ""
        )
        port = int(line.split("127.0.0.1:")[1].split()[0])
        first, rest = case.acquisitions[:30], case.acquisitions[30:]
        with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
            sock.sendall(payload(CONFIG, case.header, *first, close=False))
            time.sleep(0.5)
            process.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 10
            refused = False
            while time.monotonic() < deadline and not refused:  # new connections are refused...
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=2).close()
                    time.sleep(0.2)
                except OSError:
                    refused = True
            assert refused
            sock.sendall(payload(*rest))  # ...while the one in flight is finished
            answer = read_answer(sock)
        assert answer.closed and answer.texts == [] and len(answer.images) == 2
        out, err = process.communicate(timeout=60)
        assert process.returncode == 0, err
        assert "2 images; latency p50" in out
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=10)


def test_second_stop_request_cuts_off_a_stalled_stream(demo, case) -> None:  # type: ignore[no-untyped-def]
    """SIGTERM lets connections finish (up to the grace time); a second SIGTERM / Ctrl-C must not wait."""
    srv = MRDServer(demo, ServeOptions(port=0)).start()
    with socket.create_connection(("127.0.0.1", srv.address[1]), timeout=30) as sock:
        sock.sendall(payload(CONFIG, case.header, *case.acquisitions[:10], close=False))  # ...then stalls
        time.sleep(0.3)
        srv.request_stop()
        assert srv.stop_requested.is_set() and not srv.forced.is_set()
        done = threading.Event()
        threading.Thread(target=lambda: (srv.shutdown(timeout=60.0), done.set()), daemon=True).start()
        assert not done.wait(1.0)  # the stalled stream is given its grace time...
        started = time.monotonic()
        srv.request_stop()  # ...until asked again
        answer = read_answer(sock)
        assert done.wait(20.0) and time.monotonic() - started < 15
    assert answer.closed and answer.texts == ["the server is shutting down; the stream was not finished."]


def test_latencies_kept_are_bounded(demo, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    import fastrecon.serve.server as server_module

    monkeypatch.setattr(server_module, "LATENCY_WINDOW", 5)
    srv = MRDServer(demo, ServeOptions(port=0))
    try:
        for value in range(1, 101):
            srv.record_latency(value / 1000)
        summary = srv.latency_summary()
        assert summary["images"] == 100 and summary["count"] == 5  # a long-running server does not grow
        assert summary["max_ms"] == pytest.approx(100.0) and summary["p50_ms"] == pytest.approx(98.0)
    finally:
        srv.shutdown(timeout=5)


def test_payload_helper_round_trip(case) -> None:  # type: ignore[no-untyped-def]
    items = list(ismrmrd.ProtocolDeserializer(io.BytesIO(payload(CONFIG, case.header, "x"))).deserialize())
    assert items[0] == "fastrecon" and items[2] == "x"


def test_idle_client_is_answered_and_dropped(demo, case) -> None:  # type: ignore[no-untyped-def]
    srv = MRDServer(demo, ServeOptions(port=0, idle_timeout=1.0)).start()
    try:
        with socket.create_connection(("127.0.0.1", srv.address[1]), timeout=30) as sock:
            sock.sendall(payload(CONFIG, case.header, close=False))  # ...then nothing
            started = time.monotonic()
            answer = read_answer(sock)
        assert (
            answer.closed and len(answer.texts) == 1 and "no data from the client for 1 s" in answer.texts[0]
        )
        assert time.monotonic() - started < 15
    finally:
        srv.shutdown(timeout=10)


def test_trickling_client_without_header_is_dropped(demo, case) -> None:  # type: ignore[no-untyped-def]
    """A client that sends a few bytes now and then, never a header, must not hold a connection slot for long."""
    srv = MRDServer(demo, ServeOptions(port=0, header_timeout=1.0, max_connections=1)).start()
    try:
        with socket.create_connection(("127.0.0.1", srv.address[1]), timeout=30) as sock:
            data = payload(CONFIG, close=False)
            started = time.monotonic()
            try:
                for offset in range(0, len(data), 8):  # 8 bytes every 0.1 s: never idle, never done
                    sock.sendall(data[offset : offset + 8])
                    time.sleep(0.1)
                    if time.monotonic() - started > 5:
                        break
            except OSError:  # the server hung up on us
                pass
            answer = read_answer(sock)
        assert answer.closed and len(answer.texts) == 1 and "no MRD header within 1 s" in answer.texts[0]
        assert time.monotonic() - started < 10
        for _ in range(25):  # the slot is free again (once the dropped connection's thread has ended)
            after = stream(case.header, case.acquisitions, port=srv.address[1], timeout=60)
            if not (after.texts and after.texts[0].startswith("server busy")):
                break
            time.sleep(0.2)
        assert after.closed and after.texts == [] and len(after.images) == 2
    finally:
        srv.shutdown(timeout=10)


def test_abandoned_streams_give_back_their_pending_memory(demo, case, expected) -> None:  # type: ignore[no-untyped-def]
    """The limit on incomplete slices of all clients together: a client that disconnects mid-slice must not
    keep its share, or after a few such clients the server would refuse everyone."""
    srv = MRDServer(demo, ServeOptions(port=0, max_total_pending_bytes=300 * 2**10)).start()  # ~1 slice
    try:
        partial = payload(CONFIG, case.header, *case.acquisitions[:20], close=False)  # inside slice 0
        for _ in range(3):
            with socket.create_connection(("127.0.0.1", srv.address[1]), timeout=30) as sock:
                sock.sendall(partial)
                time.sleep(0.2)
        deadline = time.monotonic() + 20
        while srv.pending_budget.used and time.monotonic() < deadline:
            time.sleep(0.1)
        assert srv.pending_budget.used == 0
        result = stream(case.header, case.acquisitions, port=srv.address[1], timeout=60)
        assert result.closed and result.texts == []
        _check_images(result.images, expected)
        both = payload(CONFIG, case.header, *case.acquisitions[:20], close=False)
        with socket.create_connection(("127.0.0.1", srv.address[1]), timeout=30) as holder:
            holder.sendall(both)  # holds one slice's worth...
            time.sleep(0.5)
            refused = exchange(srv.address[1], payload(CONFIG, case.header, *case.acquisitions[:20]))
        assert (
            refused.closed
            and len(refused.texts) == 1
            and "incomplete slices for its clients" in refused.texts[0]
        )
    finally:
        srv.shutdown(timeout=10)


def test_send_gives_up_on_a_client_that_reads_nothing() -> None:
    from fastrecon.serve._wire import send_all

    left, right = socket.socketpair()
    with left, right:
        left.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        right.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        left.settimeout(0.1)
        started = time.monotonic()
        with pytest.raises(TimeoutError, match="read nothing for 0.5 s"):
            send_all(left, b"\0" * (8 * 2**20), timeout=0.5)
        assert time.monotonic() - started < 10


def test_client_command_writes_images(server, case, expected, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from fastrecon.data.mrd_images import read_mrd_images
    from fastrecon.serve.client import main as client_main

    raw = write_raw(tmp_path / "raw.h5", case.header, case.acquisitions)
    out = tmp_path / "images.mrd.h5"
    assert (
        client_main([str(raw), "--port", str(server.address[1]), "--out", str(out), "--timeout", "60"]) == 0
    )
    _check_images(read_mrd_images(out), expected)
    assert client_main([str(raw), "--port", str(server.address[1]), "--out", str(out)]) == 2  # already exists


def test_cli_serve_refuses_a_bad_port(capsys: pytest.CaptureFixture[str]) -> None:
    from fastrecon.cli import main

    assert main(["serve", "--model", "demo-x8", "--device", "cpu", "--port", "70000"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--port 70000 is not a TCP port" in err[0]


def test_client_command_errors_are_one_line(case, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    from fastrecon.serve.client import main as client_main

    raw = write_raw(tmp_path / "raw.h5", case.header, case.acquisitions)
    with socket.socket() as unused:  # a port nobody listens on
        unused.bind(("127.0.0.1", 0))
        port = str(unused.getsockname()[1])
    for argv, message in [
        ([str(raw), "--port", port], "cannot stream to 127.0.0.1:"),
        ([str(raw), "--port", port, "--group", "nope"], "has no MRD raw data group 'nope'"),
        ([str(raw), "--port", port, "--out", str(raw)], "is the input file"),
        ([str(tmp_path / "missing.h5"), "--port", port], "is not an MRD raw data file"),
    ]:
        assert client_main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
