"""Grid settings from GREENLANE_* variables: defaults and start-up errors."""

from __future__ import annotations

import os

import pytest

from greenlane.core.errors import ConfigurationError
from greenlane.core.settings import load_settings
from greenlane.grid.settings import GridSettings


@pytest.fixture(autouse=True)
def no_greenlane_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("GREENLANE_")]:
        monkeypatch.delenv(name)


def test_the_defaults_are_the_seeds_port_on_loopback_in_new_york_time() -> None:
    settings = load_settings(GridSettings)
    assert (settings.grid_host, settings.grid_port) == ("127.0.0.1", 8081)
    assert settings.tariff_timezone == "America/New_York"
    assert settings.tariff_zone.key == "America/New_York"


def test_the_environment_moves_host_port_and_time_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GREENLANE_GRID_HOST", "0.0.0.0")
    monkeypatch.setenv("GREENLANE_GRID_PORT", "9081")
    monkeypatch.setenv("GREENLANE_TARIFF_TIMEZONE", "Europe/Berlin")
    settings = load_settings(GridSettings)
    assert (settings.grid_host, settings.grid_port) == ("0.0.0.0", 9081)
    assert settings.tariff_zone.key == "Europe/Berlin"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("GREENLANE_TARIFF_TIMEZONE", "Mars/Olympus_Mons"),
        ("GREENLANE_TARIFF_TIMEZONE", "/etc/localtime"),
        ("GREENLANE_GRID_PORT", "70000"),
        ("GREENLANE_GRID_PORT", "http"),
        ("GREENLANE_GRID_HOST", ""),
    ],
)
def test_a_bad_value_stops_start_up_naming_its_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError, match=variable):
        load_settings(GridSettings)
