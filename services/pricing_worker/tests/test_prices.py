"""Quotes without I/O: instants, parsing, the instant cache and the last known curve."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from greenlane.grid.app import quote_json
from greenlane.grid.tariff import forecast, price_at
from greenlane.pricing_worker.prices import (
    Curve,
    Quote,
    QuoteCache,
    QuoteError,
    instant_of,
    iso_at,
    parse_quote,
    priced_instant,
    to_ms,
)

HOUR = 3_600_000
QUOTE = {
    "at": "2026-11-26T18:00:00Z",
    "price_per_kwh": 0.3712,
    "grid_load": 0.71,
    "energy_source": "solar",
    "currency": "USD",
}


def test_instants_are_exact_to_the_millisecond_and_written_with_z() -> None:
    ts = 1_795_716_000_123
    assert to_ms(instant_of(ts)) == ts
    assert iso_at(ts) == "2026-11-26T18:00:00.123Z"
    assert iso_at(ts - 123) == "2026-11-26T18:00:00Z"


def test_an_instant_past_year_9999_cannot_be_written() -> None:
    with pytest.raises((OverflowError, ValueError)):
        iso_at(253_402_300_800_000)


def test_events_are_priced_at_their_instant_floored_to_the_resolution() -> None:
    assert priced_instant(1_795_716_000_999, 1000) == 1_795_716_000_000
    assert priced_instant(1_795_716_000_999, 1) == 1_795_716_000_999
    assert priced_instant(1_795_716_059_999, 60_000) == 1_795_716_000_000


def test_a_grid_quote_parses_into_its_instant_and_price() -> None:
    at, quote = parse_quote(QUOTE)
    assert at == 1_795_716_000_000
    assert quote == Quote(0.3712, 0.71, "solar", from_cache=False)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"price_per_kwh": None}, "price_per_kwh"),
        ({"price_per_kwh": True}, "price_per_kwh"),
        ({"price_per_kwh": -0.1}, "price_per_kwh"),
        ({"price_per_kwh": 1e9}, "price_per_kwh"),
        ({"grid_load": "high"}, "grid_load"),
        ({"energy_source": ""}, "energy_source"),
        ({"at": "yesterday"}, "at"),
        ({"at": "2026-11-26T18:00:00"}, "at"),
        ({"currency": "EUR"}, "currency"),
    ],
)
def test_an_unusable_quote_is_refused_naming_the_field(
    change: dict[str, object], message: str
) -> None:
    with pytest.raises(QuoteError, match=message):
        parse_quote({**QUOTE, **change})


def test_the_quote_cache_forgets_after_its_ttl_and_evicts_the_least_recently_used() -> None:
    cache = QuoteCache(ttl_seconds=10, max_entries=2)
    q = Quote(0.2, 0.5, "grid")
    cache.put(1, q, now=0)
    cache.put(2, q, now=0)
    assert cache.get(1, now=5) == q  # 1 is now the most recently used
    cache.put(3, q, now=5)
    assert cache.get(2, now=5) is None
    assert cache.get(1, now=10) == q
    assert cache.get(1, now=10.5) is None
    assert len(cache) == 1


def test_a_zero_ttl_cache_holds_nothing() -> None:
    cache = QuoteCache(ttl_seconds=0)
    cache.put(1, Quote(0.2, 0.5, "grid"), now=0)
    assert cache.get(1, now=0) is None


def points(*rows: tuple[int, float, float, str]) -> list[tuple[int, Quote]]:
    return [(t, Quote(p, g, s)) for t, p, g, s in rows]


def test_the_curve_is_linear_between_points_of_one_source_and_marks_cache_prices() -> None:
    curve = Curve(points((0, 0.20, 0.3, "grid"), (HOUR, 0.30, 0.5, "grid")), fetched_at=100.0)
    assert curve.price_at(HOUR // 4) == Quote(0.225, 0.35, "grid", from_cache=True)
    assert curve.price_at(0) == Quote(0.20, 0.3, "grid", from_cache=True)
    assert curve.price_at(HOUR) == Quote(0.30, 0.5, "grid", from_cache=True)
    assert curve.price_at(-1) is None
    assert curve.price_at(HOUR + 1) is None
    assert curve.age(160.0) == 60.0


def test_where_a_discount_starts_the_price_follows_the_load_of_the_earlier_source() -> None:
    curve = Curve(
        points(
            (0, 0.16, 0.2, "grid"),
            (HOUR, 0.18, 0.3, "grid"),
            (2 * HOUR, 0.17, 0.4, "solar"),  # a discount starts here: the price jumps
        ),
        fetched_at=0.0,
    )
    half = curve.price_at(HOUR + HOUR // 2)
    assert half == Quote(0.19, 0.35, "grid", from_cache=True)


def test_the_curve_follows_the_real_tariff_within_a_fraction_of_a_cent() -> None:
    start = datetime(2026, 7, 15, 0, 0, tzinfo=UTC)
    curve = Curve([parse_quote(quote_json(q)) for q in forecast(start, 48)], fetched_at=0.0)
    worst = 0.0
    instant = start + timedelta(hours=1, minutes=7)
    while instant < start + timedelta(hours=47):
        exact = price_at(instant)
        cached = curve.price_at(to_ms(instant))
        assert cached is not None
        assert cached.energy_source == exact.energy_source
        worst = max(worst, abs(cached.price_per_kwh - exact.price_per_kwh))
        instant += timedelta(minutes=13)
    # Under a tenth of a cent, and exactly the tariff's energy source, every hour.
    assert worst < 0.001


def test_without_a_load_spread_the_price_is_linear_in_time_or_held() -> None:
    flat = Curve(
        points((0, 0.20, 0.5, "grid"), (HOUR, 0.30, 0.5, "grid"), (2 * HOUR, 0.1, 0.5, "solar")),
        fetched_at=0.0,
    )
    assert flat.price_at(HOUR // 2) == Quote(0.25, 0.5, "grid", from_cache=True)
    assert flat.price_at(HOUR + HOUR // 2) == Quote(0.30, 0.5, "grid", from_cache=True)
