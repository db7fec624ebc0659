"""The compose runner's reading of the file (pure: no engine, no files but tmp_path)."""

from __future__ import annotations

from pathlib import Path

import pytest
from chart.helm import ROOT
from containers.compose_run import ComposeError, interpolate, load, merge, start_order


def test_interpolation_follows_compose_defaults_errors_and_escapes() -> None:
    env = {"SET": "value", "EMPTY": ""}
    assert interpolate("${SET} $SET ${UNSET:-d} ${EMPTY:-d} ${EMPTY-d} $$x", env) == (
        "value value d d  $x"
    )
    with pytest.raises(ComposeError, match="UNSET: say why"):
        interpolate("${UNSET:?say why}", env)
    with pytest.raises(ComposeError, match="EMPTY"):
        interpolate("${EMPTY:?}", env)


def test_a_later_file_merges_mappings_and_replaces_sequences() -> None:
    base = {"services": {"a": {"image": "x", "command": ["one"], "environment": {"K": "1"}}}}
    over = {"services": {"a": {"command": ["two"], "environment": {"L": "2"}}}}
    assert merge(base, over) == {
        "services": {"a": {"image": "x", "command": ["two"], "environment": {"K": "1", "L": "2"}}}
    }


def test_services_start_after_what_they_depend_on_and_a_cycle_is_refused() -> None:
    services = {"web": {"depends_on": {"db": {}}}, "db": {}, "job": {"depends_on": {"web": {}}}}
    assert start_order(services) == ["db", "web", "job"]
    with pytest.raises(ComposeError, match="cycle"):
        start_order({"a": {"depends_on": {"b": {}}}, "b": {"depends_on": {"a": {}}}})
    with pytest.raises(ComposeError, match="unknown services"):
        start_order({"a": {"depends_on": {"ghost": {}}}})


def test_a_key_the_runner_does_not_implement_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "compose.yaml"
    path.write_text("services:\n  a:\n    image: x\n    privileged: true\n")
    with pytest.raises(
        ComposeError, match=r"a: keys this runner does not implement: \['privileged'\]"
    ):
        load([path], {})


def test_the_runner_implements_every_key_compose_yaml_uses() -> None:
    model = load(
        [ROOT / "compose.yaml"],
        {"GREENLANE_API_TOKENS": "t" * 16, "GREENLANE_REDIS_PASSWORD": "p" * 16},
    )
    assert {"migrate", "grid", "ingestion", "pricing-worker", "simulator"} <= set(model["services"])
