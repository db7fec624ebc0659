"""Settings: defaults, variable names in errors, the database URL kept secret."""

from __future__ import annotations

import pytest

from greenlane.core.errors import ConfigurationError
from greenlane.core.settings import load_settings
from greenlane.pricing_worker.settings import PricingWorkerSettings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("GREENLANE_"):
            monkeypatch.delenv(name)


def test_defaults_follow_the_documented_contract() -> None:
    s = load_settings(PricingWorkerSettings)
    assert s.grid_url == "http://127.0.0.1:8081"
    assert s.pricing_group_id == "pricing-worker"
    assert s.metrics_port == 9102
    assert s.dlq_topic == "fleet-events.dlq"
    assert s.pricing_http_timeout_seconds == 5.0
    assert s.pricing_cache_max_age_seconds == 900.0
    assert s.pricing_pack_capacity_kwh == 75.0
    assert s.pricing_session_gap_seconds == 300.0


def test_the_dead_letter_topic_follows_the_events_topic_unless_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GREENLANE_FLEET_EVENTS_TOPIC", "events-x")
    assert load_settings(PricingWorkerSettings).dlq_topic == "events-x.dlq"
    monkeypatch.setenv("GREENLANE_PRICING_DLQ_TOPIC", "dead")
    assert load_settings(PricingWorkerSettings).dlq_topic == "dead"


def test_a_bad_database_url_names_its_variable_and_never_echoes_the_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GREENLANE_DATABASE_URL", "mysql://user:hunter2@db/x")
    with pytest.raises(ConfigurationError) as err:
        load_settings(PricingWorkerSettings)
    assert "GREENLANE_DATABASE_URL" in str(err.value)
    assert "hunter2" not in str(err.value)


def test_the_database_url_is_not_shown_by_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GREENLANE_DATABASE_URL", "postgresql://u:hunter2@db/greenlane")
    s = load_settings(PricingWorkerSettings)
    assert "hunter2" not in repr(s)
    assert s.database_url.get_secret_value().endswith("@db/greenlane")


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("GREENLANE_GRID_URL", "grid:8081"),
        ("GREENLANE_PRICING_BATCH_SIZE", "0"),
        ("GREENLANE_PRICING_HTTP_TIMEOUT_SECONDS", "0"),
        ("GREENLANE_PRICING_PACK_CAPACITY_KWH", "-75"),
        ("GREENLANE_PRICING_CURVE_REFRESH_SECONDS", "900"),
    ],
)
def test_an_unusable_value_stops_start_up_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError, match=variable):
        load_settings(PricingWorkerSettings)
