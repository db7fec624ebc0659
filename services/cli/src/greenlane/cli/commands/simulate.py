"""`greenlane simulate`: the fleet simulator, or a FleetSimulation YAML run locally with -f.

Without -f every flag is the simulator's own (`python -m greenlane.simulator`).
With -f FILE the FleetSimulation's spec is validated by the operator's rules and
turned into the same simulator flags its Kubernetes Job would get, run in this
process against the embedded platform (or --target). Connection defaults:
--target, else $GREENLANE_INGESTION_ADDR, else .greenlane/dev.env, else
127.0.0.1:50051; --token, else $GREENLANE_API_TOKEN(S), else dev.env, else the
dev token.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any, Final

import yaml
from pydantic import SecretStr, ValidationError

from greenlane.core.devenv import DEV_ENV_FILE
from greenlane.core.errors import ConfigurationError
from greenlane.operator.job import run_args
from greenlane.operator.spec import FleetSimulationSpec, SpecError, parse_manifest
from greenlane.simulator.cli import build_parser as simulator_parser
from greenlane.simulator.cli import main as simulator_main
from greenlane.simulator.cli import parse_options
from greenlane.simulator.settings import SimulatorSettings

EXIT_USAGE: Final = 2
# Simulator flags that say *what* to simulate: with -f the file says it.
FROM_THE_FILE: Final = {
    "cars": "spec.cars",
    "interval": "spec.updateIntervalSeconds",
    "saturate": "spec.updateIntervalSeconds",
    "duration": "spec.durationSeconds",
    "seed": "spec.seed",
    "car_prefix": "metadata.name",
    "bbox": "spec.region / spec.boundingBox",
    "shard": "spec.parallelism",
}


def add_parser(subparsers: Any) -> None:
    # The simulator's own flags, so `greenlane simulate --help` lists them all.
    parser = subparsers.add_parser(
        "simulate",
        parents=[simulator_parser()],
        conflict_handler="resolve",
        help="run the fleet simulator, or a FleetSimulation YAML locally (-f)",
        description="Run the fleet simulator against ingestion. With -f, run the spec of a "
        "FleetSimulation resource (examples/fleetsimulation.yaml) locally, as the operator "
        "would in a cluster; the file then decides the fleet, the flags only where it goes.",
    )
    parser.add_argument(
        "-f",
        "--file",
        type=Path,
        metavar="FILE",
        help="a FleetSimulation YAML (apiVersion greenlane.io/v1alpha1) to run locally",
    )


def _as_argv(dest: str, value: object) -> str:
    """A parsed value written back the way its flag reads it (tuples as a,b or I/N)."""
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, tuple):
        return ("/" if dest == "shard" else ",").join(str(v) for v in value)
    return str(value)


def _given(args: argparse.Namespace, parser: argparse.ArgumentParser) -> dict[str, list[str]]:
    """The simulator flags set on the command line, as argv pieces by destination.

    argparse keeps parsed values only; parse_options() wants argv, so the flags are
    written back (a value equal to its default is dropped: it changes nothing).
    """
    given: dict[str, list[str]] = {}
    for action in parser._actions:  # noqa: SLF001 - argparse has no public listing
        if not action.option_strings or action.dest == "help":
            continue
        value = getattr(args, action.dest, None)
        if value is None or value == action.default:
            continue
        flag = action.option_strings[-1]
        if action.nargs == 0:
            given[action.dest] = [flag]
        else:
            # One piece: a value such as -33.9,18.4,… must not read as a flag.
            given[action.dest] = [f"{flag}={_as_argv(action.dest, value)}"]
    return given


def _settings() -> SimulatorSettings:
    """The environment, falling back to a running `greenlane dev`'s .greenlane/dev.env."""
    try:
        # pydantic-settings' env_file: a GREENLANE_ variable wins over the file.
        return SimulatorSettings(_env_file=DEV_ENV_FILE)  # type: ignore[call-arg]
    except ValidationError as exc:
        problems = "; ".join(
            f"GREENLANE_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigurationError(f"invalid configuration: {problems}") from None


def _load(path: Path) -> tuple[str, FleetSimulationSpec]:
    try:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    except OSError as exc:
        raise SpecError(str(path), f"cannot read it: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise SpecError(str(path), f"is not valid YAML: {exc}") from None
    sims = [d for d in docs if isinstance(d, dict) and d.get("kind") == "FleetSimulation"]
    if len(sims) != 1:
        raise SpecError(str(path), f"holds {len(sims)} FleetSimulations; -f runs exactly one")
    return parse_manifest(sims[0])


def _file_argv(
    args: argparse.Namespace, parser: argparse.ArgumentParser, given: dict[str, list[str]]
) -> list[str]:
    clashes = [dest for dest in given if dest in FROM_THE_FILE]
    if clashes:
        flags = ", ".join(given[d][0].split("=", 1)[0] for d in clashes)
        fields = ", ".join(FROM_THE_FILE[d] for d in clashes)
        raise SpecError(str(args.file), f"{flags}: with -f the file decides ({fields})")
    name, spec = _load(args.file)
    box = spec.bbox()
    where = spec.region or f"box {box.as_arg()}"
    duration = f"{spec.duration_seconds} s" if spec.duration_seconds else "until Ctrl+C"
    sys.stderr.write(
        f"FleetSimulation {name}: {spec.cars} cars in {where}, one update every "
        f"{spec.update_interval_seconds:g} s, {duration}"
        + (
            f" (parallelism {spec.parallelism} runs as this one process)"
            if spec.parallelism > 1
            else ""
        )
        + "\n"
    )
    # spec.target and spec.tokenSecretRef name cluster things: locally the connection
    # comes from the flags, the environment or dev.env (see the module docstring).
    argv = run_args(name, spec)
    for pieces in given.values():
        argv += pieces
    return argv


def main(args: argparse.Namespace) -> int:
    parser = simulator_parser()
    given = _given(args, parser)
    try:
        settings = _settings()
        argv = _file_argv(args, parser, given) if args.file else sum(given.values(), [])
    except (SpecError, ConfigurationError) as exc:
        sys.stderr.write(f"greenlane simulate: error: {exc}\n")
        return EXIT_USAGE
    try:
        options = parse_options(argv, settings)
    except SystemExit as exc:  # argparse already printed the message
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    return asyncio.run(simulator_main(options))
