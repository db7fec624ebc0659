"""Is a server up? Only a real answer says so: Valkey's PONG, a PostgreSQL query, broker metadata.

An open port is not enough: Valkey accepts connections while it loads its append-only
file and answers every command with `-LOADING`; PostgreSQL accepts them while it
recovers; a broker can accept them before it serves metadata. Each probe makes one
request and raises NotReady with what it got; `wait_ready` repeats one until a deadline.
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Callable
from typing import Final

PROBE_TIMEOUT_S: Final = 2.0
POLL_S: Final = 0.1


class NotReady(Exception):
    """The server answered, or failed to, in a way that means "not yet"; says what it saw."""


def _connect(port: int, host: str = "127.0.0.1") -> socket.socket:
    try:
        return socket.create_connection((host, port), PROBE_TIMEOUT_S)
    except OSError as exc:
        raise NotReady(f"no connection to {host}:{port} ({exc.strerror or exc})") from None


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise NotReady("the server closed the connection")
        data += chunk
    return data


def redis_ping(port: int, host: str = "127.0.0.1") -> None:
    """PING must answer +PONG: `-LOADING` (the dataset is being loaded) is not ready."""
    with _connect(port, host) as sock:
        try:
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            line = b""
            while not line.endswith(b"\r\n"):
                chunk = sock.recv(512)
                if not chunk:
                    raise NotReady("the server closed the connection")
                line += chunk
        except OSError as exc:
            raise NotReady(f"PING failed ({exc})") from None
    reply = line.strip().decode(errors="replace")
    if reply != "+PONG":
        # "-LOADING Valkey is loading the dataset in memory", "-MASTERDOWN ...", ...
        raise NotReady(f"PING answered {reply!r}")


# Metadata v0 (api key 3) for every topic: the first request any Kafka client makes.
_METADATA_CORRELATION: Final = 0x6C6E


def kafka_metadata(port: int, host: str = "127.0.0.1") -> int:
    """One Metadata request; returns how many brokers the answer lists (at least one)."""
    client_id = b"greenlane-probe"
    body = struct.pack(">hhih", 3, 0, _METADATA_CORRELATION, len(client_id)) + client_id
    body += struct.pack(">i", 0)  # v0: an empty topic list means every topic
    with _connect(port, host) as sock:
        try:
            sock.sendall(struct.pack(">i", len(body)) + body)
            (size,) = struct.unpack(">i", _read_exactly(sock, 4))
            answer = _read_exactly(sock, size)
        except (OSError, struct.error) as exc:
            raise NotReady(f"metadata request failed ({exc})") from None
    if len(answer) < 8:
        raise NotReady(f"metadata answer too short ({len(answer)} bytes)")
    correlation, brokers = struct.unpack(">ii", answer[:8])
    if correlation != _METADATA_CORRELATION:
        raise NotReady(f"metadata answer for another request ({correlation})")
    if brokers < 1:
        raise NotReady("metadata lists no broker yet")
    return int(brokers)


def postgres_query(url: str) -> None:
    """`SELECT 1` on url; a server still starting or recovering is not ready."""
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=int(PROBE_TIMEOUT_S) + 1) as conn:
            conn.execute("SELECT 1").fetchone()
    except psycopg.Error as exc:
        raise NotReady(f"query failed: {' '.join(str(exc).split())}") from None


def wait_ready(
    probe: Callable[[], object],
    timeout: float,
    *,
    alive: Callable[[], bool] = lambda: True,
) -> None:
    """Repeat probe until it succeeds; NotReady with its last answer after timeout.

    alive() false (the process died) ends the wait at once with NotReady.
    """
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    while True:
        if not alive():
            raise NotReady(f"the process exited (last answer: {last})")
        try:
            probe()
            return
        except NotReady as exc:
            last = str(exc)
        if time.monotonic() >= deadline:
            raise NotReady(f"not ready after {timeout:g} s (last answer: {last})")
        time.sleep(POLL_S)
