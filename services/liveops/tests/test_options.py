"""Flags and defaults: a bad value exits 2 naming its flag; defaults: env, dev.env, built-ins."""

from __future__ import annotations

from pathlib import Path

import pytest

from greenlane.core.devenv import read_env_file
from greenlane.liveops.options import Options, parse_options


def _parse(*argv: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> Options:
    # An explicit environment and directory: whoever runs the tests does not matter.
    return parse_options(list(argv), env or {}, cwd or Path("/nonexistent-liveops-cwd"))


def test_the_defaults_follow_live_fleet_events_in_group_live_ops_cli() -> None:
    options = _parse()
    assert options == Options()
    assert options.bootstrap_servers == "127.0.0.1:19092"
    assert options.bootstrap_source == "default"
    assert options.topic == "fleet-events"
    assert options.group == "live-ops-cli"
    assert not options.from_beginning
    assert not options.json
    assert options.connect_timeout == 10.0


def test_every_flag_is_parsed() -> None:
    options = _parse(
        "--car",
        "car-1",
        "--car",
        "car-2",
        "--fleet",
        "acme",
        "--below",
        "20",
        "--from-beginning",
        "--json",
        "--bootstrap-servers",
        "kafka-1:9092, kafka-2:9092",
        "--topic",
        "fleet-events-test",
        "--group",
        "ops-alice",
        "--max-events",
        "5",
        "--duration",
        "2.5",
        "--connect-timeout",
        "1",
    )
    assert options == Options(
        bootstrap_servers="kafka-1:9092,kafka-2:9092",
        bootstrap_source="--bootstrap-servers",
        topic="fleet-events-test",
        group="ops-alice",
        from_beginning=True,
        json=True,
        cars=frozenset({"car-1", "car-2"}),
        fleets=frozenset({"acme"}),
        below=20.0,
        max_events=5,
        duration=2.5,
        connect_timeout=1.0,
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--below", "101"], "argument --below: must be a percentage from 0 to 100, got '101'"),
        (["--below", "-1"], "argument --below: must be a percentage from 0 to 100"),
        (["--below", "nan"], "argument --below: must be a percentage from 0 to 100"),
        (["--below", "low"], "argument --below: 'low' is not a number"),
        (["--car", "car 1"], "argument --car: 'car 1' is not a car id"),
        (["--car", "x" * 65], "argument --car: "),
        (["--fleet", "Acme"], "argument --fleet: 'Acme': must be 1 to 64 of a-z, 0-9"),
        (["--max-events", "0"], "argument --max-events: must be 1 or more, got 0"),
        (["--max-events", "many"], "argument --max-events: 'many' is not an integer"),
        (["--duration", "0"], "argument --duration: must be a finite number of seconds more"),
        (["--duration", "inf"], "argument --duration: must be a finite number of seconds"),
        (["--connect-timeout", "-2"], "argument --connect-timeout: must be a finite number"),
        (["--bootstrap-servers", "kafka"], "--bootstrap-servers: 'kafka' is not HOST:PORT"),
        (["--bootstrap-servers", "k:0"], "argument --bootstrap-servers: 'k:0' is not HOST:PORT"),
        (["--topic", "a/b"], "argument --topic: 'a/b' is not a topic name"),
        (["--group", "two words"], "argument --group: 'two words' must be 1 to 255"),
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


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        _parse("--help")
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--car", "--below", "--from-beginning", "--json", "--max-events", "--duration"):
        assert flag in out


def test_the_environment_gives_the_broker_and_topic(tmp_path: Path) -> None:
    env = {
        "GREENLANE_KAFKA_BOOTSTRAP_SERVERS": "10.0.0.1:9092",
        "GREENLANE_FLEET_EVENTS_TOPIC": "fleet-events-b",
    }
    _write_dev_env(tmp_path, "GREENLANE_KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:40000\n")
    options = _parse(env=env, cwd=tmp_path)
    assert options.bootstrap_servers == "10.0.0.1:9092"
    assert options.bootstrap_source == "$GREENLANE_KAFKA_BOOTSTRAP_SERVERS"
    assert options.topic == "fleet-events-b"


def test_a_running_greenlane_dev_is_found_through_its_dev_env(tmp_path: Path) -> None:
    _write_dev_env(
        tmp_path,
        "# Written by `greenlane dev`\n"
        "GREENLANE_REDIS_URL=redis://127.0.0.1:6379/0\n"
        "export GREENLANE_KAFKA_BOOTSTRAP_SERVERS='127.0.0.1:40000'\n",
    )
    options = _parse(cwd=tmp_path)
    assert options.bootstrap_servers == "127.0.0.1:40000"
    assert options.bootstrap_source == str(tmp_path / ".greenlane" / "dev.env")
    assert options.topic == "fleet-events"


def test_the_flag_wins_over_environment_and_dev_env(tmp_path: Path) -> None:
    _write_dev_env(tmp_path, "GREENLANE_KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:40000\n")
    env = {"GREENLANE_KAFKA_BOOTSTRAP_SERVERS": "10.0.0.1:9092"}
    options = _parse("--bootstrap-servers", "127.0.0.1:5", env=env, cwd=tmp_path)
    assert options.bootstrap_servers == "127.0.0.1:5"


def test_a_bad_environment_value_exits_2_naming_the_variable(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        _parse(env={"GREENLANE_KAFKA_BOOTSTRAP_SERVERS": "nohost"})
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "GREENLANE_KAFKA_BOOTSTRAP_SERVERS" in err
    assert "'nohost' is not HOST:PORT" in err


def test_a_bad_dev_env_value_names_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _write_dev_env(tmp_path, "GREENLANE_FLEET_EVENTS_TOPIC=bad topic\n")
    with pytest.raises(SystemExit):
        _parse(cwd=tmp_path)
    err = capsys.readouterr().err
    assert "GREENLANE_FLEET_EVENTS_TOPIC (from " in err
    assert "dev.env" in err


def test_the_dev_env_reader_tolerates_comments_blanks_and_quotes(tmp_path: Path) -> None:
    path = tmp_path / "dev.env"
    path.write_text('# comment\n\nA=1\nexport B="two"\nnot a setting\nC = 3 \n')
    assert read_env_file(path) == {"A": "1", "B": "two", "C": "3"}


def _write_dev_env(cwd: Path, text: str) -> None:
    (cwd / ".greenlane").mkdir()
    (cwd / ".greenlane" / "dev.env").write_text(text)
