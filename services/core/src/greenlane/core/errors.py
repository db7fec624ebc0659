"""Domain exceptions, mapped once at each edge (gRPC status, HTTP problem, DLQ)."""

from __future__ import annotations


class GreenLaneError(Exception):
    """Base of every GreenLane domain error."""


class InvalidField(GreenLaneError):
    """Input that breaks a rule; names the offending field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class BackendUnavailable(GreenLaneError):
    """Redis, Kafka or PostgreSQL could not confirm a write in time."""


class ConfigurationError(GreenLaneError):
    """Settings that cannot be used; the message names the variable."""
