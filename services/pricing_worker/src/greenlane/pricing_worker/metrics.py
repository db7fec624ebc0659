"""Prometheus metrics of the pricing worker (greenlane_pricing_worker_*)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

CONSUMER_LAG = Gauge(
    "greenlane_pricing_worker_consumer_lag",
    "Messages behind the partition's high watermark (highwater - position).",
    ["topic", "partition"],
)
BATCH_SIZE = Histogram(
    "greenlane_pricing_worker_batch_size",
    "Messages per processed batch.",
    buckets=(1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000),
)
MESSAGES = Counter(
    "greenlane_pricing_worker_messages_total",
    "Messages consumed, by outcome (priced, skipped, dead_lettered).",
    ["outcome"],
)
ROWS_WRITTEN = Counter(
    "greenlane_pricing_worker_rows_written_total",
    "charging_sessions rows inserted (replays that hit the idempotency key are not counted).",
)
DB_WRITE_SECONDS = Histogram(
    "greenlane_pricing_worker_db_write_seconds",
    "Time of one batch transaction: seed car states, COPY, INSERT ... ON CONFLICT, COMMIT.",
    buckets=_LATENCY_BUCKETS,
)
GRID_REQUEST_SECONDS = Histogram(
    "greenlane_pricing_worker_grid_request_seconds",
    "Time of one HTTP request to the grid service, by endpoint and outcome.",
    ["endpoint", "outcome"],
    buckets=_LATENCY_BUCKETS,
)
CACHE_PRICED_ROWS = Counter(
    "greenlane_pricing_worker_cache_priced_rows_total",
    "Rows priced from the last known curve because the grid service was down.",
)
DLQ_MESSAGES = Counter(
    "greenlane_pricing_worker_dlq_messages_total",
    "Messages sent to the dead-letter topic, by reason.",
    ["reason"],
)
RETRIES = Counter(
    "greenlane_pricing_worker_retries_total",
    "Batch steps retried after a failure (grid down past the cache age, database, DLQ).",
    ["stage"],
)
COMMIT_FAILURES = Counter(
    "greenlane_pricing_worker_commit_failures_total",
    "Offset commits that failed after the rows were durable (the batch will be replayed).",
)
CURVE_AGE = Gauge(
    "greenlane_pricing_worker_curve_age_seconds",
    "Age of the last known price curve (the forecast fetched from the grid).",
)
