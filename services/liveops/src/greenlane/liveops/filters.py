"""Which events the feed prints: --car and --below."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class EventFilter:
    """Empty cars means every car; below=None means every battery level."""

    cars: frozenset[str] = frozenset()
    below: float | None = None

    def matches(self, car_id: str, battery: float) -> bool:
        if self.cars and car_id not in self.cars:
            return False
        return self.below is None or battery < self.below

    def describe(self) -> str:
        parts = []
        if self.cars:
            parts.append("cars " + ", ".join(sorted(self.cars)))
        if self.below is not None:
            parts.append(f"battery below {self.below:g} %")
        return "; ".join(parts) or "all events"
