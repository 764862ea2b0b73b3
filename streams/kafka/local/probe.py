"""Ask a Kafka broker, over the wire, whether it serves requests.

A blocking Metadata v4 request on a plain socket, so the readiness check works in any
thread and inside or outside a running event loop, and needs no Kafka client library.
Metadata v4 is the oldest version Kafka 4.x still serves (KIP-896) and is not a flexible
version, so its encoding is a handful of fixed-width fields.
"""

from __future__ import annotations

import socket
import struct

__all__ = ["broker_answers"]

_METADATA_API_KEY = 3
_METADATA_VERSION = 4
_CLIENT_ID = b"meterstream-probe"
_MAX_RESPONSE_BYTES = 16 * 1024 * 1024


def broker_answers(host: str, port: int, *, timeout_s: float = 2.0) -> bool:
    """True when the broker at host:port returns metadata listing itself and a controller.

    That is the point from which clients can create topics and produce: the broker has
    registered with the KRaft quorum and opened its request handlers. Connection errors,
    timeouts and malformed answers all mean "not yet" and return False.
    """
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            sock.sendall(_metadata_request(correlation_id=1))
            (size,) = struct.unpack(">i", _recv_exact(sock, 4))
            if not 0 < size <= _MAX_RESPONSE_BYTES:
                return False
            return _lists_a_broker_and_controller(_recv_exact(sock, size), correlation_id=1)
    except (OSError, struct.error, ValueError):
        return False


def _metadata_request(*, correlation_id: int) -> bytes:
    header = struct.pack(
        ">hhih", _METADATA_API_KEY, _METADATA_VERSION, correlation_id, len(_CLIENT_ID)
    )
    # topics = null (-1) asks for no topic list creation; allow_auto_topic_creation = false.
    body = struct.pack(">ib", -1, 0)
    payload = header + _CLIENT_ID + body
    return struct.pack(">i", len(payload)) + payload


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    chunks: list[bytes] = []
    remaining = n
    while remaining:
        chunk = sock.recv(remaining)
        if not chunk:
            raise ValueError("connection closed mid-response")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def _lists_a_broker_and_controller(data: bytes, *, correlation_id: int) -> bool:
    offset = 0

    def take(fmt: str) -> int:
        nonlocal offset
        (value,) = struct.unpack_from(fmt, data, offset)
        offset += struct.calcsize(fmt)
        return int(value)

    def skip_string() -> None:
        nonlocal offset
        length = take(">h")
        if length > 0:
            offset += length

    if take(">i") != correlation_id:
        return False
    take(">i")  # throttle_time_ms
    broker_count = take(">i")
    for _ in range(broker_count):
        take(">i")  # node_id
        skip_string()  # host
        take(">i")  # port
        skip_string()  # rack (nullable)
    skip_string()  # cluster_id (nullable)
    controller_id = take(">i")
    return broker_count > 0 and controller_id >= 0
