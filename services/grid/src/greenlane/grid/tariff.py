"""The time-of-use tariff: a pure, deterministic price for any instant.

The seed's text and its formula disagree. The text says the price peaks at
18:00 and is lowest at night (02:00). The formula, ``sin((hour - 6) * pi / 12)``,
peaks at noon. We implement the text.

Hours are the wall-clock hours of the tariff's IANA time zone (default
``America/New_York``: the fleet is in Manhattan). The fractional local hour
``h`` (14:30 is 14.5) is used, so the curve is smooth within an hour.

Grid load is a piecewise cosine that is 0 at the trough (02:00) and 1 at the
peak (18:00). It rises for 16 hours and falls for 8. With
``d = (h - 2) mod 24``:

    load(h) = (1 - cos(pi * d / 16)) / 2           for 0 <= d < 16   (02:00 -> 18:00)
    load(h) = (1 + cos(pi * (d - 16) / 8)) / 2     for 16 <= d < 24  (18:00 -> 02:00)

The curve is continuous and has no kinks: its slope is zero at both joins.
The un-discounted price follows the load:

    price(h) = BASE + AMPLITUDE * (2 * load(h) - 1)  =  0.10 + 0.30 * load(h)

That gives $0.10 at 02:00, $0.25 at 10:00 and 22:00, and $0.40 at 18:00.

Every hour has exactly one energy source. The windows are half-open, in local
time:

    solar  [08:00, 18:00)   price * 0.9 (the 10 % solar discount)
    wind   [18:00, 23:00)
    grid   [23:00, 08:00)

So 18:00 is wind at the full peak price of $0.40. The price jumps where the
discount starts (08:00) and where it ends (18:00). The price is rounded to 4
decimals only after the discount is applied. ``grid_load`` is ``load(h)``
rounded to 4 decimals. It follows the un-discounted curve, because the
discount is a price effect and not a load effect.

Because the tariff follows the local wall clock, a daylight-saving change moves
it. On the spring-forward day the 02:00-03:00 hour does not exist, so that day
never reaches the 02:00 minimum. On the fall-back day the 01:00-02:00 hour
happens twice, with the same prices both times. At the clock change the price
steps from load(~02:00) back to load(01:00), about $0.011.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final, Literal
from zoneinfo import ZoneInfo

from greenlane.core.errors import InvalidField

EnergySource = Literal["solar", "wind", "grid"]

BASE_PRICE: Final = 0.25
AMPLITUDE: Final = 0.15
TROUGH_HOUR: Final = 2.0
PEAK_HOUR: Final = 18.0
SOLAR_DISCOUNT: Final = 0.10
SOLAR_HOURS: Final = (8.0, 18.0)
WIND_HOURS: Final = (18.0, 23.0)
CURRENCY: Final = "USD"
TARIFF_VERSION: Final = "tou-2025-1"
DEFAULT_TIMEZONE: Final = "America/New_York"
MAX_FORECAST_HOURS: Final = 168
PRICE_DECIMALS: Final = 4

_RISE_HOURS: Final = PEAK_HOUR - TROUGH_HOUR  # 16 h from trough to peak
_FALL_HOURS: Final = 24.0 - _RISE_HOURS  # 8 h from peak back to trough
_HOUR: Final = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class Quote:
    """The tariff at one instant."""

    at: datetime  # UTC
    local_time: datetime  # the same instant on the tariff's wall clock
    price_per_kwh: float
    grid_load: float
    energy_source: EnergySource
    currency: str
    tariff_version: str
    timezone: str


def grid_load_at_hour(hour: float) -> float:
    """Grid load in [0, 1] at a fractional local hour, not rounded."""
    d = (hour - TROUGH_HOUR) % 24.0
    if d < _RISE_HOURS:
        return (1.0 - math.cos(math.pi * d / _RISE_HOURS)) / 2.0
    return (1.0 + math.cos(math.pi * (d - _RISE_HOURS) / _FALL_HOURS)) / 2.0


def base_price_at_hour(hour: float) -> float:
    """Price before the solar discount at a fractional local hour, not rounded."""
    return BASE_PRICE + AMPLITUDE * (2.0 * grid_load_at_hour(hour) - 1.0)


def energy_source_at_hour(hour: float) -> EnergySource:
    """The energy source at a fractional local hour; every hour has exactly one."""
    h = hour % 24.0
    if SOLAR_HOURS[0] <= h < SOLAR_HOURS[1]:
        return "solar"
    if WIND_HOURS[0] <= h < WIND_HOURS[1]:
        return "wind"
    return "grid"


def price_at_hour(hour: float) -> float:
    """Price at a fractional local hour with the solar discount, rounded to 4 decimals."""
    price = base_price_at_hour(hour)
    if energy_source_at_hour(hour) == "solar":
        price *= 1.0 - SOLAR_DISCOUNT
    return round(price, PRICE_DECIMALS)


def tariff_zone(name: str = DEFAULT_TIMEZONE) -> ZoneInfo:
    """The IANA zone the tariff's hours are counted in; ValueError if unknown."""
    try:
        return ZoneInfo(name)
    except (ValueError, KeyError) as exc:  # ZoneInfoNotFoundError is a KeyError
        raise ValueError(f"unknown IANA time zone {name!r}") from exc


def _require_aware(instant: datetime, field: str) -> None:
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise InvalidField(field, "must include a UTC offset")


def price_at(instant: datetime, zone: ZoneInfo | None = None) -> Quote:
    """The quote for an instant; the same instant always gets the same quote.

    Raises InvalidField("at", ...) for an instant without a UTC offset or out of range.
    """
    _require_aware(instant, "at")
    zone = zone or tariff_zone()
    try:
        at = instant.astimezone(UTC)
        local = instant.astimezone(zone)
    except OverflowError:
        raise InvalidField("at", "out of the supported range") from None
    hour = (
        local.hour
        + local.minute / 60.0
        + local.second / 3600.0
        + local.microsecond / 3_600_000_000.0
    )
    return Quote(
        at=at,
        local_time=local,
        price_per_kwh=price_at_hour(hour),
        grid_load=round(grid_load_at_hour(hour), PRICE_DECIMALS),
        energy_source=energy_source_at_hour(hour),
        currency=CURRENCY,
        tariff_version=TARIFF_VERSION,
        timezone=zone.key,
    )


def next_full_hour(start: datetime, zone: ZoneInfo | None = None) -> datetime:
    """The first full hour of the tariff's wall clock strictly after start, in UTC.

    This is exact for zones whose offset is a whole number of hours and for
    zones whose daylight-saving shift is a whole hour. That covers every zone
    today except Lord Howe Island's 30-minute shift.
    """
    _require_aware(start, "at")
    zone = zone or tariff_zone()
    try:
        utc = start.astimezone(UTC)
        offset = start.astimezone(zone).utcoffset() or timedelta(0)
        wall = utc.replace(tzinfo=None) + offset
        top = wall.replace(minute=0, second=0, microsecond=0) + _HOUR
        return (top - offset).replace(tzinfo=UTC)
    except OverflowError:
        raise InvalidField("at", "out of the supported range") from None


def forecast(start: datetime, hours: int, zone: ZoneInfo | None = None) -> list[Quote]:
    """Quotes for the next `hours` full hours after start, one hour of real time apart."""
    if not 1 <= hours <= MAX_FORECAST_HOURS:
        raise InvalidField("hours", f"must be from 1 to {MAX_FORECAST_HOURS}, got {hours}")
    zone = zone or tariff_zone()
    first = next_full_hour(start, zone)
    try:
        return [price_at(first + i * _HOUR, zone) for i in range(hours)]
    except OverflowError:
        raise InvalidField("at", "out of the supported range") from None
