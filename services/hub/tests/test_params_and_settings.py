"""Input checks of the hub's edge and settings: each refusal names the field."""

from __future__ import annotations

import pytest

from greenlane.core.errors import ConfigurationError
from greenlane.core.settings import load_settings
from greenlane.hub.app import ParameterError, parse_ws_params
from greenlane.hub.settings import HubSettings


def test_since_and_epoch_are_read_from_the_websocket_url() -> None:
    assert parse_ws_params({}) == (None, None)
    assert parse_ws_params({"since": ["42"], "epoch": ["ab12"]}) == (42, "ab12")


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"since": ["-1"]}, "since"),
        ({"since": ["1e3"]}, "since"),
        ({"since": ["99999999999999999"]}, "since"),
        ({"since": ["1", "2"]}, "since"),
        ({"epoch": ["XYZ"]}, "epoch"),
        ({"token": ["secret"]}, "token"),
    ],
)
def test_a_bad_websocket_parameter_is_refused_by_name(
    params: dict[str, list[str]], field: str
) -> None:
    with pytest.raises(ParameterError) as caught:
        parse_ws_params(params)
    assert caught.value.parameter == field


def test_the_hub_listens_on_8090_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GREENLANE_API_TOKENS", "greenlane-secret-token")
    settings = load_settings(HubSettings)
    assert (settings.hub_port, settings.hub_frame_ms, settings.database_url) == (8090, 250, None)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("GREENLANE_HUB_PORT", "70000"),
        ("GREENLANE_HUB_FRAME_MS", "5"),
        ("GREENLANE_MAP_STYLE_URL", "ftp://tiles"),
        ("GREENLANE_TARIFF_TIMEZONE", "Mars/Olympus"),
        ("GREENLANE_DATABASE_URL", "mysql://x"),
        ("GREENLANE_API_TOKENS", ""),
    ],
)
def test_a_bad_setting_stops_the_hub_naming_its_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv("GREENLANE_API_TOKENS", "greenlane-secret-token")
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError) as caught:
        load_settings(HubSettings)
    assert variable in str(caught.value)


def test_the_dev_token_is_refused_outside_development(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GREENLANE_ENVIRONMENT", "production")
    monkeypatch.setenv("GREENLANE_API_TOKENS", "greenlane-secret-token")
    with pytest.raises(ConfigurationError, match="GREENLANE_API_TOKENS"):
        load_settings(HubSettings)
