"""Counters and acknowledgement latencies of a simulator run, pure and bounded in memory."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

DEFAULT_RESERVOIR: Final = 200_000


def percentile(samples: Sequence[float], q: float) -> float | None:
    """The nearest-rank q-th percentile (0 < q ≤ 100) of samples; None when empty."""
    if not 0 < q <= 100:
        raise ValueError("q must be in (0, 100]")
    if not samples:
        return None
    ordered = sorted(samples)
    rank = math.ceil(q / 100 * len(ordered))
    return ordered[max(rank, 1) - 1]


class Reservoir:
    """A uniform sample of at most `capacity` values out of all those offered (algorithm R).

    Below capacity it holds every value, so percentiles are exact; above, they are
    estimates from a uniform sample, and memory stays bounded however long the run.
    """

    def __init__(self, capacity: int = DEFAULT_RESERVOIR, seed: int = 0) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self.samples: list[float] = []
        self.count = 0
        self.total = 0.0
        self.max = 0.0
        # Its own generator: sampling must not disturb (or depend on) the cars' randomness.
        self._rng = random.Random(seed)

    def add(self, value: float) -> None:
        self.count += 1
        self.total += value
        self.max = max(self.max, value)
        if len(self.samples) < self.capacity:
            self.samples.append(value)
            return
        slot = self._rng.randrange(self.count)
        if slot < self.capacity:
            self.samples[slot] = value

    @property
    def exact(self) -> bool:
        return self.count <= self.capacity

    def percentile(self, q: float, max_samples: int | None = None) -> float | None:
        """Percentile over the stored samples; max_samples bounds the work (live display)."""
        samples: Sequence[float] = self.samples
        if max_samples is not None and len(samples) > max_samples:
            # A uniform subsample of a uniform sample is still uniform over all values.
            samples = self._rng.sample(self.samples, max_samples)
        return percentile(samples, q)

    @property
    def mean(self) -> float | None:
        return self.total / self.count if self.count else None


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000.0, 3)


@dataclass
class Stats:
    """What a run did. Counts are statuses (a batch of 10 counts 10); latencies are per message.

    `accepted` includes `booked` and `no_capacity` (both are stored statuses); `errors`
    counts broken streams; `unanswered` counts statuses sent without an answer before their
    stream broke or the final drain timed out. The charging counters are the cars' side.
    """

    sent: int = 0
    accepted: int = 0
    booked: int = 0
    no_capacity: int = 0
    rejected: int = 0
    unavailable: int = 0
    unexpected: int = 0  # an answer status this client does not know
    errors: int = 0
    unanswered: int = 0
    mismatched: int = 0  # answers whose echoed timestamp is not the one sent (order broken)
    resent: int = 0  # statuses sent again after UNAVAILABLE, RATE_LIMITED or a broken stream
    dropped: int = 0  # by a full outbox (docs/client.md's overflow policy)
    unsent: int = 0  # still in the outbox, unacknowledged, when the run ended
    connected: int = 0  # streams open right now
    # Cars that arrived at their booked station and plugged in; that unplugged charged;
    # that gave up on their way because the booking expired first.
    charging_sessions_started: int = 0
    charging_sessions_finished: int = 0
    bookings_expired_en_route: int = 0
    # Plans (docs/planner.md): answers that carried a setpoint; updates of a plugged-in car
    # charged at its plan's setpoint, of which waiting (0 kW) ones, and at full power
    # without a plan; cars that left at their departure; depot cars that went home.
    setpoints: int = 0
    planned_updates: int = 0
    waiting_updates: int = 0
    unplanned_updates: int = 0
    departures: int = 0
    went_home: int = 0
    latencies: Reservoir = field(default_factory=Reservoir)
    started_at: float | None = None  # monotonic seconds
    finished_at: float | None = None
    # Steady state (benchmarks): only messages sent after the first warmup_s seconds,
    # so stream set-up at start does not count as the latency of a running fleet.
    warmup_s: float = 0.0
    steady_answered: int = 0
    steady_latencies: Reservoir = field(default_factory=Reservoir)

    @property
    def charging_now(self) -> int:
        """Cars plugged in right now."""
        return self.charging_sessions_started - self.charging_sessions_finished

    @property
    def answered(self) -> int:
        return self.accepted + self.rejected + self.unavailable + self.unexpected

    def start(self, now: float) -> None:
        self.started_at = now

    def finish(self, now: float) -> None:
        self.finished_at = now

    def elapsed(self, now: float | None = None) -> float:
        if self.started_at is None:
            return 0.0
        end = self.finished_at if now is None else now
        return max(0.0, (end if end is not None else self.started_at) - self.started_at)

    def record_sent(self, count: int = 1) -> None:
        self.sent += count

    def record_answer(
        self,
        latency_s: float,
        *,
        accepted: int = 0,
        booked: int = 0,
        no_capacity: int = 0,
        rejected: int = 0,
        unavailable: int = 0,
        unexpected: int = 0,
    ) -> None:
        """One answer message; booked and no_capacity are counted as accepted too."""
        self.accepted += accepted + booked + no_capacity
        self.booked += booked
        self.no_capacity += no_capacity
        self.rejected += rejected
        self.unavailable += unavailable
        self.unexpected += unexpected
        self.latencies.add(latency_s)
        if self.warmup_s > 0 and self.started_at is not None:
            sent_at = time.monotonic() - latency_s
            if sent_at - self.started_at >= self.warmup_s:
                self.steady_answered += accepted + booked + no_capacity + rejected + unavailable
                self.steady_latencies.add(latency_s)

    def record_error(self) -> None:
        self.errors += 1

    def record_unanswered(self, count: int) -> None:
        self.unanswered += count

    def p50(self) -> float | None:
        return self.latencies.percentile(50)

    def p99(self) -> float | None:
        return self.latencies.percentile(99)

    def to_dict(self) -> dict[str, Any]:
        """The summary as plain JSON-ready values; latencies in milliseconds."""
        elapsed = self.elapsed()
        lat = self.latencies
        return {
            "elapsed_s": round(elapsed, 3),
            "sent": self.sent,
            "accepted": self.accepted,
            "booked": self.booked,
            "no_capacity": self.no_capacity,
            "charging_sessions_started": self.charging_sessions_started,
            "charging_sessions_finished": self.charging_sessions_finished,
            "bookings_expired_en_route": self.bookings_expired_en_route,
            "setpoints": self.setpoints,
            "planned_updates": self.planned_updates,
            "waiting_updates": self.waiting_updates,
            "unplanned_updates": self.unplanned_updates,
            "departures": self.departures,
            "went_home": self.went_home,
            "rejected": self.rejected,
            "unavailable": self.unavailable,
            "unexpected": self.unexpected,
            "errors": self.errors,
            "unanswered": self.unanswered,
            "mismatched": self.mismatched,
            "resent": self.resent,
            "dropped": self.dropped,
            "unsent": self.unsent,
            "answered_per_s": round(self.answered / elapsed, 1) if elapsed > 0 else 0.0,
            "latency_ms": {
                "p50": _ms(self.p50()),
                "p99": _ms(self.p99()),
                "mean": _ms(lat.mean),
                "max": _ms(lat.max if lat.count else None),
                "samples": lat.count,
                "exact": lat.exact,
            },
            **({"steady": self._steady(elapsed)} if self.warmup_s > 0 else {}),
        }

    def _steady(self, elapsed: float) -> dict[str, Any]:
        window = max(elapsed - self.warmup_s, 0.0)
        lat = self.steady_latencies
        return {
            "warmup_s": self.warmup_s,
            "window_s": round(window, 3),
            "answered": self.steady_answered,
            "answered_per_s": round(self.steady_answered / window, 1) if window > 0 else 0.0,
            "latency_ms": {
                "p50": _ms(lat.percentile(50)),
                "p99": _ms(lat.percentile(99)),
                "max": _ms(lat.max if lat.count else None),
                "samples": lat.count,
            },
        }

    def lines(self) -> list[str]:
        """The summary as aligned `name value` text lines."""
        data = self.to_dict()
        data.pop("steady", None)
        latency = data.pop("latency_ms")
        rows = [(name, str(value)) for name, value in data.items()]
        for name in ("p50", "p99", "mean", "max"):
            value = latency[name]
            rows.append((f"latency {name}", "-" if value is None else f"{value:.3f} ms"))
        rows.append(("latency samples", str(latency["samples"])))
        width = max(len(name) for name, _ in rows)
        return [f"{name:<{width}}  {value}" for name, value in rows]
