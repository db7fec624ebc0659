"""The argparse types every command shares: what each accepts and the rule it names."""

from __future__ import annotations

import argparse
from datetime import UTC, date, datetime

import pytest
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from greenlane.core import cliargs


def refused(parse: object, text: str) -> str:
    with pytest.raises(argparse.ArgumentTypeError) as info:
        parse(text)  # type: ignore[operator]
    return str(info.value)


def test_integers_name_their_range_whichever_bound_they_break() -> None:
    assert cliargs.integer(1, 10)("7") == 7
    assert refused(cliargs.integer(1, 10), "0") == "must be between 1 and 10, got 0"
    assert refused(cliargs.integer(1), "0") == "must be 1 or more, got 0"
    assert refused(cliargs.integer(high=5), "6") == "must be at most 5, got 6"
    assert refused(cliargs.integer(1), "1.5") == "'1.5' is not an integer"


def test_numbers_are_finite_and_within_their_interval() -> None:
    assert cliargs.number(0, 100)("100") == 100.0
    assert refused(cliargs.number(0, 100), "101") == "must be in [0, 100], got '101'"
    assert refused(cliargs.number(0, 10, low_open=True), "0") == "must be in (0, 10], got '0'"
    assert refused(cliargs.number(0, 10), "nan").startswith("must be in [0, 10]")
    assert refused(cliargs.number(), "ten") == "'ten' is not a number"


def test_seconds_are_finite_positive_and_bounded() -> None:
    assert cliargs.seconds()("2.5") == 2.5
    assert cliargs.seconds(zero=True)("0") == 0.0
    assert refused(cliargs.seconds(), "0") == (
        "must be a finite number of seconds more than 0, got '0'"
    )
    assert refused(cliargs.seconds(zero=True), "inf").startswith(
        "must be a finite number of seconds 0 or more"
    )
    assert refused(cliargs.seconds(most=60), "61") == "must be at most 60, got '61'"
    assert refused(cliargs.seconds(), "soon") == "'soon' is not a number of seconds"


def test_percentages_ports_and_calendar_values() -> None:
    assert cliargs.percent("15") == 15.0
    assert refused(cliargs.percent, "101") == "must be a percentage from 0 to 100, got '101'"
    assert cliargs.port("0") == 0 and cliargs.port("65535") == 65535
    assert refused(cliargs.port, "65536") == "'65536' is not a TCP port (0-65535)"
    assert refused(cliargs.port, "٣") == "'٣' is not a TCP port (0-65535)"  # a digit, not ASCII
    assert cliargs.iso_datetime("2026-05-01T14:00:00") == datetime(2026, 5, 1, 14, tzinfo=UTC)
    assert cliargs.iso_date("2026-02-28") == date(2026, 2, 28)
    assert "is not a date" in refused(cliargs.iso_date, "2026-02-30")


def test_a_value_error_becomes_the_flags_message() -> None:
    def even(text: str) -> int:
        if int(text) % 2:
            raise ValueError(f"{text} is odd")
        return int(text)

    assert cliargs.checked(even)("4") == 4
    assert refused(cliargs.checked(even), "3") == "3 is odd"


class Config(BaseModel):
    model_config = ConfigDict(hide_input_in_errors=True)

    cars: int = Field(1, ge=1, le=500)
    interval: float = Field(2.0, ge=0.0, le=60.0)
    timeout: float = Field(1.0, gt=0.0)
    speedup: float = Field(1.0, gt=0.0, le=100.0)
    token: SecretStr = SecretStr("x")
    name: str = "car"

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if " " in value:
            raise ValueError("must not contain spaces")
        return value


def test_flags_take_their_bounds_from_the_model_field() -> None:
    assert cliargs.field_bounds(Config, "cars") == cliargs.Bounds(1.0, False, 500.0)
    cars = cliargs.for_field(Config, "cars", kind="integer")
    assert cars("500") == 500
    assert refused(cars, "501") == "must be between 1 and 500, got 501"
    interval = cliargs.for_field(Config, "interval", kind="seconds")
    assert interval("0") == 0.0
    assert refused(interval, "61") == "must be at most 60, got '61'"
    timeout = cliargs.for_field(Config, "timeout", kind="seconds")
    assert refused(timeout, "0").endswith("more than 0, got '0'")
    speedup = cliargs.for_field(Config, "speedup")
    assert refused(speedup, "0") == "must be in (0, 100], got '0'"


def test_a_flag_can_run_the_models_own_validator_without_echoing_a_secret() -> None:
    name = cliargs.validated_by(Config, "name")
    assert name("car-7") == "car-7"
    assert refused(name, "a b") == "must not contain spaces"
    token = cliargs.validated_by(Config, "token")
    assert token("s3cret").get_secret_value() == "s3cret"
