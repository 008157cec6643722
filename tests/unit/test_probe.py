"""Raw Kafka probes against fake servers: anything that is not a Kafka answer is a ProbeError."""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Callable, Iterator

import pytest

from nextbehavior.stream.probe import ProbeError, api_versions, metadata, split_hostport


def _serve(answer: Callable[[socket.socket], None]) -> Iterator[str]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()

    def run() -> None:
        conn, _ = server.accept()
        with conn:
            answer(conn)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.getsockname()[1]}"
    server.close()
    thread.join(timeout=2)


def _frame(body: bytes) -> bytes:
    return struct.pack(">i", len(body)) + body


@pytest.fixture
def http_server() -> Iterator[str]:
    yield from _serve(lambda c: (c.recv(1024), c.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")))


@pytest.fixture
def silent_server() -> Iterator[str]:
    yield from _serve(lambda c: c.recv(1024) and threading.Event().wait(0.6))


@pytest.fixture
def fake_kafka() -> Iterator[str]:
    def answer(conn: socket.socket) -> None:
        conn.recv(1024)
        body = struct.pack(">ihi", 1, 0, 2) + struct.pack(">hhh", 3, 0, 12)
        body += struct.pack(">hhh", 18, 0, 3)
        conn.sendall(_frame(body))

    yield from _serve(answer)


@pytest.fixture
def fake_metadata() -> Iterator[str]:
    def answer(conn: socket.socket) -> None:
        conn.recv(1024)
        host = b"broker-1"
        cluster = b"abc"
        body = struct.pack(">ii", 1, 1) + struct.pack(">ih", 7, len(host)) + host
        body += struct.pack(">ih", 9092, -1)  # port, null rack
        body += struct.pack(">h", len(cluster)) + cluster + struct.pack(">ii", 7, 0)
        conn.sendall(_frame(body))

    yield from _serve(answer)


def test_split_hostport() -> None:
    assert split_hostport("h:1") == ("h", 1)
    assert split_hostport("[::1]:9092") == ("::1", 9092)
    for bad in ("h", "h:", ":1", "h:x"):
        with pytest.raises(ValueError, match="HOST:PORT"):
            split_hostport(bad)


def test_refused() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ProbeError, match="did not answer"):
        metadata(f"127.0.0.1:{port}", timeout_s=1)


def test_not_kafka(http_server: str) -> None:
    with pytest.raises(ProbeError, match="not a Kafka broker"):
        metadata(http_server, timeout_s=2)


def test_timeout(silent_server: str) -> None:
    with pytest.raises(ProbeError, match="did not answer"):
        api_versions(silent_server, timeout_s=0.3)


def test_api_versions_parse(fake_kafka: str) -> None:
    assert api_versions(fake_kafka) == {3: (0, 12), 18: (0, 3)}


def test_metadata_parse(fake_metadata: str) -> None:
    info = metadata(fake_metadata)
    assert info.cluster_id == "abc"
    assert info.brokers == ((7, "broker-1", 9092),)
    assert info.controller_id == 7
