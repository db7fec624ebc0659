"""Clean edges: malformed protobuf, hostile method names, HTTP edge cases, and fuzzing.

The fuzzed cases run hypothesis in a worker thread with blocking clients, against the
servers that this test's event loop runs (hypothesis drives plain functions only).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any
from urllib.parse import quote

import grpc
import httpx
import pytest
from adversary import ALPHA, Jwks, meta, secure_settings, status
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from greenlane.cli.embedded import EmbeddedKafka, EmbeddedRedis
from greenlane.core import keys
from greenlane.v1 import fleet_pb2

pytestmark = pytest.mark.integration

STREAM = "/greenlane.v1.FleetTelemetry/StreamTelemetry"
SEND_BATCH = "/greenlane.v1.FleetTelemetry/SendBatch"
H = {"x-api-token": ALPHA}


def raw(data: bytes) -> bytes:
    return data


async def test_malformed_protobuf_ends_the_stream_invalid_argument_after_earlier_answers(
    secure: Any, redis_client: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{secure.port}") as ch:
        call = ch.stream_stream(STREAM, request_serializer=raw)(metadata=meta(ALPHA))
        await call.write(status("edge-car-1").SerializeToString())
        await call.write(b"\xff\xff\xff\xff not protobuf")
        first = fleet_pb2.BookingResponse.FromString(await call.read())
        assert first.status == fleet_pb2.ACCEPTED
        assert await call.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "not valid protobuf" in (await call.details() or "")
    assert not any(r.exc_info for r in caplog.records), "a traceback was logged"


async def test_a_malformed_unary_request_is_invalid_argument(secure: Any) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{secure.port}") as ch:
        send = ch.unary_unary(SEND_BATCH, request_serializer=raw)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await send(b"\x0a\xff\xff\xff\xff\x0f", metadata=meta(ALPHA))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_a_refused_call_logs_a_bounded_method_name_without_control_characters(
    secure: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="greenlane.ingestion.auth")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{secure.port}") as ch:
        # An unknown 8 KB method: UNIMPLEMENTED, and nothing of it is logged.
        with pytest.raises(grpc.aio.AioRpcError) as unknown:
            await ch.unary_unary("/x/" + "A" * 8000 + "%1b[31m")(b"", metadata=meta("nope"))
        assert unknown.value.code() == grpc.StatusCode.UNIMPLEMENTED
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await ch.unary_unary(SEND_BATCH)(b"", metadata=meta("wrong-token-0123456789"))
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    lines = [r.getMessage() for r in caplog.records if r.name == "greenlane.ingestion.auth"]
    assert any("refused" in line for line in lines)
    for line in lines:
        assert len(line) < 300
        assert "\n" not in line and "\x1b" not in line
        assert "A" * 100 not in line and "wrong-token" not in line


# --- HTTP ---------------------------------------------------------------------------------


def raw_http(port: int, data: bytes) -> bytes:
    """What the server answers, read until it closes or stays quiet for 3 s."""
    with socket.create_connection(("127.0.0.1", port), timeout=3) as sock:
        sock.sendall(data)
        out = b""
        try:
            while chunk := sock.recv(65536):
                out += chunk
        except TimeoutError:
            pass
        return out


async def test_a_request_that_is_not_http_gets_400_problem_json(secure: Any) -> None:
    answer = await asyncio.to_thread(raw_http, secure.api.port, b"GARBAGE \x01\x02\r\n\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400")
    assert b"content-type: application/problem+json" in head.lower()
    assert b'"status": 400' in body


@pytest.mark.parametrize(
    ("query", "parameter", "words"),
    [
        ("lat=40.75&lat=40.76&lon=-73.98", "lat", "more than once"),
        ("lat=4_0&lon=-73.98", "lat", "not a decimal number"),
        ("lat=40.75&lon=-73.98&limit=1e3", "limit", "not a whole number"),
        ("lat=nan&lon=-73.98", "lat", "not a decimal number"),
        ("lat=40.75&lon=%20-73.98", "lon", "not a decimal number"),
        ("lat=40.75&lon=-73.98&radius=3", "radius", "unknown query parameter"),
    ],
)
async def test_query_parameters_are_parsed_strictly(
    api: httpx.AsyncClient, query: str, parameter: str, words: str
) -> None:
    answer = await api.get(f"/api/stations?{query}", headers=H)
    assert answer.status_code == 400
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["parameter"] == parameter
    assert words in answer.json()["detail"]


async def test_many_unknown_parameters_get_a_small_answer_naming_some(
    api: httpx.AsyncClient, secure: Any
) -> None:
    query = "&".join(f"p{i}=1" for i in range(1500))  # a 12 KB request line
    answer = await api.get(f"/api/stations?lat=1&lon=1&{query}", headers=H)
    assert answer.status_code == 400
    assert len(answer.content) < 1000
    assert "unknown query parameters: p0" in answer.json()["detail"]
    # 10,000 of them (a 90 KB request line): refused as small as before.
    line = "&".join(f"q{i}=1" for i in range(10_000)).encode()
    request = (
        b"GET /api/stations?"
        + line
        + b" HTTP/1.1\r\nHost: x\r\nx-api-token: "
        + ALPHA.encode()
        + b"\r\nConnection: close\r\n\r\n"
    )
    answer_raw = await asyncio.to_thread(raw_http, secure.api.port, request)
    assert answer_raw.startswith(b"HTTP/1.1 400")
    assert b"application/problem+json" in answer_raw
    assert len(answer_raw) < 1000


async def test_bodies_too_large_or_too_slow_are_refused_as_problem_json(
    api: httpx.AsyncClient, secure: Any
) -> None:
    big = await api.put(
        "/api/cars/edge-car/fleet", content=b"x" * 5000, headers={**H, "x-api-token": "t" * 20}
    )
    assert big.status_code in (401, 413)  # the credential is checked first: either refuses
    ops = {"x-api-token": "operator-token-0123456789abcd"}
    big = await api.put("/api/cars/edge-car/fleet", content=b"{" + b" " * 5000, headers=ops)
    assert big.status_code == 413
    assert big.headers["content-type"] == "application/problem+json"


async def test_unknown_routes_and_methods_are_problem_json(api: httpx.AsyncClient) -> None:
    missing = await api.get("/nope", headers=H)
    wrong = await api.post("/api/stations", headers=H)
    assert (missing.status_code, wrong.status_code) == (404, 405)
    for answer in (missing, wrong):
        assert answer.headers["content-type"] == "application/problem+json"


@pytest.fixture
async def slow_body(
    redis_server: EmbeddedRedis,
    kafka_server: EmbeddedKafka,
    topic: str,
    redis_client: Redis,
    jwks: Jwks,
) -> Any:
    from greenlane.ingestion.server import start_server

    settings = secure_settings(
        redis_server, kafka_server, topic, jwks, http_body_timeout_seconds=0.5
    )
    running = await start_server(settings)  # type: ignore[arg-type]
    yield running
    await running.stop(1.0)


async def test_a_body_that_stops_arriving_is_answered_408(slow_body: Any) -> None:
    head = (
        b"PUT /api/cars/edge-car/fleet HTTP/1.1\r\nHost: x\r\n"
        b'x-api-token: operator-token-0123456789abcd\r\ncontent-length: 100\r\n\r\n{"fle'
    )
    answer = await asyncio.to_thread(raw_http, slow_body.api.port, head)
    assert answer.startswith(b"HTTP/1.1 408")
    assert b"application/problem+json" in answer


# --- fuzzing -------------------------------------------------------------------------------

FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


async def test_fuzzed_protobuf_bytes_get_a_documented_answer_and_store_nothing_unreported(
    secure: Any, redis_client: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    before = await redis_client.dbsize()
    outcomes: dict[str, int] = {}
    stored_claimed = 0

    @FUZZ
    @given(st.binary(max_size=300))
    def one(data: bytes) -> None:
        nonlocal stored_claimed
        with grpc.insecure_channel(f"127.0.0.1:{secure.port}") as ch:
            send = ch.unary_unary(SEND_BATCH, request_serializer=raw, response_deserializer=raw)
            try:
                answer = fleet_pb2.BatchResponse.FromString(send(data, metadata=meta(ALPHA)))
            except grpc.RpcError as exc:
                code = exc.code()  # type: ignore[attr-defined]
                assert code == grpc.StatusCode.INVALID_ARGUMENT, code
                outcomes["INVALID_ARGUMENT"] = outcomes.get("INVALID_ARGUMENT", 0) + 1
                return
            n = len(fleet_pb2.CarStatusBatch.FromString(data).statuses)
            name = fleet_pb2.ResponseStatus.Name(answer.status)
            assert name in ("ACCEPTED", "REJECTED"), name
            if name == "ACCEPTED":
                assert answer.accepted + len(answer.rejected) == n
                stored_claimed += answer.accepted
            outcomes[name] = outcomes.get(name, 0) + 1

    await asyncio.to_thread(one)
    print(f"\nfuzzed protobuf: {outcomes}")
    # Whatever parsed as statuses and was answered stored may be stored; nothing else.
    assert await redis_client.dbsize() - before <= stored_claimed
    assert not any(r.exc_info for r in caplog.records), "a traceback was logged"


async def test_fuzzed_http_queries_get_json_or_problem_json_never_a_server_error(
    secure: Any,
) -> None:
    base = f"http://127.0.0.1:{secure.api.port}"
    seen: dict[int, int] = {}
    names = st.sampled_from(["lat", "lon", "radius_km", "limit", "all", "x", "lat[]", ""])
    values = st.text(max_size=30)

    @FUZZ
    @given(st.lists(st.tuples(names, values), max_size=6), st.sampled_from(["stations", "cars"]))
    def one(pairs: list[tuple[str, str]], route: str) -> None:
        query = "&".join(f"{quote(k)}={quote(v)}" for k, v in pairs)
        path = "/api/stations" if route == "stations" else "/api/cars/fz-car/bookings"
        with httpx.Client(base_url=base, timeout=10) as client:
            answer = client.get(f"{path}?{query}", headers=H)
        assert answer.status_code in (200, 400), answer.text
        expected = "application/json" if answer.status_code == 200 else "application/problem+json"
        assert answer.headers["content-type"] == expected
        assert len(answer.content) < 20_000
        seen[answer.status_code] = seen.get(answer.status_code, 0) + 1

    await asyncio.to_thread(one)
    print(f"\nfuzzed HTTP queries: {seen}")
    assert seen.get(400, 0) > 0


async def test_fuzzed_car_ids_never_reach_another_kind_of_key(
    secure: Any, redis_client: Redis
) -> None:
    @FUZZ
    @given(st.from_regex(r"[A-Za-z0-9_.:-]{1,64}", fullmatch=True))
    def one(car_id: str) -> None:
        with grpc.insecure_channel(f"127.0.0.1:{secure.port}") as ch:
            send = ch.unary_unary(
                SEND_BATCH,
                request_serializer=fleet_pb2.CarStatusBatch.SerializeToString,
                response_deserializer=fleet_pb2.BatchResponse.FromString,
            )
            answer = send(fleet_pb2.CarStatusBatch(statuses=[status(car_id)]), metadata=meta(ALPHA))
            assert answer.status == fleet_pb2.ACCEPTED, answer.message

    await asyncio.to_thread(one)
    # Every key is one of the layout's kinds, whatever the ids were.
    kinds = set()
    async for key in redis_client.scan_iter(count=1000):
        tag, _, rest = key.decode().partition("}:")
        kinds.add(rest.split(":", 1)[0])
    assert kinds <= {"locations", "timestamps", "car", "stations", "station", "car-booking"}
    assert await redis_client.type(keys.FLEET_LOCATIONS) == b"zset"
