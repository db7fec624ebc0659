"""The tariff curve, its energy sources and its clock, without any I/O."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from greenlane.core.errors import InvalidField
from greenlane.grid.tariff import (
    MAX_FORECAST_HOURS,
    Quote,
    base_price_at_hour,
    energy_source_at_hour,
    forecast,
    grid_load_at_hour,
    next_full_hour,
    price_at,
    tariff_zone,
)

NEW_YORK = ZoneInfo("America/New_York")
MINUTE = timedelta(minutes=1)
# Ordinary days in winter (EST) and summer (EDT).
ORDINARY_DAYS = [date(2025, 1, 15), date(2025, 7, 15), date(2024, 2, 29)]
SPRING_FORWARD = date(2025, 3, 9)
FALL_BACK = date(2025, 11, 2)


def local_day(day: date, zone: ZoneInfo = NEW_YORK) -> list[datetime]:
    """Every minute of a local calendar day, as UTC instants (23 or 25 h on DST days)."""
    start = datetime(day.year, day.month, day.day, tzinfo=zone).astimezone(UTC)
    nxt = day + timedelta(days=1)
    end = datetime(nxt.year, nxt.month, nxt.day, tzinfo=zone).astimezone(UTC)
    minutes = int((end - start) / MINUTE)
    return [start + i * MINUTE for i in range(minutes)]


def local_hhmm(quote: Quote) -> str:
    return quote.local_time.strftime("%H:%M")


def jumps(quotes: list[Quote]) -> list[tuple[Quote, Quote]]:
    """Consecutive quotes whose prices differ by more than a cent."""
    return [
        (a, b)
        for a, b in zip(quotes, quotes[1:], strict=False)
        if abs(b.price_per_kwh - a.price_per_kwh) > 0.01
    ]


@pytest.mark.parametrize("day", ORDINARY_DAYS, ids=str)
def test_the_price_peaks_at_18_00_local_time(day: date) -> None:
    quotes = [price_at(t) for t in local_day(day)]
    top = max(q.price_per_kwh for q in quotes)
    assert top == 0.40
    at_top = [local_hhmm(q) for q in quotes if q.price_per_kwh == top]
    # Rounding to 4 decimals flattens the top over a few minutes, starting at 18:00.
    assert at_top[0] == "18:00"
    assert all(hhmm.startswith("18:0") for hhmm in at_top)
    raw = {round(m / 60, 6): base_price_at_hour(m / 60) for m in range(24 * 60)}
    assert max(raw, key=raw.__getitem__) == 18.0


@pytest.mark.parametrize("day", ORDINARY_DAYS, ids=str)
def test_the_price_is_lowest_at_02_00_local_time(day: date) -> None:
    quotes = [price_at(t) for t in local_day(day)]
    exact_trough = [q for q in quotes if local_hhmm(q) == "02:00"]
    assert exact_trough[0].price_per_kwh == 0.10
    assert exact_trough[0].grid_load == 0.0
    assert min(q.price_per_kwh for q in quotes) == 0.10
    # Rounding to 4 decimals flattens the bottom; the unrounded curve has its minimum at 02:00.
    raw = {round(m / 60, 6): base_price_at_hour(m / 60) for m in range(24 * 60)}
    assert min(raw, key=raw.__getitem__) == 2.0


def test_the_curve_matches_the_documented_values() -> None:
    assert base_price_at_hour(2.0) == pytest.approx(0.10)
    assert base_price_at_hour(10.0) == pytest.approx(0.25)
    assert base_price_at_hour(18.0) == pytest.approx(0.40)
    assert base_price_at_hour(22.0) == pytest.approx(0.25)
    assert grid_load_at_hour(18.0) == pytest.approx(1.0)
    assert grid_load_at_hour(2.0) == pytest.approx(0.0)


@pytest.mark.parametrize("day", ORDINARY_DAYS, ids=str)
def test_the_solar_discount_is_exactly_ten_percent_in_the_solar_window(day: date) -> None:
    for quote in (price_at(t) for t in local_day(day)):
        local = quote.local_time
        hour = local.hour + local.minute / 60
        undiscounted = base_price_at_hour(hour)
        if 8 <= hour < 18:
            assert quote.energy_source == "solar"
            assert quote.price_per_kwh == round(undiscounted * 0.9, 4)
        else:
            assert quote.energy_source != "solar"
            assert quote.price_per_kwh == round(undiscounted, 4)


def test_grid_load_follows_the_undiscounted_curve() -> None:
    morning = price_at(datetime(2025, 7, 15, 7, 59, tzinfo=NEW_YORK))
    solar = price_at(datetime(2025, 7, 15, 8, 0, tzinfo=NEW_YORK))
    assert solar.price_per_kwh < morning.price_per_kwh  # the discount starts
    assert solar.grid_load > morning.grid_load  # the load keeps rising


def test_every_hour_of_the_day_has_exactly_the_documented_energy_source() -> None:
    expected = dict.fromkeys(range(24), "grid")
    expected.update(dict.fromkeys(range(8, 18), "solar"))
    expected.update(dict.fromkeys(range(18, 23), "wind"))
    for minute in range(24 * 60):
        assert energy_source_at_hour(minute / 60) == expected[minute // 60]
    assert set(expected.values()) == {"solar", "wind", "grid"}


@pytest.mark.parametrize("day", ORDINARY_DAYS, ids=str)
def test_the_price_moves_less_than_a_cent_a_minute_except_where_the_discount_changes(
    day: date,
) -> None:
    quotes = [price_at(t) for t in local_day(day)]
    assert [local_hhmm(b) for _, b in jumps(quotes)] == ["08:00", "18:00"]


def test_the_same_instant_gets_the_same_quote_whatever_offset_it_is_written_with() -> None:
    utc = datetime(2025, 7, 15, 21, 17, 3, 250_000, tzinfo=UTC)
    kolkata = utc.astimezone(timezone(timedelta(hours=5, minutes=30)))
    local = utc.astimezone(NEW_YORK)
    assert price_at(utc) == price_at(kolkata) == price_at(local) == price_at(utc)
    assert price_at(kolkata).at == utc
    assert price_at(kolkata).at.tzinfo is UTC


@settings(max_examples=200, deadline=None, database=None)
@given(
    instant=st.datetimes(
        min_value=datetime(1970, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
    ),
    offset_minutes=st.integers(min_value=-12 * 60, max_value=14 * 60),
)
def test_every_instant_gets_a_bounded_reproducible_quote(
    instant: datetime, offset_minutes: int
) -> None:
    quote = price_at(instant)
    assert 0.09 <= quote.price_per_kwh <= 0.40
    assert 0.0 <= quote.grid_load <= 1.0
    assert quote.energy_source in {"solar", "wind", "grid"}
    assert quote.currency == "USD"
    shifted = instant.astimezone(timezone(timedelta(minutes=offset_minutes)))
    assert price_at(shifted) == quote


def test_an_instant_without_a_utc_offset_is_refused_naming_at() -> None:
    with pytest.raises(InvalidField) as caught:
        price_at(datetime(2025, 7, 15, 18, 0))
    assert caught.value.field == "at"
    assert str(caught.value) == "at: must include a UTC offset"


def test_an_instant_beyond_the_calendar_is_refused_naming_at() -> None:
    with pytest.raises(InvalidField) as caught:
        price_at(datetime(9999, 12, 31, 23, 0, tzinfo=timezone(timedelta(hours=-5))))
    assert caught.value.field == "at"


def test_the_peak_follows_the_local_clock_across_daylight_saving_time() -> None:
    winter = price_at(datetime(2025, 1, 15, 23, 0, tzinfo=UTC))  # 18:00 EST
    summer = price_at(datetime(2025, 7, 15, 22, 0, tzinfo=UTC))  # 18:00 EDT
    assert (winter.price_per_kwh, local_hhmm(winter)) == (0.40, "18:00")
    assert (summer.price_per_kwh, local_hhmm(summer)) == (0.40, "18:00")


def test_the_spring_forward_day_skips_the_missing_hour_without_a_jump() -> None:
    minutes = local_day(SPRING_FORWARD)
    quotes = [price_at(t) for t in minutes]
    assert len(minutes) == 23 * 60
    assert not any(q.local_time.hour == 2 for q in quotes)
    assert [local_hhmm(b) for _, b in jumps(quotes)] == ["08:00", "18:00"]
    assert max(quotes, key=lambda q: q.price_per_kwh).local_time.hour == 18


def test_the_fall_back_day_repeats_the_01_00_hour_at_the_same_prices() -> None:
    minutes = local_day(FALL_BACK)
    quotes = [price_at(t) for t in minutes]
    assert len(minutes) == 25 * 60
    first = price_at(datetime(2025, 11, 2, 1, 30, tzinfo=NEW_YORK, fold=0))
    second = price_at(datetime(2025, 11, 2, 1, 30, tzinfo=NEW_YORK, fold=1))
    assert second.at - first.at == timedelta(hours=1)
    assert (first.price_per_kwh, first.grid_load) == (second.price_per_kwh, second.grid_load)
    # Besides the discount boundaries, the only step is the clock going back from
    # 01:59 EDT to 01:00 EST: from the trough back up to the 01:00 price.
    steps = [(local_hhmm(a), local_hhmm(b)) for a, b in jumps(quotes)]
    assert steps == [("01:59", "01:00"), ("07:59", "08:00"), ("17:59", "18:00")]
    clock_change = jumps(quotes)[0]
    assert clock_change[1].price_per_kwh - clock_change[0].price_per_kwh < 0.012


def test_the_forecast_starts_at_the_next_full_hour_and_steps_one_hour() -> None:
    start = datetime(2025, 7, 15, 13, 20, 5, tzinfo=UTC)
    quotes = forecast(start, 24)
    assert len(quotes) == 24
    assert quotes[0].at == datetime(2025, 7, 15, 14, 0, tzinfo=UTC)
    assert all(b.at - a.at == timedelta(hours=1) for a, b in zip(quotes, quotes[1:], strict=False))
    assert quotes == [price_at(q.at) for q in quotes]


def test_a_forecast_from_a_full_hour_starts_at_the_following_hour() -> None:
    start = datetime(2025, 7, 15, 14, 0, tzinfo=UTC)
    assert forecast(start, 1)[0].at == datetime(2025, 7, 15, 15, 0, tzinfo=UTC)


def test_forecast_hours_are_full_hours_of_the_tariffs_clock_in_a_half_hour_zone() -> None:
    kolkata = ZoneInfo("Asia/Kolkata")
    start = datetime(2025, 7, 15, 13, 20, tzinfo=UTC)  # 18:50 IST
    quotes = forecast(start, 3, kolkata)
    assert [local_hhmm(q) for q in quotes] == ["19:00", "20:00", "21:00"]
    assert quotes[0].at == datetime(2025, 7, 15, 13, 30, tzinfo=UTC)
    assert quotes[0].timezone == "Asia/Kolkata"


def test_a_forecast_over_the_fall_back_night_lists_the_repeated_hour_twice() -> None:
    start = datetime(2025, 11, 2, 0, 10, tzinfo=NEW_YORK)
    quotes = forecast(start, 4)
    assert [local_hhmm(q) for q in quotes] == ["01:00", "01:00", "02:00", "03:00"]
    assert quotes[0].price_per_kwh == quotes[1].price_per_kwh


def test_the_next_full_hour_after_spring_forward_is_03_00() -> None:
    start = datetime(2025, 3, 9, 1, 30, tzinfo=NEW_YORK)
    nxt = next_full_hour(start, NEW_YORK)
    assert nxt.astimezone(NEW_YORK).strftime("%H:%M") == "03:00"
    assert nxt - start == timedelta(minutes=30)


@pytest.mark.parametrize("hours", [0, -1, MAX_FORECAST_HOURS + 1])
def test_a_forecast_length_out_of_range_is_refused_naming_hours(hours: int) -> None:
    with pytest.raises(InvalidField) as caught:
        forecast(datetime(2025, 7, 15, tzinfo=UTC), hours)
    assert caught.value.field == "hours"


def test_a_forecast_running_off_the_calendar_is_refused_naming_at() -> None:
    with pytest.raises(InvalidField) as caught:
        forecast(datetime(9999, 12, 31, 20, 30, tzinfo=UTC), 10)
    assert caught.value.field == "at"


def test_an_unknown_time_zone_is_a_value_error_naming_the_zone() -> None:
    with pytest.raises(ValueError, match="Mars/Base"):
        tariff_zone("Mars/Base")
    with pytest.raises(ValueError, match="unknown IANA time zone"):
        tariff_zone("../etc/passwd")
