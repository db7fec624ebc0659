"""FleetConfig: what one simulator run does, validated once."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from greenlane.core.events import CAR_ID_PATTERN
from greenlane.core.settings import DEV_TOKEN, parse_host_port
from greenlane.simulator.physics import (
    DEFAULT_MAX_CHARGE_KW,
    DEFAULT_PACK_KWH,
    INITIAL_BATTERY_MAX,
    INITIAL_BATTERY_MIN,
    MANHATTAN,
    BoundingBox,
    Charging,
    Habits,
    Station,
)

DEFAULT_TARGET: Final = "127.0.0.1:50051"
DEFAULT_INTERVAL: Final = 2.0
MAX_CARS: Final = 100_000
# Ingestion's own limits (max_in_flight_per_stream, max_batch_statuses) are 1000 and 10000.
MAX_IN_FLIGHT: Final = 1000
MAX_BATCH_SIZE: Final = 10_000
MAX_CHANNELS: Final = 1000
MAX_INTERVAL: Final = 3600.0
# Leaves room in the 64 characters of a car id for `-` and up to 13 digits.
MAX_PREFIX: Final = 50
DEFAULT_BBOX: Final = (MANHATTAN.south, MANHATTAN.west, MANHATTAN.north, MANHATTAN.east)
DEFAULT_CHARGE_BELOW: Final = 20.0  # ingestion's default booking threshold too
MAX_CHARGE_SPEEDUP: Final = 10_000.0
MAX_PACK_KWH: Final = 1000.0
MAX_CHARGE_KW: Final = 1000.0
MAX_STOP_MINUTES: Final = 7 * 24 * 60.0
# The grid's tariff zone (GREENLANE_TARIFF_TIMEZONE): night and morning are local.
DEFAULT_TIMEZONE: Final = "America/New_York"


# The one host:port rule of the project; the simulator's name for it.
parse_target = parse_host_port


class FleetConfig(BaseModel):
    """One run. `interval == 0` or `saturate` makes every car send as fast as it is answered.

    `cars` is the whole fleet; a process drives `shard` of it (all of it by default).
    """

    # The token must never appear in a validation error or a repr.
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    cars: int = Field(default=1, ge=1, le=MAX_CARS)
    interval: float = Field(default=DEFAULT_INTERVAL, ge=0.0, le=MAX_INTERVAL, allow_inf_nan=False)
    duration: float | None = Field(default=None, gt=0.0, allow_inf_nan=False)  # None: until stopped
    seed: int | None = None
    target: str = DEFAULT_TARGET
    token: SecretStr = SecretStr(DEV_TOKEN)
    # > 1: StreamTelemetryBatches with this many statuses per CarStatusBatch.
    batch_size: int = Field(default=1, ge=1, le=MAX_BATCH_SIZE)
    # None: one channel (one TCP connection) per `streams_per_channel` cars.
    channels: int | None = Field(default=None, ge=1, le=MAX_CHANNELS)
    streams_per_channel: int = Field(default=500, ge=1)
    # Unanswered messages one stream may have in flight (see fleet.py for the policy).
    max_in_flight: int = Field(default=1, ge=1, le=MAX_IN_FLIGHT)
    saturate: bool = False
    car_prefix: str = Field(default="car", min_length=1, max_length=MAX_PREFIX)
    # (south, west, north, east) in degrees.
    bbox: tuple[float, float, float, float] = DEFAULT_BBOX
    # This process drives slice `shard_index` of `shard_count` balanced slices of the
    # `cars` cars (the operator's Indexed Jobs); car ids and trajectories are those of
    # the whole fleet, so the slices of several processes never overlap.
    shard_index: int = Field(default=0, ge=0)
    shard_count: int = Field(default=1, ge=1, le=MAX_CARS)
    # Cars start spread evenly over this many seconds; None: one interval (1 s when saturating).
    ramp_up: float | None = Field(default=None, ge=0.0, allow_inf_nan=False)
    # A driving car below this battery (or at 0 %) sets request_booking, whatever
    # threshold ingestion is configured with.
    charge_below: float = Field(default=DEFAULT_CHARGE_BELOW, ge=0.0, le=100.0)
    # Multiplies the charging rate (1: real time; a demo wants sessions in minutes).
    charge_speedup: float = Field(default=1.0, gt=0.0, le=MAX_CHARGE_SPEEDUP)
    pack_kwh: float = Field(default=DEFAULT_PACK_KWH, gt=0.0, le=MAX_PACK_KWH)
    # The car's own maximum charge power (the planner's fleet default too).
    max_charge_kw: float = Field(default=DEFAULT_MAX_CHARGE_KW, gt=0.0, le=MAX_CHARGE_KW)
    # Goals (physics.Habits): a car on the road stops (low, high) minutes and wants
    # (low, high) percent; a depot car wants depot_target by the morning.
    stop_minutes: tuple[float, float] = (20.0, 60.0)
    charge_target: tuple[float, float] = (70.0, 85.0)
    depot_target: float = Field(default=90.0, gt=0.0, le=100.0)
    # The fleet's depot (station id, lat, lon, connector kW) and the share of its cars
    # that are depot cars: home at night, away from the morning.
    depot: tuple[str, float, float, float] | None = None
    depot_share: float = Field(default=0.2, ge=0.0, le=1.0)
    # Local hours: depot cars head home from night_from, leave home at morning.
    night_from: int = Field(default=19, ge=0, le=23)
    morning: int = Field(default=6, ge=0, le=23)
    timezone: str = DEFAULT_TIMEZONE
    # (low, high) percent: each car starts with a battery drawn uniformly in it.
    initial_battery: tuple[float, float] = (INITIAL_BATTERY_MIN, INITIAL_BATTERY_MAX)
    # At the end, how long to wait for the answers still outstanding.
    drain_timeout: float = Field(default=5.0, ge=0.0, allow_inf_nan=False)
    # The share of car statuses that start a trace of their own (0: none; see tracing.py).
    trace_ratio: float = Field(default=0.0, ge=0.0, le=1.0, allow_inf_nan=False)
    # Statuses a car keeps until acknowledged (an hour at 1/s); see docs/client.md.
    buffer: int = Field(default=3600, ge=1, le=10_000_000)
    # A file to append `car_id timestamp` for every acknowledged status ("" = none).
    ack_log: str = ""
    backoff_initial: float = Field(default=0.2, gt=0.0, allow_inf_nan=False)
    backoff_max: float = Field(default=5.0, gt=0.0, allow_inf_nan=False)
    # TLS: the CA that signed ingestion's certificate ("" = plaintext); with a client
    # certificate and key, mutual TLS (the certificate names the fleet).
    tls_ca_file: str = ""
    tls_cert_file: str = ""
    tls_key_file: str = ""

    @model_validator(mode="after")
    def _tls(self) -> FleetConfig:
        for name in ("tls_ca_file", "tls_cert_file", "tls_key_file"):
            value = getattr(self, name)
            if value and not Path(value).is_file():
                raise ValueError(f"{name}: {value!r} is not a readable file")
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            raise ValueError("a client certificate needs its key (and the key its certificate)")
        if self.tls_cert_file and not self.tls_ca_file:
            raise ValueError("a client certificate needs the server's CA (tls_ca_file)")
        return self

    @field_validator("target")
    @classmethod
    def _target(cls, value: str) -> str:
        return parse_target(value)

    @field_validator("token")
    @classmethod
    def _token(cls, value: SecretStr) -> SecretStr:
        secret = value.get_secret_value()
        if not secret.strip():
            raise ValueError("must not be empty")
        # gRPC refuses metadata values with control characters; say so before connecting.
        if any(not 0x20 <= ord(ch) < 0x7F for ch in secret):
            raise ValueError("must be printable ASCII")
        return value

    @field_validator("car_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if not CAR_ID_PATTERN.fullmatch(value):
            raise ValueError(f"must be 1 to {MAX_PREFIX} characters of [A-Za-z0-9_.:-]")
        return value

    @field_validator("bbox")
    @classmethod
    def _bbox(cls, value: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
        BoundingBox(*value)  # raises ValueError with the rule it breaks
        return value

    @field_validator("stop_minutes")
    @classmethod
    def _stops(cls, value: tuple[float, float]) -> tuple[float, float]:
        low, high = value
        if not (math.isfinite(low) and math.isfinite(high) and 0 < low <= high <= MAX_STOP_MINUTES):
            raise ValueError(f"the stop range needs 0 < low <= high <= {MAX_STOP_MINUTES:g}")
        return value

    @field_validator("charge_target")
    @classmethod
    def _targets(cls, value: tuple[float, float]) -> tuple[float, float]:
        low, high = value
        if not 0 < low <= high <= 100:
            raise ValueError("the target range needs 0 < low <= high <= 100")
        return value

    @field_validator("depot")
    @classmethod
    def _depot(
        cls, value: tuple[str, float, float, float] | None
    ) -> tuple[str, float, float, float] | None:
        if value is None:
            return None
        station_id, lat, lon, power = value
        if not CAR_ID_PATTERN.fullmatch(station_id):
            raise ValueError("the depot's station id must be 1 to 64 of [A-Za-z0-9_.:-]")
        if not (-90 <= lat <= 90 and -180 <= lon <= 180):
            raise ValueError("the depot's position must be within [-90, 90] and [-180, 180]")
        if not 0 < power <= MAX_CHARGE_KW:
            raise ValueError(f"the depot's connector power must be within (0, {MAX_CHARGE_KW:g}]")
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not a known time zone") from None
        return value

    @field_validator("initial_battery")
    @classmethod
    def _initial_battery(cls, value: tuple[float, float]) -> tuple[float, float]:
        low, high = value
        if not 0.0 <= low <= high <= 100.0:
            raise ValueError("the initial battery range needs 0 <= low <= high <= 100")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> FleetConfig:
        if self.backoff_max < self.backoff_initial:
            raise ValueError("backoff_max must be at least backoff_initial")
        if not self.shard_index < self.shard_count <= self.cars:
            raise ValueError("the shard needs shard_index < shard_count <= cars")
        return self

    @property
    def box(self) -> BoundingBox:
        return BoundingBox(*self.bbox)

    @property
    def charging(self) -> Charging:
        return Charging(
            pack_kwh=self.pack_kwh, speedup=self.charge_speedup, max_kw=self.max_charge_kw
        )

    @property
    def habits(self) -> Habits:
        return Habits(
            stop_minutes=self.stop_minutes,
            target=self.charge_target,
            depot_target=self.depot_target,
        )

    @property
    def depot_station(self) -> Station | None:
        if self.depot is None:
            return None
        return Station(*self.depot)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def shard(self) -> range:
        """Indexes in the whole fleet of the cars this process drives."""
        base, extra = divmod(self.cars, self.shard_count)
        i = self.shard_index
        start = i * base + min(i, extra)
        return range(start, start + base + (1 if i < extra else 0))

    @property
    def saturating(self) -> bool:
        return self.saturate or self.interval == 0

    @property
    def channel_count(self) -> int:
        driven = len(self.shard)
        if self.channels is not None:
            return min(self.channels, driven)
        return max(1, math.ceil(driven / self.streams_per_channel))

    @property
    def step_s(self) -> float:
        """Seconds of driving one update stands for; saturating, the default period."""
        return self.interval if self.interval > 0 else DEFAULT_INTERVAL

    @property
    def ramp_up_s(self) -> float:
        if self.ramp_up is not None:
            return self.ramp_up
        return 1.0 if self.saturating else self.interval
