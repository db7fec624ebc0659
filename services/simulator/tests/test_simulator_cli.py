"""Command-line flags: every bad value is refused with a message naming its flag."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import SecretStr

from greenlane.core.settings import DEV_TOKEN
from greenlane.simulator.cli import Options, parse_options, summary
from greenlane.simulator.config import FleetConfig
from greenlane.simulator.settings import SimulatorSettings
from greenlane.simulator.stats import Stats

SECRET = "a-token-that-must-never-leak"


def _settings(**values: object) -> SimulatorSettings:
    # Explicit values, so the environment of whoever runs the tests does not matter.
    base: dict[str, object] = {"ingestion_addr": None, "api_token": None, "api_tokens": []}
    base.update(values)
    return SimulatorSettings.model_validate(base)


def _parse(*argv: str, settings: SimulatorSettings | None = None) -> Options:
    return parse_options(list(argv), settings or _settings())


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--cars", "0"], "argument --cars: must be between 1 and 100000, got 0"),
        (["--cars", "100001"], "argument --cars: must be between 1 and 100000"),
        (["--cars", "ten"], "argument --cars: 'ten' is not an integer"),
        (["--interval", "-1"], "argument --interval: must be a finite number of seconds 0 or more"),
        (["--interval", "nan"], "argument --interval: must be a finite number"),
        (["--interval", "3601"], "argument --interval: must be at most 3600, got '3601'"),
        (
            ["--duration", "0"],
            "argument --duration: must be a finite number of seconds more than 0",
        ),
        (["--duration", "inf"], "argument --duration: must be a finite number"),
        (["--seed", "-3"], "argument --seed: must be between 0"),
        (["--target", "localhost"], "argument --target: 'localhost' is not HOST:PORT"),
        (["--target", "h:70000"], "argument --target: 'h:70000' is not HOST:PORT"),
        (["--target", "::1:50051"], "argument --target: '::1:50051': write an IPv6 host"),
        (["--token", "  "], "argument --token: must not be empty"),
        (["--batch-size", "0"], "argument --batch-size: must be between 1 and 10000"),
        (["--channels", "0"], "argument --channels: must be between 1 and 1000"),
        (["--max-in-flight", "1001"], "argument --max-in-flight: must be between 1 and 1000"),
        (["--car-prefix", "a b"], "argument --car-prefix: must be 1 to 50 characters of"),
        (["--car-prefix", "x" * 51], "argument --car-prefix: String should have at most 50"),
        (["--drain-timeout", "x"], "argument --drain-timeout: 'x' is not a number of seconds"),
        (["--log-level", "loud"], "argument --log-level: invalid choice: 'LOUD'"),
        (["--saturate", "--interval", "2"], "argument --saturate: not allowed with --interval > 0"),
        (["--shard", "4/4"], "argument --shard: '4/4' needs 0 <= INDEX < COUNT"),
        (["--shard", "1"], "argument --shard: '1' is not INDEX/COUNT"),
        (["--cars", "3", "--shard", "0/4"], "argument --shard: 4 slices of 3 cars leave some"),
        (["--bbox", "1,2,3"], "argument --bbox: '1,2,3' is not SOUTH,WEST,NORTH,EAST"),
        (["--bbox", "41,-74,40,-73"], "argument --bbox: '41,-74,40,-73' is not SOUTH,WEST"),
        (["--summary-file", "/no/such/dir/x.json"], "argument --summary-file: '/no/such/dir"),
        (["--charge-speedup", "0"], "argument --charge-speedup: must be in (0, 10000], got '0'"),
        (["--charge-speedup", "inf"], "argument --charge-speedup: must be in (0, 10000]"),
        (["--charge-below", "101"], "argument --charge-below: must be in [0, 100], got '101'"),
        (["--pack-kwh", "x"], "argument --pack-kwh: 'x' is not a number"),
        (["--initial-battery", "5"], "argument --initial-battery: '5' is not LOW,HIGH"),
        (["--initial-battery", "50,10"], "argument --initial-battery: '50,10' needs 0 <= LOW"),
        (["--initial-battery", "0,101"], "argument --initial-battery: '0,101' needs 0 <= LOW"),
        (["--max-charge-kw", "0"], "argument --max-charge-kw: must be in (0, 1000], got '0'"),
        (["--stop-minutes", "5"], "argument --stop-minutes: '5' is not LOW,HIGH minutes"),
        (["--stop-minutes", "0,3"], "argument --stop-minutes: '0,3' needs 0 < LOW <= HIGH"),
        (["--charge-target", "50,120"], "argument --charge-target: '50,120' needs 0 < LOW"),
        (["--depot", "x,1,2"], "argument --depot: 'x,1,2' is not STATION_ID,LAT,LON,KW"),
        (["--depot", "a b,40,-73,22"], "argument --depot: 'a b,40,-73,22': Value error, the dep"),
        (["--depot", "d,40,-73,0"], "the depot's connector power must be within (0, 1000]"),
        (["--depot", "d,91,-73,22"], "the depot's position must be within [-90, 90]"),
        (["--depot-share", "1.5"], "argument --depot-share: must be in [0, 1], got '1.5'"),
        (["--timezone", "Mars/Base"], "argument --timezone: 'Mars/Base' is not a known time"),
        (["--wat"], "unrecognized arguments: --wat"),
    ],
)
def test_a_bad_flag_exits_2_naming_the_flag(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        _parse(*argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_a_bad_token_flag_is_refused_without_echoing_it(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        _parse("--token", "bad\ttoken")
    err = capsys.readouterr().err
    assert "argument --token: must be printable ASCII" in err
    assert "bad" not in err.split("argument --token:")[1]


def test_the_defaults_are_a_small_fleet_every_two_seconds_on_the_dev_stack() -> None:
    config = _parse().config
    assert config.cars == 10
    assert config.interval == 2.0 and not config.saturating
    assert config.duration is None
    assert config.target == "127.0.0.1:50051"
    assert config.token.get_secret_value() == DEV_TOKEN
    assert (config.batch_size, config.max_in_flight, config.channel_count) == (1, 1, 1)


def test_every_flag_reaches_the_fleet_config() -> None:
    options = _parse(
        "--cars", "1200", "--interval", "0.5", "--duration", "30", "--seed", "7",
        "--target", "[::1]:6000", "--token", SECRET, "--batch-size", "50",
        "--channels", "4", "--max-in-flight", "8", "--car-prefix", "bench",
        "--drain-timeout", "1", "--json", "--no-progress", "--log-level", "debug",
    )  # fmt: skip
    config = options.config
    assert (config.cars, config.interval, config.duration, config.seed) == (1200, 0.5, 30.0, 7)
    assert config.target == "[::1]:6000"
    assert config.token.get_secret_value() == SECRET
    assert (config.batch_size, config.channel_count, config.max_in_flight) == (50, 4, 8)
    assert (config.car_prefix, config.drain_timeout) == ("bench", 1.0)
    assert options.json and not options.progress
    assert options.log_level == "DEBUG"


def test_the_operator_flags_reach_the_fleet_config(tmp_path: Path) -> None:
    options = _parse(
        "--cars", "10", "--shard", "3/4", "--bbox", "37.708,-122.515,37.812,-122.357",
        "--summary-file", str(tmp_path / "summary.json"),
    )  # fmt: skip
    config = options.config
    assert (config.shard_index, config.shard_count) == (3, 4)
    assert config.shard == range(8, 10)
    assert config.box.west == -122.515
    assert options.summary_file == tmp_path / "summary.json"
    assert summary(config, Stats(), "completed", None)["shard"] == "3/4"


def test_the_charging_flags_reach_the_fleet_config_and_default_to_real_time() -> None:
    config = _parse().config
    assert config.initial_battery == (20.0, 100.0)
    assert (config.charge_below, config.charge_speedup, config.pack_kwh) == (20.0, 1.0, 75.0)
    config = _parse(
        "--initial-battery", "5,25", "--charge-below", "30", "--charge-speedup", "50",
        "--pack-kwh", "100",
    ).config  # fmt: skip
    assert config.initial_battery == (5.0, 25.0)
    # The parsed value written back with str() parses the same.
    assert _parse("--initial-battery", str((5.0, 25.0))).config.initial_battery == (5.0, 25.0)
    assert (config.charge_below, config.charge_speedup, config.pack_kwh) == (30.0, 50.0, 100.0)
    assert (config.charging.pack_kwh, config.charging.speedup) == (100.0, 50.0)
    report = summary(config, Stats(), "completed", None)
    assert report["charge_speedup"] == 50.0
    assert report["charging_sessions_started"] == report["charging_sessions_finished"] == 0


def test_the_goal_and_depot_flags_reach_the_fleet_config() -> None:
    config = _parse().config
    assert (config.stop_minutes, config.charge_target) == ((20.0, 60.0), (70.0, 85.0))
    assert (config.depot, config.max_charge_kw) == (None, 150.0)
    assert config.timezone == "America/New_York"
    config = _parse(
        "--stop-minutes", "2,4", "--charge-target", "60,90", "--max-charge-kw", "22",
        "--depot", "depot-inwood,40.8677,-73.9212,22", "--depot-share", "0.5",
        "--timezone", "Europe/Paris",
    ).config  # fmt: skip
    assert (config.habits.stop_minutes, config.habits.target) == ((2.0, 4.0), (60.0, 90.0))
    assert config.charging.max_kw == 22.0
    assert config.depot_station is not None
    assert config.depot_station.station_id == "depot-inwood"
    assert config.depot_station.power_kw == 22.0
    assert (config.depot_share, config.timezone) == (0.5, "Europe/Paris")


def test_an_interval_of_zero_means_saturate() -> None:
    assert _parse("--interval", "0").config.saturating
    assert _parse("--saturate").config.saturating
    assert _parse("--saturate", "--interval", "0").config.interval == 0.0


def test_the_environment_gives_the_target_and_token_when_no_flag_does() -> None:
    env = _settings(ingestion_addr="ingest:50051", api_token=SECRET)
    config = _parse(settings=env).config
    assert config.target == "ingest:50051"
    assert config.token.get_secret_value() == SECRET


def test_the_first_of_the_server_tokens_is_used_without_a_client_token() -> None:
    env = _settings(api_tokens=f"{SECRET}, second-token-of-the-list")
    assert _parse(settings=env).config.token.get_secret_value() == SECRET


def test_flags_beat_the_environment() -> None:
    env = _settings(ingestion_addr="ingest:50051", api_token="from-the-environment")
    config = _parse("--target", "other:1", "--token", SECRET, settings=env).config
    assert config.target == "other:1"
    assert config.token.get_secret_value() == SECRET


def test_a_bad_address_in_the_environment_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GREENLANE_INGESTION_ADDR", "nowhere")
    with pytest.raises(SystemExit) as exit_info:
        parse_options([])
    assert exit_info.value.code == 2
    assert "GREENLANE_INGESTION_ADDR" in capsys.readouterr().err


def test_one_channel_serves_up_to_five_hundred_cars() -> None:
    assert FleetConfig(cars=500).channel_count == 1
    assert FleetConfig(cars=501).channel_count == 2
    assert FleetConfig(cars=3, channels=10).channel_count == 3


def test_the_summary_never_contains_the_token() -> None:
    config = FleetConfig(cars=2, token=SecretStr(SECRET))
    report = summary(config, Stats(), "completed", None)
    assert SECRET not in json.dumps(report)
    assert SECRET not in repr(config)
    assert report["result"] == "completed" and report["cars"] == 2
