"""Settings of the ingestion service (GREENLANE_* environment variables)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from greenlane.core.settings import TokenSettings


class IngestionSettings(TokenSettings):
    """Where to listen, who may stream (GREENLANE_API_TOKENS), and how writes are batched."""

    ingestion_host: str = "0.0.0.0"  # noqa: S104 - a server for cars
    ingestion_port: int = Field(50051, ge=0, le=65535)
    fleet_events_partitions: int = Field(6, ge=1, le=1024)
    # At most this many statuses go into one Redis round trip and one Kafka flush.
    max_flush_size: int = Field(4000, ge=1, le=100_000)
    # A status not confirmed by Redis and Kafka within this time is answered UNAVAILABLE.
    ack_timeout_seconds: float = Field(5.0, gt=0, le=300)
    # Statuses waiting for a flush; beyond this, streams stop being read (back-pressure).
    max_pending: int = Field(50_000, ge=100, le=10_000_000)
    # Unanswered statuses one stream may have in flight.
    max_in_flight_per_stream: int = Field(1000, ge=1, le=100_000)
    max_batch_statuses: int = Field(10_000, ge=1, le=1_000_000)
    shutdown_grace_seconds: float = Field(5.0, ge=0, le=300)
    # Booking: a car below this battery level (or asking) gets a slot at a nearby station.
    booking_threshold_percent: float = Field(20.0, ge=0, le=100)
    booking_ttl_seconds: float = Field(1200.0, gt=0, le=86_400)
    # Stations are searched nearest first up to this distance: the first with a free slot
    # wins, which is what widening the radius step by step would find, in one search.
    booking_max_radius_km: float = Field(5.0, gt=0, le=100)
    booking_max_candidates: int = Field(10, ge=1, le=100)
    booking_sweep_seconds: float = Field(5.0, gt=0, le=3600)
    # predictive: book ahead of need (predicted reach), at the free station that costs the
    # car least (detour, demand price, expected wait); threshold: below the threshold, the
    # nearest free station (docs/prediction.md).
    booking_policy: Literal["predictive", "threshold"] = "predictive"
    booking_margin_km: float = Field(2.0, ge=0, le=100)
    # The predictive desk searches stations as far as a car's predicted range, at least
    # booking_max_radius_km and at most this.
    booking_max_reach_km: float = Field(30.0, gt=0, le=500)
    # A car told "no booking needed yet" is not looked at again for this long (unless it
    # falls below the threshold or asks): a booking round trip per status would be waste.
    booking_recheck_seconds: float = Field(10.0, ge=0, le=3600)
    booking_horizon_seconds: float = Field(1800.0, gt=0, le=86_400)
    # The weights of a candidate station's cost (greenlane.core.demand.BookingWeights).
    booking_speed_kmh: float = Field(25.0, gt=0, le=200)
    booking_value_per_minute: float = Field(0.5, ge=0, le=100)
    booking_energy_kwh: float = Field(30.0, ge=0, le=500)
    # The grid tariff (USD/kWh) the demand factors of candidate stations multiply: at one
    # instant every station has the same tariff, so only their factors tell them apart.
    booking_tariff: float = Field(0.25, ge=0, le=10)
    booking_api_port: int = Field(8082, ge=0, le=65535)
    # Live bookings one fleet may hold in the region (a credential's `bookings` limit
    # overrides it; 0: no cap).
    booking_max_per_fleet: int = Field(1000, ge=0, le=10_000_000)

    # Per credential (GREENLANE_CREDENTIALS may set its own; docs/security.md). Generous:
    # `make bench` saturates one credential. Set a fleet's own in production.
    limit_statuses_per_second: float = Field(100_000.0, gt=0, le=10_000_000)
    limit_burst: int = Field(200_000, ge=1, le=100_000_000)
    limit_streams: int = Field(20_000, ge=1, le=1_000_000)

    # Per connection (HTTP/2 and gRPC core).
    max_streams_per_connection: int = Field(2000, ge=1, le=100_000)
    # A client may ping at most this often without data (more: GOAWAY, too_many_pings).
    min_ping_interval_seconds: float = Field(10.0, ge=1, le=3600)
    # A connection without a call this long is closed (GOAWAY).
    max_connection_idle_seconds: float = Field(300.0, gt=0, le=86_400)
    # A connection older than this is asked to reconnect (spreads load over replicas);
    # its calls then get max_connection_age_grace_seconds to finish.
    max_connection_age_seconds: float = Field(3600.0, gt=0, le=7 * 86_400)
    max_connection_age_grace_seconds: float = Field(60.0, ge=0, le=86_400)
    # The TLS handshake and the HTTP/2 settings exchange must complete within this.
    handshake_timeout_seconds: float = Field(10.0, gt=0, le=300)
    max_message_bytes: int = Field(16 * 1024 * 1024, ge=1024, le=256 * 1024 * 1024)
