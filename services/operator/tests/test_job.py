"""The Job manifest of a FleetSimulation: names, shares of the fleet, flags, resources."""

from __future__ import annotations

import re
from dataclasses import replace

from greenlane.operator.job import (
    MAX_JOB_NAME,
    SimulatorDefaults,
    build_job,
    car_prefix,
    job_name,
    label_value,
    run_args,
    simulator_args,
)
from greenlane.operator.settings import trace_env
from greenlane.operator.spec import parse_spec

DEFAULTS = SimulatorDefaults(
    image="greenlane-simulator:1.0.0",
    pull_policy="IfNotPresent",
    target="ingestion.greenlane.svc:50051",
    requests={"cpu": "100m", "memory": "128Mi"},
    limits={"cpu": "1", "memory": "512Mi"},
)
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def spec(**changes: object) -> object:
    values: dict[str, object] = {
        "cars": 10,
        "region": "sf",
        "tokenSecretRef": {"name": "tok"},
    }
    values.update(changes)
    return parse_spec(values)


def test_job_names_are_short_dns_labels_that_keep_long_names_apart() -> None:
    assert job_name("smoke", 3) == "smoke-g3"
    long_a = "a" * 200 + ".x"
    long_b = "a" * 200 + ".y"
    for name in (long_a, long_b, "with.dots.in-it", "-"):
        made = job_name(name, 12)
        assert len(made) <= MAX_JOB_NAME and DNS_LABEL.match(made), made
        assert made.endswith("-g12")
    assert job_name(long_a, 1) != job_name(long_b, 1)
    assert len(label_value("b" * 300)) <= 63
    assert len(car_prefix("c" * 300) + "-00000") <= 64


def flags_of(args: list[str]) -> dict[str, str]:
    """--flag value and --flag=value pieces as a dict (switches map to "")."""
    flags: dict[str, str] = {}
    pieces = iter(args)
    for piece in pieces:
        if "=" in piece:
            key, value = piece.split("=", 1)
            flags[key] = value
        elif piece in ("--json", "--no-progress"):
            flags[piece] = ""
        else:
            flags[piece] = next(pieces)
    return flags


def test_the_pods_flags_carry_the_spec_and_the_pods_shard() -> None:
    args = simulator_args("fleet", spec(parallelism=5, seed=3), DEFAULTS.target)  # type: ignore[arg-type]
    flags = flags_of(args)
    assert flags["--cars"] == "10"
    assert flags["--shard"] == "$(JOB_COMPLETION_INDEX)/5"
    assert flags["--bbox"] == "37.708,-122.515,37.812,-122.357"
    assert flags["--interval"] == "2.0"
    assert flags["--target"] == DEFAULTS.target
    assert flags["--seed"] == "3"
    assert "--duration" not in args  # runs until the FleetSimulation is deleted
    assert args[-2:] == ["--json", "--no-progress"]


def test_a_southern_or_narrow_box_reaches_the_simulator_exactly_and_parses() -> None:
    from greenlane.simulator.cli import build_parser

    box = {"south": -33.9501234, "west": 18.4, "north": -33.9501231, "east": 18.5}
    args = simulator_args("cape", spec(region=None, boundingBox=box), DEFAULTS.target)  # type: ignore[arg-type]
    flags = flags_of(args)
    assert [float(v) for v in flags["--bbox"].split(",")] == list(box.values())
    # The simulator reads the flags back (argparse would take a bare -33.95,… for an option).
    parsed = build_parser().parse_args(run_args("cape", spec(region=None, boundingBox=box)))  # type: ignore[arg-type]
    assert parsed.bbox == tuple(box.values())


def test_spec_resources_override_the_operators_defaults_one_by_one() -> None:
    job = build_job(
        name="fleet",
        namespace="ns",
        uid="u-1",
        generation=2,
        spec=spec(resources={"limits": {"memory": "2Gi"}}),  # type: ignore[arg-type]
        defaults=DEFAULTS,
    )
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["resources"] == {
        "requests": {"cpu": "100m", "memory": "128Mi"},
        "limits": {"cpu": "1", "memory": "2Gi"},
    }
    assert "activeDeadlineSeconds" not in job["spec"]
    assert job["metadata"]["labels"]["greenlane.io/generation"] == "2"


def test_simulator_pods_get_the_operators_tracing_settings_and_nothing_else_of_its_env() -> None:
    environ = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://greenlane-otel-collector:4317",
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "0.1",
        "GREENLANE_TRACE_RATIO": "0.05",
        "OTEL_SERVICE_NAME": "greenlane-operator",  # the operator's own name: not passed on
        "GREENLANE_API_TOKENS": "never-copied-into-a-job",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "",  # unset in effect
    }
    defaults = replace(DEFAULTS, env=trace_env(environ))
    job = build_job(
        name="traced", namespace="ns", uid="u1", generation=1, spec=spec(), defaults=defaults
    )
    (container,) = job["spec"]["template"]["spec"]["containers"]
    values = {e["name"]: e.get("value") for e in container["env"]}
    assert {k: v for k, v in values.items() if k.startswith(("OTEL_", "GREENLANE_TRACE"))} == {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://greenlane-otel-collector:4317",
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "0.1",
        "GREENLANE_TRACE_RATIO": "0.05",
    }
    assert values["GREENLANE_API_TOKENS"] is None  # still from the Secret, by reference
