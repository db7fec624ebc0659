"""Helpers of the adversarial suite (tests/security): credentials, statuses, a JWKS server.

Everything listens on 127.0.0.1, on free ports, against the session's real Valkey and
Tansu (tests/conftest.py). Credentials:

- alpha, beta: two fleets that write telemetry and read and write bookings;
- alpha-reader: alpha's, with bookings:read only;
- gamma: a fleet with tight limits (5 statuses/s, burst 5, 2 streams, batches of 10);
- ops: the operator (every fleet);
- JWTs signed by the keys the JWKS server publishes (issuer ISSUER, audience AUDIENCE).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
from conftest import ingestion_settings

from greenlane.cli.embedded import EmbeddedKafka, EmbeddedRedis
from greenlane.core.stations import Station
from greenlane.v1 import fleet_pb2, fleet_pb2_grpc

ALPHA = "alpha-token-0123456789abcdef"
BETA = "beta-token-0123456789abcdefgh"
READER = "alpha-reader-token-0123456789"
GAMMA = "gamma-token-0123456789abcdefg"
OPS = "operator-token-0123456789abcd"
ISSUER = "https://issuer.greenlane.test/"
AUDIENCE = "greenlane-ingestion"
STATION = Station("st-sec", "Security Square", 40.7580, -73.9855, 4, 150.0)

RW = ["telemetry:write", "bookings:read", "bookings:write", "map:read", "plans:read"]
CREDENTIALS = [
    {"token": ALPHA, "fleet": "alpha", "scopes": RW, "name": "alpha-gw"},
    {"token": BETA, "fleet": "beta", "scopes": RW, "name": "beta-gw", "limits": {"bookings": 3}},
    {"token": READER, "fleet": "alpha", "scopes": ["bookings:read"], "name": "alpha-reader"},
    {
        "token": GAMMA,
        "fleet": "gamma",
        "scopes": RW,
        "name": "gamma-gw",
        "limits": {"statuses_per_second": 5, "burst": 5, "streams": 2, "batch": 10},
    },
    {"token": OPS, "fleet": "ops", "scopes": ["operator"], "name": "ops"},
]


def meta(token: str) -> list[tuple[str, str]]:
    return [("x-api-token", token)]


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def status(car: str, i: int = 0, **kw: Any) -> fleet_pb2.CarStatus:
    values: dict[str, Any] = {
        "car_id": car,
        "lat": 40.75 + i * 1e-4,
        "lon": -73.98,
        "battery": 80.0,
        "velocity": 30.0,
        "timestamp": now_ms() + i,
    }
    values.update(kw)
    return fleet_pb2.CarStatus(**values)


async def stream(
    stub: fleet_pb2_grpc.FleetTelemetryStub, token: str, msgs: list[fleet_pb2.CarStatus]
) -> list[fleet_pb2.BookingResponse]:
    async def gen() -> AsyncIterator[fleet_pb2.CarStatus]:
        for m in msgs:
            yield m

    return [r async for r in stub.StreamTelemetry(gen(), metadata=meta(token))]


class Jwks:
    """A JWKS document served over real HTTP on loopback; keys can rotate at any time."""

    def __init__(self) -> None:
        self.keys: list[dict[str, Any]] = []
        self.requests = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                outer.requests += 1
                body = json.dumps({"keys": outer.keys}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/.well-known/jwks.json"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def add_key(self) -> tuple[str, Any]:
        """A new RSA key published under a new kid; returns (kid, private key)."""
        import jwt
        from cryptography.hazmat.primitives.asymmetric import rsa

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        kid = uuid.uuid4().hex[:12]
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
        jwk.update({"kid": kid, "use": "sig", "alg": "RS256"})
        self.keys.append(jwk)
        return kid, key

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def sign(key: Any, kid: str, **claims: Any) -> str:
    import jwt

    now = int(time.time())
    body: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "fleet-backend",
        "iat": now,
        "nbf": now,
        "exp": now + 300,
        "greenlane_fleet": "delta",
        "scope": "telemetry:write bookings:read",
    }
    body.update(claims)
    return jwt.encode(body, key, algorithm="RS256", headers={"kid": kid})


def secure_settings(
    redis_server: EmbeddedRedis, kafka_server: EmbeddedKafka, topic: str, jwks: Jwks, **more: Any
) -> object:
    return ingestion_settings(
        redis_server.url,
        kafka_server.url,
        topic,
        api_tokens="",
        credentials=json.dumps(CREDENTIALS),
        jwt_jwks_url=jwks.url,
        jwt_issuer=ISSUER,
        jwt_audience=AUDIENCE,
        jwt_jwks_min_refresh_seconds=0.5,
        jwt_leeway_seconds=0,
        **more,
    )


class AckProbe:
    """A normal client of fleet alpha: one status every `every` seconds on its own stream
    and connection, the acknowledgement latency of each recorded, until stopped."""

    def __init__(self, port: int, token: str, car: str = "probe-car", every: float = 0.02):
        self.port, self.token, self.car, self.every = port, token, car, every
        self.latencies: list[float] = []
        self.statuses: list[int] = []
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> AckProbe:
        self._task = asyncio.create_task(self._run())
        await asyncio.sleep(0.3)  # connected and warm before the attack starts
        self.latencies.clear()
        return self

    async def __aexit__(self, *_: object) -> None:
        self._stop.set()
        assert self._task is not None
        await asyncio.wait_for(self._task, 30)

    async def _run(self) -> None:
        options = (("grpc.use_local_subchannel_pool", 1),)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{self.port}", options=options) as ch:
            stub = fleet_pb2_grpc.FleetTelemetryStub(ch)
            call = stub.StreamTelemetry(metadata=meta(self.token))
            i = 0
            while not self._stop.is_set():
                i += 1
                started = time.perf_counter()
                await call.write(status(self.car, i))
                answer = await call.read()
                self.latencies.append(time.perf_counter() - started)
                self.statuses.append(answer.status)
                await asyncio.sleep(self.every)
            await call.done_writing()

    def p99_ms(self) -> float:
        ordered = sorted(self.latencies)
        assert ordered, "the probe got no answer"
        return 1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


def rss_mb() -> float:
    """This process's resident memory (the server runs in the test's process)."""
    import os

    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


STORM_SCRIPT = """
import asyncio, collections, json, sys, time
import grpc
from greenlane.v1 import fleet_pb2, fleet_pb2_grpc

async def main(port, n):
    codes = collections.Counter()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
        stub = fleet_pb2_grpc.FleetTelemetryStub(ch)
        async def one():
            async def gen():
                yield fleet_pb2.CarStatus(car_id="storm-car", lat=40.7, lon=-73.9,
                    battery=50, velocity=1, timestamp=int(time.time() * 1000))
            try:
                async for _ in stub.StreamTelemetry(gen()):
                    pass
                codes["OK"] += 1
            except grpc.aio.AioRpcError as exc:
                codes[exc.code().name] += 1
        await asyncio.gather(*(one() for _ in range(n)))
    print(json.dumps(codes))

asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
"""


async def storm_from_another_process(port: int, streams: int) -> dict[str, int]:
    """`streams` streams without a credential opened at once on one connection, by another
    process (so the attacker's own work does not run in the server's event loop)."""
    import sys

    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        STORM_SCRIPT,
        str(port),
        str(streams),
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    result: dict[str, int] = json.loads(out.decode().strip().splitlines()[-1])
    return result
