"""Platform: what GreenLane runs on: scrape targets, Redis, Kafka, the database."""

from __future__ import annotations

from observability.dashboards.kit import NS, Board, Panel, Query

BOARD = Board(
    uid="greenlane-platform",
    title="GreenLane / Platform",
    description="Scrape targets, Redis (redis_exporter), Kafka (consumer lag, Redpanda's own "
    "metrics), the database (postgres_exporter, write rate, TimescaleDB compression).",
    panels=(
        Panel(
            "Scrape targets up",
            "1 when Prometheus reached the component's /metrics at its last scrape.",
            (Query(f"min by (component) (up{{{NS}}})", "{{component}}"),),
            kind="stat",
            width=24,
            height=4,
        ),
        Panel(
            "Redis: memory and clients",
            "Used memory against maxmemory, connected clients.",
            (
                Query(f"max(redis_memory_used_bytes{{{NS}}})", "used"),
                Query(f"max(redis_memory_max_bytes{{{NS}}})", "maxmemory"),
            ),
            unit="bytes",
        ),
        Panel(
            "Redis: commands per second and clients",
            "Commands processed; clients connected.",
            (
                Query(f"sum(rate(redis_commands_processed_total{{{NS}}}[1m]))", "commands/s"),
                Query(f"sum(redis_connected_clients{{{NS}}})", "clients"),
            ),
        ),
        Panel(
            "Kafka: pricing worker consumer lag",
            "Messages behind the high watermark, per topic.",
            (
                Query(
                    f"sum by (topic) (greenlane_pricing_worker_consumer_lag{{{NS}}})",
                    "{{topic}}",
                ),
            ),
        ),
        Panel(
            "Kafka: Redpanda produce and fetch bytes",
            "Redpanda's own metrics (/public_metrics); the embedded broker of greenlane dev "
            "exports none.",
            (
                Query(
                    f"sum by (redpanda_request) (rate(redpanda_kafka_request_bytes_total{{{NS}}}[5m]))",
                    "{{redpanda_request}}",
                    only_on="kubernetes",
                ),
            ),
            unit="Bps",
        ),
        Panel(
            "Database: rows written per second",
            "As the pricing worker counts them, and as PostgreSQL counts inserts.",
            (
                Query(
                    f"sum(rate(greenlane_pricing_worker_rows_written_total{{{NS}}}[1m]))",
                    "pricing worker",
                ),
                Query(
                    f'sum(rate(pg_stat_database_tup_inserted{{{NS}, datname!~"template.*|postgres"}}[1m]))',
                    "PostgreSQL inserts",
                ),
            ),
            unit="rowsps",
        ),
        Panel(
            "Database: connections and size",
            "Backends connected; database size.",
            (
                Query(
                    f'sum(pg_stat_database_numbackends{{{NS}, datname!~"template.*"}})',
                    "connections",
                ),
                Query(f"max(pg_up{{{NS}}})", "up"),
            ),
        ),
        Panel(
            "TimescaleDB: compression",
            "Compressed chunks and bytes before and after compression (TimescaleDB only; "
            "chunks compress after 7 days).",
            (
                Query(
                    "SELECT total_chunks, number_compressed_chunks,"
                    " before_compression_total_bytes, after_compression_total_bytes"
                    " FROM hypertable_compression_stats('charging_sessions')",
                    sql=True,
                    table=True,
                    only_on="timescaledb",
                ),
            ),
            kind="table",
            width=24,
        ),
    ),
)
