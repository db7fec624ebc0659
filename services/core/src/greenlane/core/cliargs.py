"""argparse types for every command: one family, each message naming the rule broken.

argparse prefixes the message with the flag (`argument --cars: must be between 1 and
100000, got 0`). Bounds that a settings or config model already declares are read from
it (`for_field`), so a limit is written once, in the model, and the flags follow it.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, TypeVar

import annotated_types
from pydantic import BaseModel, ValidationError

T = TypeVar("T")


def checked(check: Callable[[str], T]) -> Callable[[str], T]:
    """A parser that raises ValueError, as an argparse type (the message is kept)."""

    def parse(text: str) -> T:
        try:
            return check(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse.__name__ = getattr(check, "__name__", "value")  # argparse names it on TypeError
    return parse


def integer(low: int | None = None, high: int | None = None) -> Callable[[str], int]:
    """An integer in [low, high] (either bound may be absent)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if (low is not None and value < low) or (high is not None and value > high):
            if low is not None and high is not None:
                raise argparse.ArgumentTypeError(f"must be between {low} and {high}, got {value}")
            if low is not None:
                raise argparse.ArgumentTypeError(f"must be {low} or more, got {value}")
            raise argparse.ArgumentTypeError(f"must be at most {high}, got {value}")
        return value

    return parse


def number(
    low: float = -math.inf, high: float = math.inf, *, low_open: bool = False
) -> Callable[[str], float]:
    """A finite number in [low, high], or (low, high] with low_open."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        too_low = value <= low if low_open else value < low
        if not math.isfinite(value) or too_low or value > high:
            left = "(" if low_open else "["
            raise argparse.ArgumentTypeError(f"must be in {left}{low:g}, {high:g}], got {text!r}")
        return value

    return parse


def seconds(*, zero: bool = False, most: float = math.inf) -> Callable[[str], float]:
    """A finite duration: more than 0 (or 0 or more with zero), at most `most`."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
        if not math.isfinite(value) or value < 0 or (value == 0 and not zero):
            bound = "0 or more" if zero else "more than 0"
            raise argparse.ArgumentTypeError(
                f"must be a finite number of seconds {bound}, got {text!r}"
            )
        if value > most:
            raise argparse.ArgumentTypeError(f"must be at most {most:g}, got {text!r}")
        return value

    return parse


def percent(text: str) -> float:
    """A percentage from 0 to 100."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or not 0.0 <= value <= 100.0:
        raise argparse.ArgumentTypeError(f"must be a percentage from 0 to 100, got {text!r}")
    return value


def port(text: str) -> int:
    """A TCP port, 0 (any free one) to 65535."""
    if not text.isascii() or not text.isdigit() or not 0 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a TCP port (0-65535)")
    return int(text)


def iso_datetime(text: str) -> datetime:
    """An ISO-8601 date or date-time; without a zone it is UTC."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO-8601 time (e.g. 2026-05-01T14:00:00Z)"
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def iso_date(text: str) -> date:
    """A calendar date, YYYY-MM-DD."""
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from None


@dataclass(frozen=True)
class Bounds:
    """The numeric limits a model field declares (Field(ge=..., gt=..., le=...))."""

    low: float | None = None
    low_open: bool = False
    high: float | None = None


def field_bounds(model: type[BaseModel], name: str) -> Bounds:
    low: float | None = None
    low_open = False
    high: float | None = None
    for constraint in model.model_fields[name].metadata:
        if isinstance(constraint, annotated_types.Ge):
            low = float(constraint.ge)  # type: ignore[arg-type]
        elif isinstance(constraint, annotated_types.Gt):
            low, low_open = float(constraint.gt), True  # type: ignore[arg-type]
        elif isinstance(constraint, annotated_types.Le):
            high = float(constraint.le)  # type: ignore[arg-type]
        elif isinstance(constraint, annotated_types.Lt):
            raise TypeError(f"{model.__name__}.{name}: an open upper bound is not supported")
    return Bounds(low, low_open, high)


def for_field(model: type[BaseModel], name: str, *, kind: str = "number") -> Callable[[str], Any]:
    """The argparse type of a numeric model field, its bounds read from the model.

    kind: "integer", "number" or "seconds" (how the value and its message read).
    """
    b = field_bounds(model, name)
    if kind == "integer":
        low = None if b.low is None else int(b.low) + (1 if b.low_open else 0)
        return integer(low, None if b.high is None else int(b.high))
    if kind == "seconds":
        if b.low is None or b.low != 0:
            raise TypeError(f"{model.__name__}.{name}: seconds start at 0")
        return seconds(zero=not b.low_open, most=math.inf if b.high is None else b.high)
    return number(
        -math.inf if b.low is None else b.low,
        math.inf if b.high is None else b.high,
        low_open=b.low_open,
    )


def validated_by(model: type[BaseModel], name: str) -> Callable[[str], Any]:
    """An argparse type that runs the model's own validation of one field.

    For rules written as validators (a pattern, a bounding box, a token's characters):
    the flag refuses what the model would, with the model's message. The input is never
    echoed (hide_input_in_errors on the model keeps secrets out of the message).
    """

    def parse(text: str) -> Any:
        try:
            holder = model.__pydantic_validator__.validate_assignment(
                model.model_construct(), name, text
            )
        except ValidationError as exc:
            message = "; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())
            raise argparse.ArgumentTypeError(message) from None
        return getattr(holder, name)

    parse.__name__ = name
    return parse
