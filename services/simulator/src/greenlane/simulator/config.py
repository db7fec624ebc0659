"""FleetConfig: what one simulator run does, validated once."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Final

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from greenlane.core.events import CAR_ID_PATTERN
from greenlane.core.settings import DEV_TOKEN, parse_host_port
from greenlane.simulator.physics import (
    DEFAULT_PACK_KWH,
    INITIAL_BATTERY_MAX,
    INITIAL_BATTERY_MIN,
    MANHATTAN,
    BoundingBox,
    Charging,
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
    # (low, high) percent: each car starts with a battery drawn uniformly in it.
    initial_battery: tuple[float, float] = (INITIAL_BATTERY_MIN, INITIAL_BATTERY_MAX)
    # At the end, how long to wait for the answers still outstanding.
    drain_timeout: float = Field(default=5.0, ge=0.0, allow_inf_nan=False)
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
        return Charging(pack_kwh=self.pack_kwh, speedup=self.charge_speedup)

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
