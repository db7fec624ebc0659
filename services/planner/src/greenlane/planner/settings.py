"""Settings of the planner service, from GREENLANE_* environment variables."""

from __future__ import annotations

from pydantic import Field, ValidationInfo, field_validator

from greenlane.core.settings import TokenSettings
from greenlane.planner.model import MAX_SLOTS


class PlannerSettings(TokenSettings):
    """Where the planner's API listens, who may call it, how long a solve may take, and
    how the live planner plans: slots, horizon, the fleet's defaults.

    Metrics, /healthz and /readyz are served on the API port, so the inherited
    metrics_host and metrics_port are not used here.
    """

    planner_host: str = Field("127.0.0.1", min_length=1)
    planner_port: int = Field(8083, ge=0, le=65535)
    # HiGHS stops an LP after this long; the what-if answer is then a 503.
    planner_solve_time_limit_seconds: float = Field(10.0, gt=0, le=600)
    # What-if solves running at once; one more is answered 503 with Retry-After.
    planner_max_concurrent_solves: int = Field(2, ge=1, le=64)
    shutdown_grace_seconds: float = Field(10.0, ge=0, le=300)
    grid_url: str = "http://127.0.0.1:8081"

    # --- the live planner ------------------------------------------------------------
    # Off: only the what-if API (no Redis, Kafka or grid needed).
    planner_live: bool = True
    planner_slot_minutes: int = Field(15, ge=1, le=60)
    planner_horizon_hours: float = Field(24.0, ge=1, le=168)
    # Site re-plans solving at once (threads: HiGHS releases the GIL); more wait.
    planner_solve_workers: int = Field(2, ge=1, le=32)
    # Triggers of one site within this window make one re-plan.
    planner_coalesce_seconds: float = Field(0.2, ge=0, le=10)
    # Every site with cars is re-planned at least this often (0: once per slot), so plans
    # roll forward and follow the batteries as they are.
    planner_replan_seconds: float = Field(0.0, ge=0, le=3600)
    planner_forecast_refresh_seconds: float = Field(60.0, gt=0, le=3600)
    planner_sites_refresh_seconds: float = Field(30.0, gt=0, le=3600)
    # A plugged-in car silent for longer has left.
    planner_presence_timeout_seconds: float = Field(30.0, gt=0, le=3600)
    # On start, events of the last this many seconds rebuild the sites' cars.
    planner_replay_seconds: float = Field(120.0, ge=0, le=86_400)
    # The fleet's defaults (docs/planner.md): a car's goal when neither the car nor the
    # API set one, its pack and its maximum charge power unless the API set its own.
    planner_default_target_battery: float = Field(80.0, ge=1, le=100)
    planner_default_stay_minutes: float = Field(120.0, gt=0, le=7 * 24 * 60)
    planner_pack_kwh: float = Field(75.0, gt=0, le=1000)
    planner_car_max_kw: float = Field(150.0, gt=0, le=1000)
    # A booked car is expected at its station after its distance at this speed.
    planner_booked_speed_kmh: float = Field(25.0, gt=0, le=200)

    @field_validator("grid_url")
    @classmethod
    def _grid_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("planner_horizon_hours")
    @classmethod
    def _horizon(cls, value: float, info: ValidationInfo) -> float:
        minutes = info.data.get("planner_slot_minutes")
        if minutes is None:  # the slot length itself is refused: say that alone
            return value
        slots = value * 60 / minutes
        if slots != int(slots) or not 1 <= slots <= MAX_SLOTS:
            raise ValueError(
                f"must be a whole number of {minutes}-minute slots "
                f"(GREENLANE_PLANNER_SLOT_MINUTES), at most {MAX_SLOTS}; got {slots:g} slots"
            )
        return value

    @property
    def horizon_slots(self) -> int:
        return int(self.planner_horizon_hours * 60 / self.planner_slot_minutes)

    @property
    def replan_seconds(self) -> float:
        return self.planner_replan_seconds or self.planner_slot_minutes * 60.0
