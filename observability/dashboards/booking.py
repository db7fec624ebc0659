"""Booking and stations: the booking desk's outcomes and what the stations hold."""

from __future__ import annotations

from observability.dashboards.kit import NS, Board, Panel, Query

BOOKINGS = "greenlane_ingestion_bookings_total"

BOARD = Board(
    uid="greenlane-booking",
    title="GreenLane / Booking and stations",
    description="Bookings made, fulfilled, expired and refused by ingestion's booking desk, "
    "and the energy delivered per station (TimescaleDB).",
    panels=(
        Panel(
            "Booking outcomes per minute",
            "created, no_capacity, fulfilled, cancelled, expired.",
            (
                Query(
                    f"sum by (outcome) (rate({BOOKINGS}{{{NS}}}[5m])) * 60",
                    "{{outcome}}",
                    quiet="an outcome has a series once a car first gets it",
                ),
            ),
        ),
        Panel(
            "Refused for lack of capacity",
            "Share of booking attempts that found no free station nearby.",
            (
                Query(
                    f'sum(rate({BOOKINGS}{{{NS}, outcome="no_capacity"}}[15m]))'
                    f' / sum(rate({BOOKINGS}{{{NS}, outcome=~"created|no_capacity"}}[15m]))',
                    "refused",
                    quiet="needs a refused booking first",
                ),
            ),
            kind="stat",
            unit="percentunit",
            width=6,
        ),
        Panel(
            "Booking errors per second",
            "Booking round trips or booking events that failed (the status itself was stored).",
            (Query(f"sum(rate(greenlane_ingestion_booking_errors_total{{{NS}}}[5m]))", "errors"),),
            kind="stat",
            unit="reqps",
            width=6,
        ),
        Panel(
            "Cars plugged in per station",
            "Newest status of each car in the last 5 minutes.",
            (
                Query(
                    "SELECT station_id, count(DISTINCT car_id) AS cars FROM charging_sessions"
                    " WHERE time > now() - interval '5 minutes' AND station_id IS NOT NULL"
                    " GROUP BY station_id ORDER BY cars DESC LIMIT 20",
                    sql=True,
                    table=True,
                    quiet="empty until a booked car reaches its station and plugs in",
                ),
            ),
            kind="table",
        ),
        Panel(
            "Energy delivered per station and hour",
            "kWh per station from the hourly aggregate.",
            (
                Query(
                    "SELECT bucket AS time, station_id AS metric, kwh AS value"
                    " FROM charging_sessions_hourly"
                    " WHERE station_id IS NOT NULL AND $__timeFilter(bucket) ORDER BY 1",
                    sql=True,
                    quiet="empty until a car has charged at a station",
                ),
            ),
            unit="kwatth",
        ),
    ),
)
