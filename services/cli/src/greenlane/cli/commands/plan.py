"""`greenlane plan site SITE_ID` and `greenlane plan car CAR_ID`: the planner's live plans.

Both ask the planner's API (GET /api/sites/{id}/schedule, GET /api/plans/{id}) and print
a table, or the API's JSON with --json.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.table import Table

from greenlane.core import cliargs
from greenlane.core.devenv import lookup
from greenlane.core.events import CAR_ID_PATTERN
from greenlane.core.settings import DEV_TOKEN

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
DEFAULT_URL = "http://127.0.0.1:8083"
MAX_SLOTS_SHOWN = 2016


def _ident(text: str) -> str:
    if not CAR_ID_PATTERN.fullmatch(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not an id (1 to 64 of A-Z a-z 0-9 _ . : -)")
    return text


def add_parser(sub: Any) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--planner-url",
        metavar="URL",
        help=f"the planner's API (default $GREENLANE_PLANNER_URL, else .greenlane/dev.env, "
        f"else {DEFAULT_URL})",
    )
    common.add_argument("--json", action="store_true", help="print the API's JSON")
    common.add_argument(
        "--slots",
        type=cliargs.integer(1, MAX_SLOTS_SHOWN),
        default=24,
        metavar="N",
        help="show the first N slots of the plan (default 24)",
    )
    parser = sub.add_parser(
        "plan",
        help="the planner's live plans (a site's schedule, a car's plan)",
        description="Ask the planner for the current joint plan of a site, slot by slot, or "
        "for one car's plan (docs/planner.md). The token is $GREENLANE_API_TOKEN (else the "
        "one in .greenlane/dev.env).",
    )
    kinds = parser.add_subparsers(dest="kind", required=True, metavar="WHAT")
    site = kinds.add_parser(
        "site", parents=[common], help="a site's schedule: kW per car per slot, limit, price"
    )
    site.add_argument("site_id", type=_ident, metavar="SITE_ID")
    car = kinds.add_parser("car", parents=[common], help="one car's plan and its setpoint now")
    car.add_argument("car_id", type=_ident, metavar="CAR_ID")


class PlannerError(Exception):
    """The planner did not answer with a plan; the message says why."""


def fetch(url: str, path: str, token: str) -> dict[str, Any]:
    """GET one of the planner's resources; PlannerError with its problem's detail."""
    request = urllib.request.Request(  # noqa: S310 - a URL the user gave
        url.rstrip("/") + path, headers={"x-api-token": token, "accept": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:  # noqa: S310
            body: dict[str, Any] = json.load(resp)
            return body
    except urllib.error.HTTPError as exc:
        try:
            detail = json.load(exc).get("detail") or exc.reason
        except ValueError:
            detail = exc.reason
        raise PlannerError(f"the planner answered {exc.code}: {detail}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise PlannerError(f"the planner at {url} did not answer: {reason}") from None


def _clock(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000).strftime("%H:%M")


def site_table(schedule: dict[str, Any], slots: int) -> tuple[str, Table]:
    """The site's heading line and its table (a title would wrap to the table's width)."""
    cars = [c["car_id"] for c in schedule["car_plans"]]
    heading = (
        f"site {schedule['site_id']} ({schedule['name']}): {len(cars)} cars, "
        f"${schedule['expected_cost']:.4f} planned, ${schedule['full_power_cost']:.4f} at full "
        f"power on arrival; {schedule['slot_minutes']}-minute slots"
    )
    table = Table()
    table.add_column("slot")
    table.add_column("$/kWh", justify="right")
    table.add_column("limit kW", justify="right")
    table.add_column("site kW", justify="right")
    for car in cars:
        table.add_column(car, justify="right")
    for slot in schedule["slots"][:slots]:
        table.add_row(
            _clock(slot["start"]),
            f"{slot['price']:.4f}",
            f"{slot['limit_kw']:.1f}",
            f"{slot['site_kw']:.1f}",
            *(f"{slot['cars'].get(car, 0.0):.1f}" for car in cars),
        )
    return heading, table


def car_table(plan: dict[str, Any], slots: int) -> tuple[str, Table]:
    """The car's heading line (energy, cost, goal, setpoint now) and its slots."""
    start, minutes = int(plan["start"]), int(plan["slot_minutes"])
    goal = (
        "met" if plan["feasible"] else f"short {plan['shortfall_kwh']:.3f} kWh ({plan['reason']})"
    )
    now = "-" if plan.get("setpoint_kw") is None else f"{plan['setpoint_kw']:.1f} kW"
    heading = (
        f"car {plan['car_id']} at {plan['site_id']} ({plan['station_id']}, {plan['state']}): "
        f"{plan['expected_kwh']:.3f} kWh for ${plan['expected_cost']:.4f} "
        f"(full power on arrival ${plan['full_power_cost']:.4f}); goal {goal}; now {now}"
    )
    table = Table()
    table.add_column("slot")
    table.add_column("kW", justify="right")
    for t, kw in enumerate(plan["power_kw"][:slots]):
        table.add_row(_clock(start + t * minutes * 60_000), f"{kw:.1f}")
    return heading, table


def main(args: argparse.Namespace) -> int:
    console = Console()
    url = args.planner_url or lookup("GREENLANE_PLANNER_URL", DEFAULT_URL)
    token = lookup("GREENLANE_API_TOKEN", DEV_TOKEN)
    if args.kind == "site":
        path = f"/api/sites/{urllib.parse.quote(args.site_id)}/schedule"
    else:
        path = f"/api/plans/{urllib.parse.quote(args.car_id)}"
    try:
        body = fetch(url, path, token)
    except PlannerError as exc:
        console.print(f"[red]error:[/red] {exc}", highlight=False)
        return EXIT_FAILED
    if args.json:
        sys.stdout.write(json.dumps(body) + "\n")
        return EXIT_OK
    heading, table = (site_table if args.kind == "site" else car_table)(body, args.slots)
    console.print(heading, soft_wrap=True, highlight=False, markup=False)
    console.print(table)
    total = len(body["slots"] if args.kind == "site" else body["power_kw"])
    if total > args.slots:
        console.print(f"[dim]{total - args.slots} more slots: --slots {total}[/dim]")
    return EXIT_OK
