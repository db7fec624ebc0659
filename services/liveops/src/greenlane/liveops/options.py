"""The flags of `python -m greenlane.liveops` and `greenlane liveops`; where defaults come from."""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from greenlane.core import cliargs
from greenlane.core.auth import check_fleet
from greenlane.core.devenv import DEV_ENV_FILE, read_env_file
from greenlane.core.errors import ConfigurationError
from greenlane.core.events import CAR_ID_PATTERN, FLEET_EVENTS_TOPIC
from greenlane.core.settings import parse_host_ports

PROG: Final = "python -m greenlane.liveops"
DEFAULT_BOOTSTRAP: Final = "127.0.0.1:19092"
DEFAULT_GROUP: Final = "live-ops-cli"
DEFAULT_CONNECT_TIMEOUT_S: Final = 10.0
BOOTSTRAP_VARIABLE: Final = "GREENLANE_KAFKA_BOOTSTRAP_SERVERS"
TOPIC_VARIABLE: Final = "GREENLANE_FLEET_EVENTS_TOPIC"
TOPIC_PATTERN: Final = re.compile(r"[A-Za-z0-9._\-]{1,249}")
GROUP_PATTERN: Final = re.compile(r"[\x21-\x7e]{1,255}")  # printable, no spaces

DESCRIPTION: Final = (
    "Follow the fleet events live: one coloured line per event, a status line with "
    "events/s and fleet statistics on a terminal, or one JSON object per line (--json)."
)


@dataclass(frozen=True)
class Options:
    """Everything a feed needs, parsed and validated."""

    bootstrap_servers: str = DEFAULT_BOOTSTRAP
    bootstrap_source: str = "default"
    topic: str = FLEET_EVENTS_TOPIC
    group: str = DEFAULT_GROUP
    from_beginning: bool = False
    json: bool = False
    cars: frozenset[str] = field(default_factory=frozenset)
    fleets: frozenset[str] = field(default_factory=frozenset)
    below: float | None = None
    max_events: int | None = None
    duration: float | None = None
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT_S
    plans: bool = False  # also a line per charging_plan (the planner's)


# host:port[,host:port...], by the project's one rule.
check_bootstrap = parse_host_ports


def _car_id(text: str) -> str:
    if not CAR_ID_PATTERN.fullmatch(text):
        raise ValueError(f"{text!r} is not a car id (1 to 64 of A-Z a-z 0-9 _ . : -)")
    return text


def _topic(text: str) -> str:
    if not TOPIC_PATTERN.fullmatch(text):
        raise ValueError(f"{text!r} is not a topic name (1 to 249 of A-Z a-z 0-9 . _ -)")
    return text


def _group(text: str) -> str:
    if not GROUP_PATTERN.fullmatch(text):
        raise ValueError(f"{text!r} must be 1 to 255 printable characters without spaces")
    return text


# The argparse types of the feed and of `greenlane events`.
car_id_arg = cliargs.checked(_car_id)


def _fleet(text: str) -> str:
    return check_fleet(text, repr(text))


fleet_arg = cliargs.checked(_fleet)
positive_int_arg = cliargs.integer(1)
seconds_arg = cliargs.seconds()


def connection_arguments(parser: argparse.ArgumentParser) -> None:
    """--bootstrap-servers and --topic, whose defaults come from resolve_connection."""
    parser.add_argument(
        "--bootstrap-servers",
        type=cliargs.checked(check_bootstrap),
        metavar="HOST:PORT",
        help=f"Kafka brokers (default ${BOOTSTRAP_VARIABLE}, else {DEV_ENV_FILE} "
        f"if it exists, else {DEFAULT_BOOTSTRAP})",
    )
    parser.add_argument(
        "--topic",
        type=cliargs.checked(_topic),
        metavar="NAME",
        help=f"topic (default ${TOPIC_VARIABLE}, else {DEV_ENV_FILE}, else {FLEET_EVENTS_TOPIC})",
    )


def add_car_filter(parser: argparse.ArgumentParser, help_text: str) -> None:
    """--car ID (repeatable, into `cars`): only these cars' events."""
    parser.add_argument(
        "--car", dest="cars", action="append", type=car_id_arg, metavar="ID", help=help_text
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags, shared by `python -m greenlane.liveops` and `greenlane liveops`."""
    add = parser.add_argument
    add_car_filter(parser, "show only this car (repeat for several)")
    add(
        "--fleet",
        dest="fleets",
        action="append",
        type=fleet_arg,
        metavar="ID",
        help="show only the cars of this fleet: events whose `fleet` is ID (repeat for several)",
    )
    add(
        "--below",
        type=cliargs.percent,
        metavar="PCT",
        help="show only events with a battery below PCT percent (0 to 100)",
    )
    add(
        "--plans",
        action="store_true",
        help="also show the planner's charging plans, one line each (not counted as "
        "events; --car applies, --below does not)",
    )
    add(
        "--from-beginning",
        action="store_true",
        help="replay the topic from its first event (default: only new events)",
    )
    add(
        "--json",
        action="store_true",
        help="one JSON object per line on stdout, the event as received "
        "(no colours, no status line; for | jq)",
    )
    connection_arguments(parser)
    add(
        "--group",
        type=cliargs.checked(_group),
        default=DEFAULT_GROUP,
        metavar="NAME",
        help=f"consumer group the read positions are committed under (default {DEFAULT_GROUP})",
    )
    add("--max-events", type=positive_int_arg, metavar="N", help="exit after showing N events")
    add("--duration", type=seconds_arg, metavar="S", help="exit after S seconds")
    add(
        "--connect-timeout",
        type=seconds_arg,
        default=DEFAULT_CONNECT_TIMEOUT_S,
        metavar="S",
        help=f"give up when the broker is unreachable this long at start "
        f"(default {DEFAULT_CONNECT_TIMEOUT_S:g})",
    )


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=DESCRIPTION)
    add_arguments(parser)
    return parser


def connection_of(
    args: argparse.Namespace, environ: Mapping[str, str] | None, cwd: Path | None
) -> dict[str, str]:
    """The broker and topic options of parsed flags (--bootstrap-servers, --topic), as
    keyword arguments: bootstrap_servers, bootstrap_source, topic."""
    bootstrap, source, topic = resolve_connection(args.bootstrap_servers, args.topic, environ, cwd)
    return {"bootstrap_servers": bootstrap, "bootstrap_source": source, "topic": topic}


def resolve_connection(
    bootstrap_flag: str | None,
    topic_flag: str | None,
    environ: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> tuple[str, str, str]:
    """(bootstrap servers, where they came from, topic): the flag, else the variable,
    else `.greenlane/dev.env` in cwd, else the built-in default.

    A bad value from the environment or dev.env raises ConfigurationError naming it.
    """
    env = os.environ if environ is None else environ
    dev_env_path = (cwd or Path.cwd()) / DEV_ENV_FILE
    dev_env: dict[str, str] | None = None

    def lookup(flag: str | None, variable: str) -> tuple[str | None, str]:
        nonlocal dev_env
        if flag is not None:
            return flag, "flag"
        if env.get(variable):
            return env[variable], f"${variable}"
        if dev_env is None:
            dev_env = read_env_file(dev_env_path)
        if dev_env.get(variable):
            return dev_env[variable], str(dev_env_path)
        return None, "default"

    bootstrap, source = lookup(bootstrap_flag, BOOTSTRAP_VARIABLE)
    if bootstrap is None:
        bootstrap = DEFAULT_BOOTSTRAP
    elif source != "flag":
        try:
            bootstrap = check_bootstrap(bootstrap)
        except ValueError as exc:
            raise ConfigurationError(f"{BOOTSTRAP_VARIABLE} (from {source}): {exc}") from None
    topic, topic_source = lookup(topic_flag, TOPIC_VARIABLE)
    if topic is None:
        topic = FLEET_EVENTS_TOPIC
    elif topic_source != "flag":
        try:
            topic = _topic(topic)
        except ValueError as exc:
            raise ConfigurationError(f"{TOPIC_VARIABLE} (from {topic_source}): {exc}") from None
    return bootstrap, "--bootstrap-servers" if source == "flag" else source, topic


def options_from_args(
    args: argparse.Namespace,
    environ: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Options:
    """Turn parsed flags into Options; a bad environment value raises ConfigurationError."""
    return Options(
        **connection_of(args, environ, cwd),
        group=args.group,
        from_beginning=args.from_beginning,
        json=args.json,
        cars=frozenset(args.cars or ()),
        fleets=frozenset(args.fleets or ()),
        below=args.below,
        max_events=args.max_events,
        duration=args.duration,
        connect_timeout=args.connect_timeout,
        plans=args.plans,
    )


def parse_options(
    argv: Sequence[str] | None = None,
    environ: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Options:
    """Parse and validate the flags; a bad one exits 2 with argparse's message naming it."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return options_from_args(args, environ, cwd)
    except ConfigurationError as exc:
        parser.error(str(exc))
