"""Energy and cost of today's charging, from the priced sessions (when a database is set)."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import psycopg

TODAY_SQL = (
    "SELECT coalesce(sum(kwh_usage), 0)::float8, coalesce(sum(cost), 0)::float8 "
    "FROM charging_sessions WHERE time >= %s"
)


def start_of_day(now: datetime, zone: ZoneInfo) -> datetime:
    """Midnight of `now`'s day in `zone` (an aware datetime)."""
    local = now.astimezone(zone)
    return local.replace(hour=0, minute=0, second=0, microsecond=0)


async def energy_today(database_url: str, zone: ZoneInfo, now: datetime) -> tuple[float, float]:
    """(kWh, cost) of every session row since local midnight."""
    async with await psycopg.AsyncConnection.connect(database_url, connect_timeout=5) as conn:
        cur = await conn.execute(TODAY_SQL, (start_of_day(now, zone),))
        row = await cur.fetchone()
    return (float(row[0]), float(row[1])) if row else (0.0, 0.0)
