"""Per-credential limits: statuses per second (a token bucket), open streams, batch size.

Pure (the clock is passed in), so the rules are unit-tested without I/O. Limits are kept
per ingestion replica: a Redis round trip per status would cost more than the status
itself. With N replicas behind a load balancer a credential gets up to N times its rate;
docs/security.md says how to size them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from greenlane.core.auth import Limits, Principal

# A bucket not touched for this long is forgotten (it would be full again anyway).
IDLE_SECONDS: Final = 300.0
MAX_BUCKETS: Final = 100_000


@dataclass(slots=True)
class TokenBucket:
    """`rate` tokens a second, up to `burst`; a status costs one token."""

    rate: float
    burst: float
    tokens: float | None = None  # None: not used yet (full)
    at: float = 0.0

    def take(self, n: int, now: float) -> float:
        """Take n tokens: 0.0 when granted, else the seconds until they would be (nothing is
        taken then, so a refused status costs nothing).

        More than `burst` at once (a large batch) is granted when the bucket is full and
        leaves it in debt, so the average rate still holds.
        """
        if self.tokens is None:
            self.tokens, self.at = self.burst, now
        else:
            self.tokens = min(self.burst, self.tokens + max(now - self.at, 0.0) * self.rate)
            self.at = now
        if n <= self.tokens or (n > self.burst and self.tokens >= self.burst):
            self.tokens -= n
            return 0.0
        need = min(float(n), self.burst) - self.tokens
        return max(need / self.rate, 0.001)


@dataclass(frozen=True, slots=True)
class LimitDefaults:
    """The service's limits for credentials that set none (GREENLANE_LIMIT_*)."""

    statuses_per_second: float = 100_000.0
    burst: int = 200_000
    streams: int = 20_000
    batch: int = 10_000


@dataclass(slots=True)
class _Account:
    bucket: TokenBucket
    streams: int = 0
    seen: float = 0.0


@dataclass
class Limiter:
    """The limits of every credential seen, by subject."""

    defaults: LimitDefaults = field(default_factory=LimitDefaults)
    _accounts: dict[str, _Account] = field(default_factory=dict)

    def limits(self, principal: Principal) -> Limits:
        """The principal's limits, each one its credential's or the default."""
        own, d = principal.limits, self.defaults
        return Limits(
            statuses_per_second=own.statuses_per_second or d.statuses_per_second,
            burst=own.burst or d.burst,
            streams=own.streams or d.streams,
            batch=min(own.batch or d.batch, d.batch),
            bookings=own.bookings,
        )

    def _account(self, principal: Principal, now: float) -> _Account:
        account = self._accounts.get(principal.subject)
        if account is None:
            if len(self._accounts) >= MAX_BUCKETS:
                self._forget(now)
            lim = self.limits(principal)
            rate = float(lim.statuses_per_second or self.defaults.statuses_per_second)
            burst = float(lim.burst or self.defaults.burst)
            account = _Account(TokenBucket(rate, max(burst, 1.0)))
            self._accounts[principal.subject] = account
        account.seen = now
        return account

    def _forget(self, now: float) -> None:
        idle = [k for k, a in self._accounts.items() if a.streams == 0 and now - a.seen > 1.0]
        for k in idle:
            del self._accounts[k]

    def take(self, principal: Principal, n: int, now: float) -> float:
        """Statuses the principal may store now: 0.0, or the seconds to wait (a retry hint)."""
        return self._account(principal, now).bucket.take(n, now)

    def open_stream(self, principal: Principal, now: float) -> bool:
        """Count one more open stream; False (nothing counted) when at the limit."""
        account = self._account(principal, now)
        most = self.limits(principal).streams or self.defaults.streams
        if account.streams >= most:
            return False
        account.streams += 1
        return True

    def close_stream(self, principal: Principal) -> None:
        account = self._accounts.get(principal.subject)
        if account is not None and account.streams > 0:
            account.streams -= 1

    def open_streams(self, principal: Principal) -> int:
        account = self._accounts.get(principal.subject)
        return account.streams if account is not None else 0
