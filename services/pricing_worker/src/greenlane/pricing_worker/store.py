"""charging_sessions in PostgreSQL: seed car states, write a batch idempotently (COPY)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from psycopg import AsyncConnection
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool

from greenlane.pricing_worker.prices import to_ms
from greenlane.pricing_worker.sessions import (
    SESSION_KINDS,
    CarSession,
    SessionKind,
    stored_battery,
)

# The batch goes into a temporary table first (COPY is the fast path), then into
# charging_sessions with ON CONFLICT: a replayed event hits the idempotency key.
# ON COMMIT DELETE ROWS empties it after every batch; it lives as long as the connection.
STAGING_TABLE: Final = "pricing_batch"
_CREATE_STAGING: Final = f"""
CREATE TEMPORARY TABLE IF NOT EXISTS {STAGING_TABLE} (
    time              timestamptz      NOT NULL,
    event_key         text             NOT NULL,
    session_id        text             NOT NULL,
    car_id            text             NOT NULL,
    station_id        text,
    event_type        text             NOT NULL,
    session_kind      text             NOT NULL,
    kwh_usage         double precision NOT NULL,
    price_rate        double precision NOT NULL,
    battery           real             NOT NULL,
    lat               double precision NOT NULL,
    lon               double precision NOT NULL,
    energy_source     text             NOT NULL,
    grid_load         real             NOT NULL,
    priced_from_cache boolean          NOT NULL
) ON COMMIT DELETE ROWS
"""
COLUMNS: Final = (
    "time",
    "event_key",
    "session_id",
    "car_id",
    "station_id",
    "event_type",
    "session_kind",
    "kwh_usage",
    "price_rate",
    "battery",
    "lat",
    "lon",
    "energy_source",
    "grid_load",
    "priced_from_cache",
)
_COPY_TYPES: Final = (
    "timestamptz",
    "text",
    "text",
    "text",
    "text",
    "text",
    "text",
    "float8",
    "float8",
    "float4",
    "float8",
    "float8",
    "text",
    "float4",
    "bool",
)
_COPY: Final = f"COPY {STAGING_TABLE} ({', '.join(COLUMNS)}) FROM STDIN (FORMAT BINARY)"
# cost is computed here from the stored values, so cost = kwh_usage * price_rate holds
# exactly for what the table holds.
_INSERT: Final = f"""
INSERT INTO charging_sessions ({", ".join(COLUMNS)}, cost)
SELECT time, event_key, session_id, car_id, station_id, event_type, session_kind,
       kwh_usage, price_rate::numeric(10, 5), battery, lat, lon, energy_source, grid_load,
       priced_from_cache, (kwh_usage::numeric * price_rate::numeric(10, 5))::numeric(14, 5)
FROM {STAGING_TABLE}
ON CONFLICT (event_key, time) DO NOTHING
"""
# One index probe per car on (car_id, time DESC).
_LAST_SESSIONS: Final = """
SELECT c.car_id, s.time, s.battery, s.station_id, s.session_kind, s.session_id
FROM unnest(%s::text[]) AS c(car_id)
CROSS JOIN LATERAL (
    SELECT time, battery, station_id, session_kind, session_id
    FROM charging_sessions
    WHERE car_id = c.car_id
    ORDER BY time DESC
    LIMIT 1
) AS s
"""


@dataclass(frozen=True, slots=True)
class Row:
    """One charging_sessions row, before cost (computed by the INSERT)."""

    time: datetime
    event_key: str
    session_id: str
    car_id: str
    station_id: str | None
    event_type: str
    session_kind: str
    kwh_usage: float
    price_rate: float
    battery: float
    lat: float
    lon: float
    energy_source: str
    grid_load: float
    priced_from_cache: bool


def event_key(car_id: str, timestamp_ms: int, event_type: str) -> str:
    """The idempotency key of an event (with time, the table's unique key)."""
    return f"{car_id}:{timestamp_ms}:{event_type}"


async def prepare_connection(conn: AsyncConnection[TupleRow]) -> None:
    """Pool `configure` hook: every connection gets its staging table once."""
    await conn.set_autocommit(True)
    await conn.execute(_CREATE_STAGING)


def make_pool(conninfo: str, *, size: int, timeout: float) -> AsyncConnectionPool:
    """A pool opened later (`await pool.open()`), connections in autocommit mode."""
    return AsyncConnectionPool(
        conninfo,
        min_size=1,
        max_size=size,
        open=False,
        timeout=timeout,
        configure=prepare_connection,
        # A connection broken by a database restart is replaced before a batch gets it.
        check=AsyncConnectionPool.check_connection,
        kwargs={"connect_timeout": max(1, int(timeout))},
        name="pricing-worker",
    )


async def load_last_sessions(
    conn: AsyncConnection[TupleRow], car_ids: Sequence[str]
) -> dict[str, CarSession]:
    """Each car's state as its latest stored row leaves it (cars without rows are absent)."""
    if not car_ids:
        return {}
    cur = await conn.execute(_LAST_SESSIONS, (list(car_ids),))
    seeds: dict[str, CarSession] = {}
    for car_id, time, battery, station_id, kind, sid in await cur.fetchall():
        if kind not in SESSION_KINDS:
            continue  # cannot happen: the table's CHECK constraint
        session_kind: SessionKind = kind
        # float4 comes back as its shortest decimal text: round it to float4 again, as
        # the model does with the battery it keeps in memory.
        seeds[car_id] = CarSession(
            to_ms(time), stored_battery(float(battery)), station_id or "", session_kind, sid
        )
    return seeds


async def insert_rows(conn: AsyncConnection[TupleRow], rows: Sequence[Row]) -> int:
    """COPY rows into the staging table, then insert the new ones; returns rows inserted.

    Must run inside the batch's transaction.
    """
    if not rows:
        return 0
    async with conn.cursor() as cur:
        async with cur.copy(_COPY) as copy:
            copy.set_types(list(_COPY_TYPES))
            for r in rows:
                await copy.write_row(
                    (
                        r.time,
                        r.event_key,
                        r.session_id,
                        r.car_id,
                        r.station_id,
                        r.event_type,
                        r.session_kind,
                        r.kwh_usage,
                        r.price_rate,
                        r.battery,
                        r.lat,
                        r.lon,
                        r.energy_source,
                        r.grid_load,
                        r.priced_from_cache,
                    )
                )
        await cur.execute(_INSERT)
        return max(cur.rowcount, 0)
