"""Settings of the grid service, from GREENLANE_* environment variables."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from pydantic import Field, field_validator

from greenlane.core.settings import TlsSettings
from greenlane.grid.tariff import DEFAULT_TIMEZONE, tariff_zone


class GridSettings(TlsSettings):
    """Where the grid service listens and which clock its tariff follows.

    Metrics, /healthz and /readyz are served on the API port, so the
    inherited metrics_host and metrics_port are not used here.
    """

    grid_host: str = Field(default="127.0.0.1", min_length=1)
    grid_port: int = Field(default=8081, ge=0, le=65535)
    tariff_timezone: str = DEFAULT_TIMEZONE

    @field_validator("tariff_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        tariff_zone(value)  # raises ValueError naming the zone
        return value

    @property
    def tariff_zone(self) -> ZoneInfo:
        """The tariff's zone; validated at start-up, so this cannot fail."""
        return tariff_zone(self.tariff_timezone)
