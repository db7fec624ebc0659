"""OAuth2 bearer JWTs against a real JWKS server, and mutual TLS on gRPC and HTTP."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from adversary import ALPHA, Jwks, secure_settings, sign, status
from redis.asyncio import Redis

from greenlane.cli.embedded import EmbeddedKafka, EmbeddedRedis
from greenlane.core import keys
from greenlane.core.tls import LocalPki, issue, make_local_pki
from greenlane.v1 import fleet_pb2, fleet_pb2_grpc

pytestmark = pytest.mark.integration


async def send(
    stub: fleet_pb2_grpc.FleetTelemetryStub, car: str, metadata: list[tuple[str, str]]
) -> fleet_pb2.BookingResponse:
    async def gen() -> AsyncIterator[fleet_pb2.CarStatus]:
        yield status(car)

    answers = [a async for a in stub.StreamTelemetry(gen(), metadata=metadata)]
    return answers[0]


def bearer(token: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}")]


async def test_a_valid_jwt_writes_for_the_fleet_its_claim_names(
    stub: fleet_pb2_grpc.FleetTelemetryStub, signing_key: tuple[str, Any], redis_client: Redis
) -> None:
    kid, key = signing_key
    answer = await send(stub, "jwt-car-1", bearer(sign(key, kid)))
    assert answer.status == fleet_pb2.ACCEPTED
    assert await redis_client.hget(keys.car_state("jwt-car-1"), keys.OWNER_FIELD) == b"delta"


@pytest.mark.parametrize(
    ("case", "claims", "message"),
    [
        ("wrong audience", {"aud": "someone-else"}, "another audience"),
        ("wrong issuer", {"iss": "https://evil.example/"}, "another issuer"),
        # exp and nbf: seconds from when the test runs (not from collection, which in a
        # full `make test` is many minutes earlier).
        ("expired", {"exp": -60}, "expired"),
        ("not yet valid", {"nbf": 600}, "not valid yet"),
        ("no fleet", {"greenlane_fleet": None}, "does not name a fleet"),
    ],
)
async def test_a_jwt_with_bad_claims_is_refused(
    stub: fleet_pb2_grpc.FleetTelemetryStub,
    signing_key: tuple[str, Any],
    redis_client: Redis,
    case: str,
    claims: dict[str, Any],
    message: str,
) -> None:
    kid, key = signing_key
    car = f"jwt-bad-{case.replace(' ', '-')}"
    now = int(time.time())
    claims = {k: now + v if k in ("exp", "nbf") else v for k, v in claims.items()}
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await send(stub, car, bearer(sign(key, kid, **claims)))
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert message in (err.value.details() or "")
    assert not await redis_client.exists(keys.car_state(car))


async def test_a_jwt_signed_by_another_key_under_a_known_kid_is_refused(
    stub: fleet_pb2_grpc.FleetTelemetryStub, signing_key: tuple[str, Any]
) -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa

    kid, _ = signing_key
    forger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await send(stub, "jwt-forged", bearer(sign(forger, kid)))
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "signature" in (err.value.details() or "")


async def test_an_unknown_kid_is_refused_and_a_rotated_key_is_taken_without_a_restart(
    stub: fleet_pb2_grpc.FleetTelemetryStub, signing_key: tuple[str, Any], jwks: Jwks
) -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa

    unknown = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await send(stub, "jwt-unknown", bearer(sign(unknown, "no-such-kid")))
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "unknown" in (err.value.details() or "")
    # The issuer rotates: a new key appears in the JWKS. After the refetch interval,
    # tokens signed by it are accepted by the running server.
    kid, key = jwks.add_key()
    await asyncio.sleep(0.6)
    before = jwks.requests
    answer = await send(stub, "jwt-rotated", bearer(sign(key, kid)))
    assert answer.status == fleet_pb2.ACCEPTED
    assert jwks.requests == before + 1


async def test_unknown_kids_refetch_the_jwks_at_most_once_per_interval(
    stub: fleet_pb2_grpc.FleetTelemetryStub, jwks: Jwks, signing_key: tuple[str, Any]
) -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa

    await asyncio.sleep(0.6)
    before = jwks.requests
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    for i in range(20):
        with pytest.raises(grpc.aio.AioRpcError):
            await send(stub, f"jwt-spray-{i}", bearer(sign(key, f"spray-{i}")))
    assert jwks.requests - before <= 2  # 20 unknown kids within ~0.5 s: one fetch, maybe two


# --- mutual TLS ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> LocalPki:
    return make_local_pki(tmp_path_factory.mktemp("pki"), fleet="alpha")


@pytest.fixture
async def mtls(
    redis_server: EmbeddedRedis,
    kafka_server: EmbeddedKafka,
    topic: str,
    redis_client: Redis,
    jwks: Jwks,
    pki: LocalPki,
) -> AsyncIterator[Any]:
    from greenlane.ingestion.server import start_server

    settings = secure_settings(
        redis_server,
        kafka_server,
        topic,
        jwks,
        tls_cert_file=str(pki.server_cert_file),
        tls_key_file=str(pki.server_key_file),
        tls_client_ca_file=str(pki.ca_file),
    )
    running = await start_server(settings)  # type: ignore[arg-type]
    yield running
    await running.stop(1.0)


def channel(port: int, pki: LocalPki, cert: tuple[bytes, bytes] | None) -> grpc.aio.Channel:
    creds = grpc.ssl_channel_credentials(
        pki.ca_file.read_bytes(),
        cert[1] if cert else None,
        cert[0] if cert else None,
    )
    return grpc.aio.secure_channel(f"127.0.0.1:{port}", creds)


def pem_pair(pki: LocalPki) -> tuple[bytes, bytes]:
    return pki.client_cert_file.read_bytes(), pki.client_key_file.read_bytes()


async def test_mtls_without_a_client_certificate_is_refused_in_the_handshake(
    mtls: Any, pki: LocalPki, redis_client: Redis
) -> None:
    ch = channel(mtls.port, pki, None)
    try:
        stub = fleet_pb2_grpc.FleetTelemetryStub(ch)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await asyncio.wait_for(send(stub, "mtls-nocert", [("x-api-token", ALPHA)]), 10)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        await ch.close()
    assert not await redis_client.exists(keys.car_state("mtls-nocert"))


async def test_a_client_certificate_alone_authenticates_its_fleet(
    mtls: Any, pki: LocalPki, redis_client: Redis
) -> None:
    ch = channel(mtls.port, pki, pem_pair(pki))
    try:
        answer = await send(fleet_pb2_grpc.FleetTelemetryStub(ch), "mtls-car-1", [])
    finally:
        await ch.close()
    assert answer.status == fleet_pb2.ACCEPTED
    assert await redis_client.hget(keys.car_state("mtls-car-1"), keys.OWNER_FIELD) == b"alpha"


async def test_a_token_of_another_fleet_than_the_certificates_is_refused(
    mtls: Any, pki: LocalPki, tmp_path: Path
) -> None:
    from adversary import BETA

    ch = channel(mtls.port, pki, pem_pair(pki))
    try:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await send(fleet_pb2_grpc.FleetTelemetryStub(ch), "mtls-car-2", [("x-api-token", BETA)])
    finally:
        await ch.close()
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "certificate" in (err.value.details() or "")


async def test_a_certificate_from_another_ca_is_refused(
    mtls: Any, pki: LocalPki, tmp_path: Path
) -> None:
    other = make_local_pki(tmp_path / "other", fleet="alpha")
    ch = channel(mtls.port, pki, pem_pair(other))
    try:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await asyncio.wait_for(send(fleet_pb2_grpc.FleetTelemetryStub(ch), "mtls-x", []), 10)
    finally:
        await ch.close()
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_the_booking_api_speaks_tls_and_takes_the_fleet_from_a_client_certificate(
    mtls: Any, pki: LocalPki
) -> None:
    import ssl

    url = f"https://127.0.0.1:{mtls.api.port}/api/cars/anything/bookings"
    context = ssl.create_default_context(cafile=str(pki.ca_file))
    async with httpx.AsyncClient(verify=context) as client:
        assert (await client.get(url)).status_code == 401  # no certificate, no token
    context.load_cert_chain(str(pki.client_cert_file), str(pki.client_key_file))
    async with httpx.AsyncClient(verify=context) as client:
        answer = await client.get(url)
    assert answer.status_code == 200, answer.text


async def test_a_client_certificate_that_names_no_fleet_authenticates_nobody(
    mtls: Any, pki: LocalPki, tmp_path: Path
) -> None:
    import ssl

    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    ca_key = serialization.load_pem_private_key(pki.ca_key_file.read_bytes(), None)
    ca_cert = x509.load_pem_x509_certificate(pki.ca_file.read_bytes())
    cert, key = issue(ca_cert, ca_key, "nobody")
    (tmp_path / "c.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))  # type: ignore[attr-defined]
    (tmp_path / "c.key").write_bytes(
        key.private_bytes(  # type: ignore[attr-defined]
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.create_default_context(cafile=str(pki.ca_file))
    context.load_cert_chain(str(tmp_path / "c.pem"), str(tmp_path / "c.key"))
    url = f"https://127.0.0.1:{mtls.api.port}/api/cars/anything/bookings"
    async with httpx.AsyncClient(verify=context) as client:
        answer = await client.get(url)
    assert answer.status_code == 401
    assert "names no fleet" in answer.json()["detail"]
