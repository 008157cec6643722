"""Raw Kafka-protocol probes over a plain socket: ApiVersions and Metadata, with timeouts.

Used to decide that a broker is up (a Metadata request answers, not just an open TCP port) and
to recognize the embedded Tansu broker (:mod:`nextbehavior.stream.compat`). Blocking and
dependency-free on purpose: they run before any client or event loop exists. PLAINTEXT only.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass
from typing import Final

API_METADATA: Final = 3
API_API_VERSIONS: Final = 18
_CLIENT_ID: Final = b"nextbehavior-probe"
_MAX_RESPONSE: Final = 16 << 20


class ProbeError(Exception):
    """The broker did not answer, or answered something that is not Kafka."""


@dataclass(frozen=True, slots=True)
class ClusterInfo:
    """What a Metadata v2 answer says about the cluster."""

    cluster_id: str | None
    brokers: tuple[tuple[int, str, int], ...]  # (node_id, host, port)
    controller_id: int


def split_hostport(address: str) -> tuple[str, int]:
    """``"host:port"`` -> ``("host", port)`` (IPv6 in brackets allowed)."""
    host, sep, port = address.strip().rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"address must be HOST:PORT, got {address!r}")
    return host.strip("[]"), int(port)


def request(address: str, api_key: int, version: int, body: bytes, timeout_s: float) -> bytes:
    """Send one request (header v1) and return the response body after the correlation id."""
    host, port = split_hostport(address)
    correlation_id = 1
    header = struct.pack(">hhih", api_key, version, correlation_id, len(_CLIENT_ID)) + _CLIENT_ID
    payload = header + body
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            sock.settimeout(timeout_s)
            sock.sendall(struct.pack(">i", len(payload)) + payload)
            (size,) = struct.unpack(">i", _read_exact(sock, 4))
            if not 4 <= size <= _MAX_RESPONSE:
                raise ProbeError(f"{address} answered a {size}-byte frame: not a Kafka broker")
            data = _read_exact(sock, size)
    except (TimeoutError, ConnectionError) as exc:
        raise ProbeError(f"{address} did not answer: {exc}") from None
    except OSError as exc:
        raise ProbeError(f"{address} is unreachable: {exc}") from None
    (got,) = struct.unpack(">i", data[:4])
    if got != correlation_id:
        raise ProbeError(f"{address} answered correlation id {got}: not a Kafka broker")
    return data[4:]


def _read_exact(sock: socket.socket, size: int) -> bytes:
    chunks: list[bytes] = []
    left = size
    while left:
        chunk = sock.recv(min(left, 1 << 16))
        if not chunk:
            raise ConnectionError("connection closed mid-response")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, fmt: str) -> int:
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.data):
            raise ProbeError("truncated Kafka response")
        (value,) = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return int(value)

    def string(self) -> str | None:
        size = self.take(">h")
        if size < 0:
            return None
        raw = self.data[self.pos : self.pos + size]
        self.pos += size
        return raw.decode("utf-8", "replace")


def api_versions(address: str, timeout_s: float = 2.0) -> dict[int, tuple[int, int]]:
    """The broker's ApiVersions v0 answer: ``{api_key: (min_version, max_version)}``."""
    reader = _Reader(request(address, API_API_VERSIONS, 0, b"", timeout_s))
    error = reader.take(">h")
    if error:
        raise ProbeError(f"{address} refused ApiVersions (error code {error})")
    count = reader.take(">i")
    out: dict[int, tuple[int, int]] = {}
    for _ in range(max(count, 0)):
        key = reader.take(">h")
        out[key] = (reader.take(">h"), reader.take(">h"))
    return out


def metadata(address: str, timeout_s: float = 2.0) -> ClusterInfo:
    """Metadata v2 for no topics (never auto-creates one): brokers, cluster id, controller."""
    reader = _Reader(request(address, API_METADATA, 2, struct.pack(">i", 0), timeout_s))
    brokers = []
    for _ in range(max(reader.take(">i"), 0)):
        node_id = reader.take(">i")
        host = reader.string() or ""
        port = reader.take(">i")
        reader.string()  # rack
        brokers.append((node_id, host, port))
    cluster_id = reader.string()
    controller_id = reader.take(">i")
    if not brokers:
        raise ProbeError(f"{address} answered Metadata with no brokers")
    return ClusterInfo(cluster_id, tuple(brokers), controller_id)


def first_answer(bootstrap: str, timeout_s: float = 2.0) -> tuple[str, ClusterInfo]:
    """Metadata from the first address of a comma-separated bootstrap list that answers."""
    errors: list[str] = []
    for address in (a.strip() for a in bootstrap.split(",") if a.strip()):
        try:
            return address, metadata(address, timeout_s)
        except (ProbeError, ValueError) as exc:
            errors.append(str(exc))
    raise ProbeError("; ".join(errors) or f"no address in {bootstrap!r}")
