"""Settings of the planner service, from GREENLANE_* environment variables."""

from __future__ import annotations

from pydantic import Field

from greenlane.core.settings import TokenSettings


class PlannerSettings(TokenSettings):
    """Where the planner's API listens, who may call it, and how long a solve may take.

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
