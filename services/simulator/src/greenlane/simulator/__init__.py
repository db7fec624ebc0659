"""GreenLane fleet simulator: many cars in one asyncio process, each on its own gRPC stream."""

from greenlane.simulator.config import FleetConfig
from greenlane.simulator.fleet import FleetError, TokenRefused, run_fleet
from greenlane.simulator.stats import Stats

__all__ = ["FleetConfig", "FleetError", "Stats", "TokenRefused", "run_fleet"]
