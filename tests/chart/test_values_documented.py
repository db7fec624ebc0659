"""Every value of every chart is documented (## @param) and typed by a strict schema."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from chart.helm import CHART, SUBCHARTS

CHARTS = [CHART, *SUBCHARTS]
PARAM = re.compile(r"^\s*## @param (\S+) \S")

# Objects typed by Kubernetes itself (affinity, tolerations, ...): free-form in the
# schema, checked strictly once rendered (test_chart.py). The umbrella chart's
# sub-chart sections are checked by the sub-charts' own strict schemas, and a
# sub-chart's "global" is the umbrella chart's to fill.
OPEN_OBJECTS = {
    "/affinity",
    "/tolerations/*",
    "/topologySpreadConstraints/*",
    "/metricsFrom/*",
    "/redis",
    "/redpanda",
    "/timescale",
    "/observability",
    "/global",
    "/global/networkPolicy",
}


def params(chart: Path) -> list[str]:
    text = (chart / "values.yaml").read_text()
    return [m.group(1) for line in text.splitlines() if (m := PARAM.match(line))]


def leaves(values: Any, documented: set[str], prefix: str = "") -> Iterator[str]:
    """Paths a user sets: scalars, lists, empty maps, and objects documented as a whole."""
    if isinstance(values, dict) and values and prefix not in documented:
        for key, value in values.items():
            yield from leaves(value, documented, f"{prefix}.{key}" if prefix else str(key))
    else:
        yield prefix


def exists(values: Any, path: str) -> bool:
    node = values
    for key in path.split("."):
        if not isinstance(node, dict) or key not in node:
            return False
        node = node[key]
    return True


@pytest.mark.parametrize("chart", CHARTS, ids=lambda p: p.name)
def test_every_value_has_a_param_line(chart: Path) -> None:
    values = yaml.safe_load((chart / "values.yaml").read_text())
    documented = set(params(chart))
    undocumented = [p for p in leaves(values, documented) if p not in documented]
    assert undocumented == []


@pytest.mark.parametrize("chart", CHARTS, ids=lambda p: p.name)
def test_every_param_line_names_a_value_that_exists(chart: Path) -> None:
    values = yaml.safe_load((chart / "values.yaml").read_text())
    found = params(chart)
    assert [p for p in found if not exists(values, p)] == []
    assert len(found) == len(set(found)), "a value is documented twice"


def test_the_documentation_check_notices_an_undocumented_value() -> None:
    values = {"a": {"b": 1, "c": {}}, "d": [1]}
    assert [p for p in leaves(values, {"a.b", "d"}) if p not in {"a.b", "d"}] == ["a.c"]


def object_schemas(schema: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """(path, schema) of every object schema, definitions included; * is an array item."""
    if not isinstance(schema, dict):
        return
    if schema.get("type") == "object" or "properties" in schema:
        yield path, schema
    for name, sub in (schema.get("properties") or {}).items():
        yield from object_schemas(sub, f"{path}/{name}")
    for name, sub in (schema.get("definitions") or {}).items():
        yield from object_schemas(sub, f"#{name}")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from object_schemas(schema["additionalProperties"], f"{path}/*")
    if isinstance(schema.get("items"), dict):
        yield from object_schemas(schema["items"], f"{path}/*")


def _refers_to_closed(schema: dict[str, Any], node: dict[str, Any]) -> bool:
    """allOf: [{$ref: #/definitions/x}] where x refuses unknown keys (a shared definition)."""
    for part in node.get("allOf") or []:
        ref = str(part.get("$ref", ""))
        target = (schema.get("definitions") or {}).get(ref.removeprefix("#/definitions/"))
        if (
            ref.startswith("#/definitions/")
            and target
            and target.get("additionalProperties") is False
        ):
            return True
    return False


def loose(schema: dict[str, Any]) -> list[str]:
    found = []
    for path, node in object_schemas(schema):
        closed = node.get("additionalProperties") is False or _refers_to_closed(schema, node)
        is_map = isinstance(node.get("additionalProperties"), dict) and "properties" not in node
        if not (closed or is_map) and not any(path.endswith(o) for o in OPEN_OBJECTS):
            found.append(path or "/")
    return found


@pytest.mark.parametrize("chart", CHARTS, ids=lambda p: p.name)
def test_every_object_in_the_schema_refuses_unknown_keys(chart: Path) -> None:
    schema = json.loads((chart / "values.schema.json").read_text())
    assert loose(schema) == []


def test_the_strictness_check_notices_an_open_object() -> None:
    schema = {
        "type": "object",
        "additionalProperties": False,
        "properties": {"image": {"type": "object", "properties": {"tag": {"type": "string"}}}},
    }
    assert loose(schema) == ["/image"]


@pytest.mark.parametrize("chart", CHARTS, ids=lambda p: p.name)
def test_the_schema_requires_every_top_level_value(chart: Path) -> None:
    schema = json.loads((chart / "values.schema.json").read_text())
    values = yaml.safe_load((chart / "values.yaml").read_text())
    assert set(values) <= set(schema["properties"])
    assert set(schema["required"]) <= set(values)
