"""Fleet overview: the cars, their batteries, bookings, station and site load, energy and cost."""

from __future__ import annotations

from observability.dashboards.kit import NS, Board, Panel, Query

# The newest status of every car heard from in the last five minutes.
LATEST = (
    "WITH latest AS (SELECT DISTINCT ON (car_id) car_id, battery, station_id"
    " FROM charging_sessions WHERE time > now() - interval '5 minutes'"
    " ORDER BY car_id, time DESC) "
)
BANDS = ", ".join(
    f"count(*) FILTER (WHERE battery >= {lo} AND battery < {lo + 10 if lo < 90 else 101})"
    f' AS "{lo}-{lo + 10} %"'
    for lo in range(0, 100, 10)
)

BOARD = Board(
    uid="greenlane-fleet",
    title="GreenLane / Fleet overview",
    description="The fleet as the platform sees it: cars, batteries, bookings, stations, "
    "sites, energy and cost (TimescaleDB for the business figures, Prometheus for the rest).",
    panels=(
        Panel(
            "Cars online",
            "Cars with a priced status in the last 5 minutes.",
            (
                Query(
                    "SELECT count(DISTINCT car_id) AS cars FROM charging_sessions"
                    " WHERE time > now() - interval '5 minutes'",
                    sql=True,
                    table=True,
                ),
            ),
            kind="stat",
            width=6,
        ),
        Panel(
            "Low and critical batteries",
            "Cars whose newest battery reading is below 20 % (low) and 15 % (critical).",
            (
                Query(
                    LATEST + "SELECT count(*) FILTER (WHERE battery < 20) AS low,"
                    " count(*) FILTER (WHERE battery < 15) AS critical FROM latest",
                    sql=True,
                    table=True,
                ),
            ),
            kind="stat",
            width=6,
        ),
        Panel(
            "Battery distribution",
            "Cars by their newest battery reading, in 10 % bands.",
            (Query(LATEST + f"SELECT {BANDS} FROM latest", sql=True, table=True),),
            kind="bargauge",
        ),
        Panel(
            "Bookings per minute",
            "Booking outcomes of the booking desk in ingestion.",
            (
                Query(
                    f"sum by (outcome) (rate(greenlane_ingestion_bookings_total{{{NS}}}[5m])) * 60",
                    "{{outcome}}",
                    quiet="an outcome has a series once a car first gets it",
                ),
            ),
        ),
        Panel(
            "Station load: cars plugged in",
            "Cars whose newest status says they are plugged in, per station.",
            (
                Query(
                    LATEST + "SELECT station_id, count(*) AS cars FROM latest"
                    " WHERE station_id IS NOT NULL GROUP BY station_id ORDER BY cars DESC LIMIT 20",
                    sql=True,
                    table=True,
                    quiet="empty until a booked car reaches its station and plugs in",
                ),
            ),
            kind="table",
        ),
        Panel(
            "Site load against its grid limit",
            "Planned power of each site in the current slot, and the site's limit.",
            (
                Query(
                    f"sum by (site_id) (greenlane_planner_site_kw{{{NS}}})",
                    "{{site_id}}",
                    service="planner",
                ),
                Query(
                    f"max by (site_id) (greenlane_planner_site_limit_kw{{{NS}}})",
                    "{{site_id}} limit",
                    service="planner",
                ),
            ),
            unit="kwatt",
        ),
        Panel(
            "Energy and cost per hour",
            "From the hourly aggregate charging_sessions_hourly (a continuous aggregate on "
            "TimescaleDB, a view on plain PostgreSQL).",
            (
                Query(
                    'SELECT bucket AS time, sum(kwh) AS "energy (kWh)", sum(cost) AS "cost (USD)"'
                    " FROM charging_sessions_hourly WHERE $__timeFilter(bucket)"
                    " GROUP BY bucket ORDER BY bucket",
                    sql=True,
                ),
            ),
            width=24,
        ),
    ),
)
