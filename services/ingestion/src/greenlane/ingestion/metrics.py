"""Prometheus metrics of the ingestion service (greenlane_ingestion_*)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

STATUSES_RECEIVED = Counter(
    "greenlane_ingestion_statuses_received_total",
    "Car statuses received, by path (stream: one per message, batch: many per message).",
    ["path"],
)
STATUSES_ACCEPTED = Counter(
    "greenlane_ingestion_statuses_accepted_total",
    "Car statuses stored in Redis and published to Kafka, then acknowledged.",
)
STATUSES_REJECTED = Counter(
    "greenlane_ingestion_statuses_rejected_total",
    "Car statuses rejected as invalid, by the offending field.",
    ["reason"],
)
STATUSES_UNAVAILABLE = Counter(
    "greenlane_ingestion_statuses_unavailable_total",
    "Car statuses answered UNAVAILABLE: a backend did not confirm in time, or refused them.",
)
AUTH_FAILURES = Counter(
    "greenlane_ingestion_auth_failures_total",
    "Calls refused with UNAUTHENTICATED.",
)
ACK_LATENCY = Histogram(
    "greenlane_ingestion_ack_latency_seconds",
    "From receipt of a status to its acknowledgement (Redis and Kafka confirmed).",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
OPEN_STREAMS = Gauge("greenlane_ingestion_open_streams", "Telemetry streams open now.")
BATCH_STATUSES = Histogram(
    "greenlane_ingestion_batch_statuses",
    "Statuses per incoming CarStatusBatch message.",
    buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000),
)
FLUSH_STATUSES = Histogram(
    "greenlane_ingestion_flush_statuses",
    "Statuses written per Redis round trip and Kafka flush (batching across streams).",
    buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000),
)
FLUSH_DURATION = Histogram(
    "greenlane_ingestion_flush_duration_seconds",
    "Time to get one flush confirmed by Redis and Kafka.",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5),
)
BACKEND_ERRORS = Counter(
    "greenlane_ingestion_backend_errors_total",
    "Failed tries at a backend write (failures that may pass are retried until the deadline).",
    ["backend"],
)
PENDING = Gauge("greenlane_ingestion_pending_statuses", "Statuses waiting for a flush.")
BOOKINGS = Counter(
    "greenlane_ingestion_bookings_total",
    "Booking outcomes: created, no_capacity, fulfilled, cancelled, expired.",
    ["outcome"],
)
BOOKING_ERRORS = Counter(
    "greenlane_ingestion_booking_errors_total",
    "Booking round trips or booking events that failed (the status itself was stored).",
)
STATES_UNDONE = Counter(
    "greenlane_ingestion_states_undone_total",
    "Statuses Redis stored but Kafka did not: taken back from Redis before answering.",
)
STATE_UNDO_FAILURES = Counter(
    "greenlane_ingestion_state_undo_failures_total",
    "Flushes whose unpublished statuses could not be taken back from Redis.",
)
LIMITED = Counter(
    "greenlane_ingestion_limited_total",
    "Statuses (limit=rate, batch) or streams (limit=streams) refused over a credential's "
    "limit, by fleet.",
    ["fleet", "limit"],
)
FOREIGN_CARS = Counter(
    "greenlane_ingestion_foreign_car_statuses_total",
    "Statuses refused because their car belongs to another fleet.",
)
DRAIN_PREDICTIONS = Counter(
    "greenlane_ingestion_drain_predictions_total",
    "Drain predictions made (one per stored status of a car the desk follows).",
)
DRAIN_ERROR = Histogram(
    "greenlane_ingestion_drain_prediction_error_percent",
    "Absolute error of a car's predicted battery at the horizon, once the horizon came "
    "(points of battery %), by predictor (model, or the naive last rate).",
    ["predictor"],
    buckets=(0.25, 0.5, 1, 2, 3, 5, 7.5, 10, 15, 25),
)
BOOKINGS_AHEAD = Counter(
    "greenlane_ingestion_bookings_ahead_total",
    "Bookings made above the battery floor, because the predicted reach no longer covered "
    "the way to the nearest free station.",
)
