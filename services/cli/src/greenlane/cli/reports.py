"""The seed's three query patterns over charging_sessions, as plain functions returning rows.

Each runs unchanged on TimescaleDB and on plain PostgreSQL: hourly numbers come from
`charging_sessions_hourly` (a continuous aggregate there, a view here). Times are UTC.
The SQL and the indexes each query uses are described in docs/database.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, LiteralString

import psycopg
from psycopg.rows import class_row

# Recent events of one car: an index range scan on (car_id, time DESC), stopped by LIMIT.
CAR_SQL: LiteralString = """
SELECT time, session_id, event_type, session_kind, station_id,
       kwh_usage, price_rate, cost, battery
FROM charging_sessions
WHERE car_id = %(car_id)s
  AND time >= coalesce(%(since)s::timestamptz, '-infinity')
ORDER BY time DESC
LIMIT %(limit)s
"""

# Average price by hour, from the hourly relation: per-station rows of each bucket are
# combined, the average weighted by each row's event count.
_PRICES_SELECT: LiteralString = """
SELECT bucket,
       sum(events)::bigint                  AS events,
       sum(kwh)                             AS kwh,
       sum(cost)                            AS cost,
       sum(avg_price * events) / sum(events) AS avg_price,
       min(min_price)                       AS min_price,
       max(max_price)                       AS max_price
FROM charging_sessions_hourly
WHERE bucket >= %(start)s AND bucket < %(end)s
"""
PRICES_SQL: LiteralString = _PRICES_SELECT + "GROUP BY bucket ORDER BY bucket"
PRICES_STATION_SQL: LiteralString = (
    _PRICES_SELECT + "  AND station_id = %(station)s\nGROUP BY bucket ORDER BY bucket"
)

# Station utilisation over one UTC day. A car occupies a station from the first to the
# last event of its session there (within the day); `occupied` is the union of those
# spans per station (overlapping sessions at a multi-plug station count once), so
# occupied_share is the fraction of the day with at least one car plugged in, and
# charging_minutes is the plain sum of the spans (car-minutes).
STATIONS_SQL: LiteralString = """
WITH day_rows AS (
    SELECT station_id, session_id, car_id, time, kwh_usage, cost
    FROM charging_sessions
    WHERE time >= %(start)s AND time < %(end)s AND station_id IS NOT NULL
),
spans AS (
    SELECT station_id, session_id, min(time) AS first_at, max(time) AS last_at
    FROM day_rows
    GROUP BY station_id, session_id
),
marked AS (
    SELECT station_id, first_at, last_at,
           CASE WHEN first_at <= max(last_at) OVER (
                    PARTITION BY station_id ORDER BY first_at, last_at
                    ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
                THEN 0 ELSE 1 END AS starts_island
    FROM spans
),
islands AS (
    SELECT station_id, first_at, last_at,
           sum(starts_island) OVER (
               PARTITION BY station_id ORDER BY first_at, last_at
               ROWS UNBOUNDED PRECEDING) AS island
    FROM marked
),
occupied AS (
    SELECT station_id, sum(extract(epoch FROM island_end - island_start)) AS seconds
    FROM (SELECT station_id, island, min(first_at) AS island_start,
                 max(last_at) AS island_end
          FROM islands GROUP BY station_id, island) AS merged
    GROUP BY station_id
),
charging AS (
    SELECT station_id, sum(extract(epoch FROM last_at - first_at)) AS seconds
    FROM spans GROUP BY station_id
),
totals AS (
    SELECT station_id, count(*) AS events, count(DISTINCT session_id) AS sessions,
           count(DISTINCT car_id) AS cars, sum(kwh_usage) AS kwh, sum(cost) AS cost
    FROM day_rows GROUP BY station_id
)
SELECT t.station_id, t.events, t.sessions, t.cars, t.kwh, t.cost,
       c.seconds / 60.0 AS charging_minutes,
       o.seconds / 60.0 AS occupied_minutes,
       o.seconds / 86400.0 AS occupied_share
FROM totals t
JOIN charging c USING (station_id)
JOIN occupied o USING (station_id)
ORDER BY occupied_share DESC, t.station_id
"""

MAX_LIMIT = 10_000
MAX_HOURS = 24 * 366


@dataclass(frozen=True)
class CarEvent:
    time: datetime
    session_id: str
    event_type: str
    session_kind: str
    station_id: str | None
    kwh_usage: float
    price_rate: Decimal
    cost: Decimal
    battery: float


@dataclass(frozen=True)
class HourlyPrice:
    bucket: datetime
    events: int
    kwh: float
    cost: Decimal
    avg_price: Decimal
    min_price: Decimal
    max_price: Decimal


@dataclass(frozen=True)
class StationDay:
    station_id: str
    events: int
    sessions: int
    cars: int
    kwh: float
    cost: Decimal
    charging_minutes: Decimal
    occupied_minutes: Decimal
    occupied_share: Decimal


def floor_hour(moment: datetime) -> datetime:
    """The start of the UTC hour holding `moment` (naive means UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def hours_window(hours: int, until: datetime | None = None) -> tuple[datetime, datetime]:
    """[start, end) of the `hours` hourly buckets up to and including the one of `until`."""
    end = floor_hour(until or datetime.now(UTC)) + timedelta(hours=1)
    return end - timedelta(hours=hours), end


def day_window(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time(0), tzinfo=UTC)
    return start, start + timedelta(days=1)


def recent_car_events(
    conn: psycopg.Connection[Any], car_id: str, *, limit: int = 20, since: datetime | None = None
) -> list[CarEvent]:
    """The car's latest `limit` events, newest first, optionally not before `since`."""
    with conn.cursor(row_factory=class_row(CarEvent)) as cur:
        cur.execute(CAR_SQL, {"car_id": car_id, "since": since, "limit": limit})
        return cur.fetchall()


def average_price_by_hour(
    conn: psycopg.Connection[Any],
    *,
    hours: int = 24,
    station_id: str | None = None,
    until: datetime | None = None,
) -> list[HourlyPrice]:
    """Events, energy, cost and grid price per UTC hour (hours without events are absent)."""
    start, end = hours_window(hours, until)
    params = {"start": start, "end": end, "station": station_id}
    with conn.cursor(row_factory=class_row(HourlyPrice)) as cur:
        cur.execute(PRICES_STATION_SQL if station_id else PRICES_SQL, params)
        return cur.fetchall()


def station_utilisation(conn: psycopg.Connection[Any], day: date) -> list[StationDay]:
    """Per station with events on the UTC day: use, energy and the share of the day occupied."""
    start, end = day_window(day)
    with conn.cursor(row_factory=class_row(StationDay)) as cur:
        cur.execute(STATIONS_SQL, {"start": start, "end": end})
        return cur.fetchall()
