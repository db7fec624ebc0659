"""Redis keys of the live fleet picture and a fast writer for car states."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from greenlane.core.events import CarState

FLEET_LOCATIONS_KEY: Final = "fleet:locations"
STATIONS_LOCATIONS_KEY: Final = "stations:locations"


def car_key(car_id: str) -> str:
    return f"car:{car_id}"


def _bulk(parts: list[bytes], value: bytes) -> None:
    parts.append(b"$%d\r\n" % len(value))
    parts.append(value)
    parts.append(b"\r\n")


def _command(parts: list[bytes], *args: bytes) -> None:
    parts.append(b"*%d\r\n" % len(args))
    for a in args:
        _bulk(parts, a)


def _num(value: float) -> bytes:
    return repr(value).encode()


def pack_car_states(states: Sequence[CarState]) -> tuple[bytes, int]:
    """RESP for one GEOADD of every car plus one HSET per status, in order.

    redis-py spends half of a pipelined write packing commands; this packs the
    same commands directly (measured about three times faster here).
    """
    parts: list[bytes] = []
    geo: list[bytes] = [b"GEOADD", FLEET_LOCATIONS_KEY.encode()]
    for s in states:
        geo += (_num(s.lon), _num(s.lat), s.car_id.encode())
    _command(parts, *geo)
    for s in states:
        _command(
            parts,
            b"HSET",
            car_key(s.car_id).encode(),
            b"battery",
            _num(s.battery),
            b"velocity",
            _num(s.velocity),
            b"timestamp",
            b"%d" % s.timestamp,
            b"lat",
            _num(s.lat),
            b"lon",
            _num(s.lon),
            b"station_id",
            s.station_id.encode(),
        )
    return b"".join(parts), 1 + len(states)


async def write_car_states(client: Redis, states: Sequence[CarState]) -> None:
    """Write positions and latest states in one round trip; raise on any failure.

    GEOADD and HSET apply in list order, so the last status of a car wins.
    """
    if not states:
        return
    payload, replies = pack_car_states(states)
    pool = client.connection_pool
    conn = await pool.get_connection()  # type: ignore[no-untyped-call]
    try:
        await conn.send_packed_command(payload)
        error: ResponseError | None = None
        for _ in range(replies):
            reply = await conn.read_response()
            if isinstance(reply, ResponseError) and error is None:
                error = reply
        if error is not None:
            raise error
    except BaseException:
        # A half-read connection must never go back into the pool.
        await conn.disconnect()
        raise
    finally:
        await pool.release(conn)


async def read_car_state(client: Redis, car_id: str) -> dict[str, str]:
    raw = await client.hgetall(car_key(car_id))
    return {
        (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
        for k, v in raw.items()
    }
