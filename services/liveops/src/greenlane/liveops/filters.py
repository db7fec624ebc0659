"""Which events the feed prints: --car, --fleet and --below."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class EventFilter:
    """Empty cars (fleets) means every car (fleet); below=None means every battery level.

    fleet is the event's `fleet` field, the fleet that sent it ("" when it has none: such
    an event matches no --fleet).
    """

    cars: frozenset[str] = frozenset()
    below: float | None = None
    fleets: frozenset[str] = frozenset()

    def matches(self, car_id: str, battery: float, fleet: str = "") -> bool:
        if self.cars and car_id not in self.cars:
            return False
        if self.fleets and fleet not in self.fleets:
            return False
        return self.below is None or battery < self.below

    def describe(self) -> str:
        parts = []
        if self.cars:
            parts.append("cars " + ", ".join(sorted(self.cars)))
        if self.fleets:
            parts.append("fleets " + ", ".join(sorted(self.fleets)))
        if self.below is not None:
            parts.append(f"battery below {self.below:g} %")
        return "; ".join(parts) or "all events"
