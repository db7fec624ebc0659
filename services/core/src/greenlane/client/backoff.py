"""Exponential backoff with jitter, and the server's retry hints (pure, no I/O)."""

from __future__ import annotations

import random

__all__ = ["Backoff"]


class Backoff:
    """Delays that double from `initial` up to `maximum`, each jittered.

    The jitter draws each delay from [(1 - jitter) x d, d], so clients cut off together
    do not come back together. A server hint (RATE_LIMITED's retry_after_ms) is a floor:
    the delay is never shorter than what the server asked for.
    """

    def __init__(
        self,
        initial: float = 0.2,
        maximum: float = 5.0,
        *,
        multiplier: float = 2.0,
        jitter: float = 0.5,
        rng: random.Random | None = None,
    ) -> None:
        if not initial > 0:
            raise ValueError(f"initial: must be above 0, got {initial}")
        if maximum < initial:
            raise ValueError(f"maximum: must be at least initial ({initial}), got {maximum}")
        if multiplier < 1:
            raise ValueError(f"multiplier: must be at least 1, got {multiplier}")
        if not 0 <= jitter <= 1:
            raise ValueError(f"jitter: must be within [0, 1], got {jitter}")
        self.initial = initial
        self.maximum = maximum
        self.multiplier = multiplier
        self.jitter = jitter
        self._rng = rng if rng is not None else random.Random()
        self._current = initial
        self.failures = 0  # in a row, since the last reset

    def next(self, hint: float | None = None) -> float:
        """The delay before the next try, in seconds; grows the following one."""
        base = self._current
        delay = base * (1.0 - self.jitter * self._rng.random())
        self._current = min(base * self.multiplier, self.maximum)
        self.failures += 1
        if hint is not None and hint > delay:
            delay = hint
        return delay

    def reset(self) -> None:
        """A success: the next failure starts from `initial` again."""
        self._current = self.initial
        self.failures = 0
