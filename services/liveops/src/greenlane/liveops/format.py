"""How one fleet event looks in the terminal: pure functions from an event to a rich Text."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, tzinfo
from decimal import ROUND_FLOOR, Decimal
from typing import TYPE_CHECKING, Any, Final

from rich.text import Text

if TYPE_CHECKING:  # stats imports the thresholds from here
    from greenlane.liveops.stats import Snapshot

# Battery thresholds of the seed: green above 50 %, yellow from 20 % to 50 % inclusive,
# red below 20 %, and the CRITICAL BATTERY! flag below 15 %.
GREEN_ABOVE: Final = 50.0
RED_BELOW: Final = 20.0
CRITICAL_BELOW: Final = 15.0

CAR_ID_WIDTH: Final = 10  # the seed's "CAR-001   ": longer ids push the line, shorter are padded
CRITICAL_FLAG: Final = "⚠️  CRITICAL BATTERY!"
# The seed's status dot for each battery band, and a pin for the other event types.
BAND_DOTS: Final = {"green": "🟢", "yellow": "🟡", "red": "🔴"}
EVENT_MARK: Final = "📍"
SEPARATOR: Final = " | "
PLAN_MARK: Final = "⚡"
BOOKING_STYLE: Final = "cyan"
PLAN_STYLE: Final = "magenta"
WARNING_STYLE: Final = "dim"


def battery_style(pct: float) -> str:
    """The colour of a battery level: green > 50, yellow 20–50, red < 20."""
    if pct > GREEN_ABOVE:
        return "green"
    if pct >= RED_BELOW:
        return "yellow"
    return "red"


def is_critical(pct: float) -> bool:
    return pct < CRITICAL_BELOW


def percent_text(pct: float) -> str:
    """One decimal, truncated: 19.99 reads 19.9 %, so the number never contradicts its colour
    or the critical flag at the 15 and 20 thresholds (rounding would print 20.0 in red).
    """
    # Decimal of the shortest repr: exact, where math.floor(pct * 10) can be off by one ulp.
    tenths = Decimal(repr(pct)).quantize(Decimal("0.1"), rounding=ROUND_FLOOR)
    return f"{tenths:5.1f}%"


def clock(ms: int, tz: tzinfo | None = None) -> str:
    """[HH:MM:SS] of a Unix-millisecond instant (local time unless tz is given), as the seed."""
    try:
        moment = datetime.fromtimestamp(ms // 1000, tz)  # integer seconds: never rounded up
    except (ValueError, OverflowError, OSError):
        # A timestamp far outside the calendar (events are checked for sign, not range).
        return "[??:??:??]"
    return f"[{moment:%H:%M:%S}]"


def event_label(event_type: str) -> str:
    """booking_created -> BOOKING CREATED."""
    return event_type.replace("_", " ").upper()


def format_event(event: Mapping[str, Any], *, tz: tzinfo | None = None) -> Text:
    """One line per validated event, the seed's format (see README)::

    [20:15:32] 🟢 CAR-001    | Battery:  85.3% | Location: (40.7234, -73.9876) | Speed: 45.2 km/h
    """
    line = Text(no_wrap=True, overflow="ignore")
    line.append(clock(int(event["timestamp"]), tz))
    event_type = str(event.get("event_type", "telemetry"))
    station = str(event.get("station_id") or "")
    car = str(event["car_id"]).ljust(CAR_ID_WIDTH)
    if event_type != "telemetry":
        line.append(f" {EVENT_MARK} {car}{SEPARATOR}")
        start = len(line)
        line.append(event_label(event_type))
        if station:
            line.append(f"{SEPARATOR}Station: {station}")
        line.stylize(BOOKING_STYLE, start, len(line))
        return line
    battery = float(event["battery"])
    style = battery_style(battery)
    line.append(" ")
    line.append(BAND_DOTS[style])
    line.append(f" {car}{SEPARATOR}Battery: ")
    # Width 5 keeps the columns aligned from "  0.0%" to "100.0%".
    line.append(percent_text(battery), style=style)
    line.append(
        f"{SEPARATOR}Location: ({float(event['lat']):.4f}, {float(event['lon']):.4f})"
        f"{SEPARATOR}Speed: {float(event['velocity']):.1f} km/h"
    )
    if station:
        line.append(f"{SEPARATOR}Charging at {station}")
    if is_critical(battery):
        line.append(" ")
        line.append(CRITICAL_FLAG, style="bold red")
    return line


def _number(data: Mapping[str, Any], name: str) -> float:
    value = data.get(name)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def format_plan(plan: Mapping[str, Any], *, tz: tzinfo | None = None) -> Text:
    """One line per charging plan (greenlane liveops --plans)::

    [06:43:12] ⚡ car-00014  | PLAN at lower-east (mh-005) | now 106.2 kW until [06:44:12]
    | 1.769 kWh, $0.2893 | goal met
    """
    line = Text(no_wrap=True, overflow="ignore")
    line.append(clock(int(_number(plan, "timestamp")), tz))
    car = str(plan.get("car_id", "")).ljust(CAR_ID_WIDTH)
    line.append(f" {PLAN_MARK} {car}{SEPARATOR}")
    start = len(line)
    line.append(f"PLAN at {plan.get('site_id', '?')} ({plan.get('station_id', '?')})")
    kw = _number(plan, "setpoint_kw")
    now = "wait" if kw <= 0 else f"{kw:.1f} kW"
    line.append(f"{SEPARATOR}now {now} until {clock(int(_number(plan, 'setpoint_until')), tz)}")
    line.append(
        f"{SEPARATOR}{_number(plan, 'expected_kwh'):.3f} kWh, ${_number(plan, 'expected_cost'):.4f}"
    )
    if plan.get("feasible", True) is True:
        line.append(f"{SEPARATOR}goal met")
    else:
        line.append(
            f"{SEPARATOR}short {_number(plan, 'shortfall_kwh'):.3f} kWh: {plan.get('reason', '')}"
        )
    line.stylize(PLAN_STYLE, start, len(line))
    return line


def plain_line(event: Mapping[str, Any], *, tz: tzinfo | None = None) -> str:
    """The line without colours: what a pipe or a log file receives."""
    return format_event(event, tz=tz).plain


def _one_line(text: str, limit: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def format_invalid(
    timestamp_ms: int,
    partition: int,
    offset: int,
    key: bytes | None,
    error: str,
    *,
    tz: tzinfo | None = None,
) -> Text:
    """A dim one-line warning for a message that is not a valid fleet event."""
    shown_key = "-" if key is None else _one_line(key.decode("utf-8", "replace"), 64)
    where = f"partition {partition} offset {offset} key {shown_key}"
    return Text(
        f"{clock(timestamp_ms, tz)} skipped invalid message ({where}): {_one_line(error, 200)}",
        style=WARNING_STYLE,
        no_wrap=True,
        overflow="ignore",
    )


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} %"


def status_text(snap: Snapshot) -> Text:
    """The bottom status line: rate, totals and the fleet picture, one line."""
    line = Text(no_wrap=True, overflow="ellipsis")
    line.append(f"{snap.rate:,.1f} events/s", style="bold")
    line.append(f"  events {snap.events:,}")
    if snap.shown != snap.events:
        line.append(f" (shown {snap.shown:,})")
    line.append(f"  cars {snap.cars:,}")
    line.append(f"  below 20 % {snap.below_20:,}", style="red" if snap.below_20 else "")
    line.append(f"  critical {snap.critical:,}", style="bold red" if snap.critical else "")
    line.append(f"  avg battery {_percent(snap.average_battery)}")
    line.append(f"  charging {snap.charging:,}")
    if snap.lag is not None:
        line.append(f"  lag {snap.lag:,}")
    if snap.invalid:
        line.append(f"  invalid {snap.invalid:,}", style="yellow")
    return line


def summary_line(snap: Snapshot, reason: str) -> str:
    """The last line on stderr: why the feed stopped and what it saw."""
    return (
        f"liveops: {reason} after {snap.elapsed_s:.1f} s: events {snap.events:,}"
        f" (shown {snap.shown:,}, invalid skipped {snap.invalid:,}), cars {snap.cars:,},"
        f" below 20 % {snap.below_20:,}, critical {snap.critical:,},"
        f" charging {snap.charging:,}, avg battery {_percent(snap.average_battery)}"
    )


def session_statistics(snap: Snapshot) -> list[str]:
    """The seed's session statistics, printed when the feed ends: events, duration, rate."""
    rate = snap.events / snap.elapsed_s if snap.elapsed_s > 0 else 0.0
    return [
        "📊 Session Statistics:",
        f"   Total events: {snap.events:,}",
        f"   Duration: {snap.elapsed_s:.1f}s",
        f"   Events/sec: {rate:,.1f}",
    ]
