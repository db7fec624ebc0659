"""Helpers for hub tests: a hub in the test's loop, WebSocket clients that apply frames."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

DEV_TOKEN = "greenlane-secret-token"


@contextlib.asynccontextmanager
async def running_hub(**overrides: Any) -> AsyncIterator[Any]:
    """A HubService behind a real uvicorn server on a free port, in this event loop."""
    from greenlane.hub.__main__ import bind, server_for
    from greenlane.hub.service import HubService
    from greenlane.hub.settings import HubSettings

    values: dict[str, Any] = {
        "api_tokens": DEV_TOKEN,
        "hub_host": "127.0.0.1",
        "hub_port": 0,
        "hub_frame_ms": 100,
        "hub_station_refresh_seconds": 0.5,
        **overrides,
    }
    settings = HubSettings(**values)
    service = HubService(settings)
    await service.start()
    sock = bind("127.0.0.1", 0)
    server = server_for(service)
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    await wait_until(lambda: server.started, 30.0, "the hub's server to start")
    service.port = sock.getsockname()[1]
    try:
        yield service
    finally:
        server.should_exit = True
        await service.stop()
        await serving
        sock.close()


async def wait_until(predicate: Any, seconds: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


@dataclass
class Client:
    """A WebSocket client that keeps the hub's picture the way the dashboard does."""

    ws: ClientConnection
    position: int | None = None
    epoch: str | None = None
    objects: dict[str, dict[str, Any]] = field(
        default_factory=lambda: {"cars": {}, "stations": {}, "bookings": {}, "plans": {}}
    )
    frames: list[dict[str, Any]] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)
    car_changes: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    coalesced: int = 0
    task: asyncio.Task[None] | None = None

    def apply(self, frame: dict[str, Any]) -> None:
        if frame["type"] == "snapshot":
            self.epoch = frame["epoch"]
            for kind in self.objects:
                self.objects[kind] = dict(frame[kind])
        elif frame["type"] == "changes":
            assert frame["from"] == self.position, (
                f"frame from {frame['from']} applied at {self.position}: a gap or a duplicate"
            )
            self.coalesced += frame["coalesced"]
            for kind in self.objects:
                for key, value in frame.get(kind, {}).items():
                    if value is None:
                        self.objects[kind].pop(key, None)
                    else:
                        self.objects[kind][key] = value
                        if kind == "cars":
                            self.car_changes.setdefault(key, []).append(value)
        else:
            raise AssertionError(f"unexpected frame {frame}")
        self.position = frame["seq"]

    async def _read(self) -> None:
        with contextlib.suppress(Exception):
            async for message in self.ws:
                frame = json.loads(message)
                self.frames.append(frame)
                self.arrivals.append(time.monotonic())
                self.apply(frame)

    def start(self) -> Client:
        self.task = asyncio.create_task(self._read())
        return self

    async def close(self) -> None:
        await self.ws.close()
        if self.task is not None:
            await self.task


async def open_client(
    port: int, *, since: int | None = None, epoch: str | None = None, token: str = DEV_TOKEN
) -> Client:
    query = []
    if since is not None:
        query.append(f"since={since}")
    if epoch is not None:
        query.append(f"epoch={epoch}")
    url = f"ws://127.0.0.1:{port}/ws" + ("?" + "&".join(query) if query else "")
    ws = await connect(url, additional_headers={"x-api-token": token}, max_size=None)
    client = Client(ws, position=since)
    return client.start()


def stalled_socket(port: int, token: str = DEV_TOKEN) -> socket.socket:
    """A WebSocket client that upgrades, then never reads again (a tiny receive buffer)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.sendall(
        (
            "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            f"Sec-WebSocket-Version: 13\r\nx-api-token: {token}\r\n\r\n"
        ).encode()
    )
    answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 101"), answer[:200]
    return sock


ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]
WEB = ROOT / "services" / "hub" / "web"


def build_dashboard() -> None:
    """`make web`: npm ci and the Vite build, when the built page is missing or stale."""
    import subprocess

    dist = WEB / "dist" / "index.html"
    sources = [WEB / "index.html", WEB / "package-lock.json", *(WEB / "src").glob("*")]
    if dist.is_file() and dist.stat().st_mtime >= max(p.stat().st_mtime for p in sources):
        return
    done = subprocess.run(
        ["make", "web"], cwd=ROOT, capture_output=True, text=True, timeout=600, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"make web failed (Node.js 20+ and npm are needed):\n{done.stderr}")


def wait_http(url: str, seconds: float, proc: Any = None) -> None:
    import urllib.request

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as answer:  # noqa: S310
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer 200 within {seconds:.0f} s")
