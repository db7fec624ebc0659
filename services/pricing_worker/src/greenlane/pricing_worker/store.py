"""charging_sessions in PostgreSQL: seed car states, write a batch idempotently (COPY)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from operator import attrgetter
from typing import Any, Final

from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.trace import TracerProvider
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


def _column(pg_type: str, *, null: bool = False, select: str | None = None) -> dict[str, Any]:
    """A charging_sessions column: its PostgreSQL (and binary COPY) type, whether it may
    be NULL, and the expression the INSERT takes it with (default: as it is)."""
    return {"pg_type": pg_type, "null": null, "select": select}


@dataclass(frozen=True, slots=True)
class Row:
    """One charging_sessions row, before cost (computed by the INSERT).

    The car-state columns (time, car_id, station_id, battery, lat, lon) are the ones the
    event table names (greenlane.core.events.row_values); the fields' metadata drive the
    staging table, the COPY and the INSERT below.
    """

    time: datetime = field(metadata=_column("timestamptz"))
    event_key: str = field(metadata=_column("text"))
    session_id: str = field(metadata=_column("text"))
    car_id: str = field(metadata=_column("text"))
    station_id: str | None = field(metadata=_column("text", null=True))
    event_type: str = field(metadata=_column("text"))
    session_kind: str = field(metadata=_column("text"))
    kwh_usage: float = field(metadata=_column("float8"))
    price_rate: float = field(metadata=_column("float8", select="price_rate::numeric(10, 5)"))
    battery: float = field(metadata=_column("float4"))
    lat: float = field(metadata=_column("float8"))
    lon: float = field(metadata=_column("float8"))
    energy_source: str = field(metadata=_column("text"))
    grid_load: float = field(metadata=_column("float4"))
    priced_from_cache: bool = field(metadata=_column("bool"))
    # price_rate is the tariff times this (greenlane.core.demand; sql/0006).
    demand_factor: float = field(metadata=_column("float4"))


_FIELDS: Final = fields(Row)
COLUMNS: Final = tuple(f.name for f in _FIELDS)
_COPY_TYPES: Final = tuple(f.metadata["pg_type"] for f in _FIELDS)
_row_values: Final = attrgetter(*COLUMNS)

# The batch goes into a temporary table first (COPY is the fast path), then into
# charging_sessions with ON CONFLICT: a replayed event hits the idempotency key.
# ON COMMIT DELETE ROWS empties it after every batch; it lives as long as the connection.
STAGING_TABLE: Final = "pricing_batch"
_CREATE_STAGING: Final = (
    f"CREATE TEMPORARY TABLE IF NOT EXISTS {STAGING_TABLE} (\n    "
    + ",\n    ".join(
        f"{f.name} {f.metadata['pg_type']}{'' if f.metadata['null'] else ' NOT NULL'}"
        for f in _FIELDS
    )
    + "\n) ON COMMIT DELETE ROWS"
)
_COPY: Final = f"COPY {STAGING_TABLE} ({', '.join(COLUMNS)}) FROM STDIN (FORMAT BINARY)"
# cost is computed here from the stored values, so cost = kwh_usage * price_rate holds
# exactly for what the table holds.
_INSERT: Final = f"""
INSERT INTO charging_sessions ({", ".join(COLUMNS)}, cost)
SELECT {", ".join(f.metadata["select"] or f.name for f in _FIELDS)},
       (kwh_usage::numeric * price_rate::numeric(10, 5))::numeric(14, 5)
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


def event_key(car_id: str, timestamp_ms: int, event_type: str) -> str:
    """The idempotency key of an event (with time, the table's unique key)."""
    return f"{car_id}:{timestamp_ms}:{event_type}"


async def prepare_connection(conn: AsyncConnection[TupleRow]) -> None:
    """Pool `configure` hook: every connection gets its staging table once."""
    await conn.set_autocommit(True)
    await conn.execute(_CREATE_STAGING)


def _traced_preparation(
    tracer_provider: TracerProvider | None,
) -> Callable[[AsyncConnection[TupleRow]], Awaitable[None]]:
    """prepare_connection, then a span per SQL statement (opentelemetry-instrumentation-psycopg;
    COPY is covered by the worker's own span)."""
    from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor

    async def prepare(conn: AsyncConnection[TupleRow]) -> None:
        await prepare_connection(conn)
        PsycopgInstrumentor.instrument_connection(conn, tracer_provider=tracer_provider)

    return prepare


async def _check(conn: AsyncConnection[TupleRow]) -> None:
    # The pool's probe of a connection is no statement worth a span.
    with suppress_instrumentation():
        await AsyncConnectionPool.check_connection(conn)


def make_pool(
    conninfo: str,
    *,
    size: int,
    timeout: float,
    traced: bool = False,
    tracer_provider: TracerProvider | None = None,
) -> AsyncConnectionPool:
    """A pool opened later (`await pool.open()`), connections in autocommit mode; traced:
    its statements get spans."""
    return AsyncConnectionPool(
        conninfo,
        min_size=1,
        max_size=size,
        open=False,
        timeout=timeout,
        configure=_traced_preparation(tracer_provider) if traced else prepare_connection,
        # A connection broken by a database restart is replaced before a batch gets it.
        check=_check if traced else AsyncConnectionPool.check_connection,
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
                await copy.write_row(_row_values(r))
        await cur.execute(_INSERT)
        return max(cur.rowcount, 0)
