"""Planner settings from GREENLANE_* variables: defaults and start-up errors."""

from __future__ import annotations

import os

import pytest

from greenlane.core.errors import ConfigurationError
from greenlane.core.settings import DEV_TOKEN, load_settings
from greenlane.planner.settings import PlannerSettings


@pytest.fixture(autouse=True)
def no_greenlane_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("GREENLANE_")]:
        monkeypatch.delenv(name)


def test_the_defaults_are_port_8083_on_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GREENLANE_API_TOKENS", DEV_TOKEN)
    settings = load_settings(PlannerSettings)
    assert (settings.planner_host, settings.planner_port) == ("127.0.0.1", 8083)
    assert settings.planner_solve_time_limit_seconds == 10.0
    assert settings.planner_max_concurrent_solves == 2


def test_the_environment_moves_host_port_and_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GREENLANE_API_TOKENS", "one-token-0123456789,two-token-0123456789")
    monkeypatch.setenv("GREENLANE_PLANNER_HOST", "0.0.0.0")
    monkeypatch.setenv("GREENLANE_PLANNER_PORT", "9083")
    monkeypatch.setenv("GREENLANE_PLANNER_SOLVE_TIME_LIMIT_SECONDS", "2.5")
    monkeypatch.setenv("GREENLANE_PLANNER_MAX_CONCURRENT_SOLVES", "4")
    settings = load_settings(PlannerSettings)
    assert (settings.planner_host, settings.planner_port) == ("0.0.0.0", 9083)
    assert settings.planner_solve_time_limit_seconds == 2.5
    assert settings.planner_max_concurrent_solves == 4
    assert len(settings.api_tokens) == 2


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("GREENLANE_PLANNER_PORT", "70000"),
        ("GREENLANE_PLANNER_PORT", "http"),
        ("GREENLANE_PLANNER_HOST", ""),
        ("GREENLANE_PLANNER_SOLVE_TIME_LIMIT_SECONDS", "0"),
        ("GREENLANE_PLANNER_MAX_CONCURRENT_SOLVES", "0"),
        ("GREENLANE_API_TOKENS", "short"),
    ],
)
def test_a_bad_value_stops_start_up_naming_its_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv("GREENLANE_API_TOKENS", DEV_TOKEN)
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError, match=variable):
        load_settings(PlannerSettings)


def test_the_dev_token_is_refused_in_production(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GREENLANE_ENVIRONMENT", "production")
    monkeypatch.setenv("GREENLANE_API_TOKENS", DEV_TOKEN)
    with pytest.raises(ConfigurationError, match="GREENLANE_API_TOKENS"):
        load_settings(PlannerSettings)
