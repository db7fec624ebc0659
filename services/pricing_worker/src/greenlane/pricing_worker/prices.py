"""Grid quotes without I/O: the `at` parameter, the instant cache; the quote and the curve
themselves are core's (greenlane.core.quotes), shared with the planner."""

from __future__ import annotations

from collections import OrderedDict

from greenlane.core.quotes import (
    EPOCH,
    MAX_PRICE,
    PRICE_DECIMALS,
    Curve,
    Quote,
    QuoteError,
    instant_of,
    iso_at,
    parse_quote,
    to_ms,
)

__all__ = [
    "EPOCH",
    "MAX_PRICE",
    "PRICE_DECIMALS",
    "Curve",
    "Quote",
    "QuoteCache",
    "QuoteError",
    "instant_of",
    "iso_at",
    "parse_quote",
    "priced_instant",
    "to_ms",
]


def priced_instant(timestamp_ms: int, resolution_ms: int) -> int:
    """The instant an event is priced at: its own, floored to the resolution."""
    return timestamp_ms - timestamp_ms % resolution_ms


class QuoteCache:
    """Quotes by priced instant, for a short time, least recently used out first."""

    def __init__(self, ttl_seconds: float, max_entries: int = 100_000) -> None:
        self._ttl = ttl_seconds
        self._max = max_entries
        self._entries: OrderedDict[int, tuple[float, Quote]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, instant_ms: int, now: float) -> Quote | None:
        entry = self._entries.get(instant_ms)
        if entry is None:
            return None
        if now - entry[0] > self._ttl:
            del self._entries[instant_ms]
            return None
        self._entries.move_to_end(instant_ms)
        return entry[1]

    def put(self, instant_ms: int, quote: Quote, now: float) -> None:
        if self._ttl <= 0:
            return
        self._entries[instant_ms] = (now, quote)
        self._entries.move_to_end(instant_ms)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)
