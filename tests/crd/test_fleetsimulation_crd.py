"""The FleetSimulation CRD is valid, accepts every example, refuses the broken specs below.

The API server's checks are replayed here: the openAPIV3Schema with jsonschema
(plus `additionalProperties: false`, as kubectl's strict field validation), the
schema's defaults, and each CEL rule through a Python twin. The operator's model
(greenlane.operator.spec, also used by `greenlane simulate -f`) must agree on
every document.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from greenlane.operator.spec import REGIONS, SpecError, parse_manifest, parse_spec

ROOT = Path(__file__).resolve().parents[2]
CRD_PATH = ROOT / "charts" / "greenlane" / "crds" / "fleetsimulations.greenlane.io.yaml"
EXAMPLES = sorted((ROOT / "examples").glob("fleetsimulation*.yaml"))

# Every CEL rule of the CRD and its Python twin; a new rule needs a twin here.
CEL_TWINS: dict[str, Callable[[dict[str, Any]], bool]] = {
    "has(self.region) != has(self.boundingBox)": lambda s: ("region" in s) != ("boundingBox" in s),
    "!has(self.parallelism) || self.parallelism <= self.cars": (
        lambda s: "parallelism" not in s or s["parallelism"] <= s["cars"]
    ),
    "self.south < self.north": lambda s: s["south"] < s["north"],
    "self.west < self.east": lambda s: s["west"] < s["east"],
}


def load_crd() -> dict[str, Any]:
    return dict(yaml.safe_load(CRD_PATH.read_text()))


def open_api_schema() -> dict[str, Any]:
    (version,) = load_crd()["spec"]["versions"]
    return dict(version["schema"]["openAPIV3Schema"])


def strict(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema with unknown fields refused, as `kubectl apply` (strict) refuses them."""
    out = copy.deepcopy(schema)

    def walk(node: dict[str, Any], path: str) -> None:
        props = node.get("properties")
        if isinstance(props, dict):
            if path != ".metadata":
                node["additionalProperties"] = False
            for key, child in props.items():
                walk(child, f"{path}.{key}")
        if isinstance(node.get("items"), dict):
            walk(node["items"], f"{path}[]")

    walk(out, "")
    return out


def with_defaults(schema: dict[str, Any], obj: Any) -> Any:
    """The object after the API server's defaulting (before CEL runs)."""
    if not isinstance(obj, dict):
        return obj
    out = dict(obj)
    for key, child in (schema.get("properties") or {}).items():
        if key not in out and "default" in child:
            out[key] = copy.deepcopy(child["default"])
        if key in out:
            out[key] = with_defaults(child, out[key])
    return out


def cel_failures(schema: dict[str, Any], obj: Any) -> Iterator[str]:
    for rule in schema.get("x-kubernetes-validations") or ():
        if not CEL_TWINS[rule["rule"]](obj):
            yield rule["message"]
    if isinstance(obj, dict):
        for key, child in (schema.get("properties") or {}).items():
            if key in obj:
                yield from cel_failures(child, obj[key])


def api_server_errors(doc: dict[str, Any]) -> list[str]:
    """What creating `doc` would be refused for; [] when accepted."""
    schema = open_api_schema()
    validator = jsonschema.Draft7Validator(strict(schema))
    errors = [f"{'.'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(doc)]
    if errors:
        return errors
    return list(cel_failures(schema, with_defaults(schema, doc)))


def fleet(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "cars": 10,
        "region": "manhattan",
        "tokenSecretRef": {"name": "greenlane-auth"},
    }
    base.update(spec)
    return {
        "apiVersion": "greenlane.io/v1alpha1",
        "kind": "FleetSimulation",
        "metadata": {"name": "t"},
        "spec": {k: v for k, v in base.items() if v is not None},
    }


BOX = {"south": 40.7, "west": -74.0, "north": 40.8, "east": -73.9}

# (id, spec changes, the field the operator's model names)
INVALID: list[tuple[str, dict[str, Any], str]] = [
    ("no_cars", {"cars": 0}, "spec.cars"),
    ("too_many_cars", {"cars": 100_001}, "spec.cars"),
    ("cars_as_a_string", {"cars": "10"}, "spec.cars"),
    ("no_token_secret", {"tokenSecretRef": None}, "spec.tokenSecretRef"),
    ("region_and_box", {"boundingBox": BOX}, "spec"),
    ("neither_region_nor_box", {"region": None}, "spec"),
    ("box_south_of_north", {"region": None, "boundingBox": {**BOX, "south": 41.0}}, "boundingBox"),
    ("box_west_of_east", {"region": None, "boundingBox": {**BOX, "west": -73.0}}, "boundingBox"),
    ("box_off_the_globe", {"region": None, "boundingBox": {**BOX, "south": -91}}, "south"),
    (
        "box_without_east",
        {"region": None, "boundingBox": {"south": 1, "west": 1, "north": 2}},
        "east",
    ),
    ("more_pods_than_cars", {"cars": 2, "parallelism": 3}, "spec"),
    ("too_many_pods", {"cars": 1000, "parallelism": 101}, "spec.parallelism"),
    ("interval_too_short", {"updateIntervalSeconds": 0.05}, "spec.updateIntervalSeconds"),
    ("zero_duration", {"durationSeconds": 0}, "spec.durationSeconds"),
    ("fractional_duration", {"durationSeconds": 1.5}, "spec.durationSeconds"),
    ("unknown_field", {"car": 10}, "spec.car"),
    ("target_without_port", {"target": "ingestion"}, "spec.target"),
    ("target_port_out_of_range", {"target": "ingestion:70000"}, "spec.target"),
    ("region_in_capitals", {"region": "Manhattan"}, "spec.region"),
    ("secret_name_not_dns", {"tokenSecretRef": {"name": "Bad_Name"}}, "spec.tokenSecretRef.name"),
    ("memory_not_a_quantity", {"resources": {"limits": {"memory": "lots"}}}, "memory"),
    ("negative_seed", {"seed": -1}, "spec.seed"),
]

VALID: list[tuple[str, dict[str, Any]]] = [
    ("minimal", {}),
    ("bounding_box", {"region": None, "boundingBox": BOX}),
    (
        "every_field",
        {
            "updateIntervalSeconds": 0.5,
            "durationSeconds": 604_800,
            "seed": 2**63 - 1,
            "target": "[::1]:50051",
            "tokenSecretRef": {"name": "tok.en-1", "key": "TOKEN_1"},
            "cars": 100_000,
            "parallelism": 100,
            "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"cpu": 2}},
        },
    ),
    ("one_car_one_pod", {"cars": 1, "parallelism": 1}),
]


def test_crd_is_a_valid_custom_resource_definition() -> None:
    crd = load_crd()
    for version in ("1.29.0", "1.35.0"):
        kubernetes_validate.validate(crd, version, strict=True)
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    assert crd["metadata"]["name"] == "fleetsimulations.greenlane.io"
    spec = crd["spec"]
    assert (spec["group"], spec["scope"]) == ("greenlane.io", "Namespaced")
    assert spec["names"]["kind"] == "FleetSimulation"
    assert spec["names"]["shortNames"] == ["fsim"]
    (version,) = spec["versions"]
    assert version["name"] == "v1alpha1" and version["served"] and version["storage"]
    assert version["subresources"] == {"status": {}}
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert columns["Cars"] == ".spec.cars"
    assert columns["Phase"] == ".status.phase"
    assert columns["Sent"] == ".status.progress.sent"
    assert columns["Age"] == ".metadata.creationTimestamp"


def test_every_cel_rule_of_the_crd_has_a_python_twin() -> None:
    rules: list[str] = []

    def walk(node: dict[str, Any]) -> None:
        rules.extend(r["rule"] for r in node.get("x-kubernetes-validations") or ())
        for child in (node.get("properties") or {}).values():
            walk(child)

    walk(open_api_schema())
    assert sorted(rules) == sorted(CEL_TWINS)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_is_accepted_by_the_crd_and_the_operator(path: Path) -> None:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    sims = [d for d in docs if d.get("kind") == "FleetSimulation"]
    assert sims, f"{path.name} holds no FleetSimulation"
    for doc in sims:
        assert api_server_errors(doc) == []
        name, spec = parse_manifest(doc)
        assert name == doc["metadata"]["name"]
        assert spec.cars == doc["spec"]["cars"]


def test_examples_include_a_smoke_load_and_a_ten_thousand_car_load() -> None:
    cars = sorted(
        d["spec"]["cars"]
        for path in EXAMPLES
        for d in yaml.safe_load_all(path.read_text())
        if d and d.get("kind") == "FleetSimulation"
    )
    assert cars[0] <= 50
    assert 10_000 in cars


@pytest.mark.parametrize(
    ("changes", "field"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID]
)
def test_broken_spec_is_refused_by_the_crd_and_the_operator(
    changes: dict[str, Any], field: str
) -> None:
    doc = fleet(**changes)
    assert api_server_errors(doc), "the API server would accept it"
    with pytest.raises(SpecError) as refused:
        parse_spec(doc["spec"])
    assert field in str(refused.value)


@pytest.mark.parametrize("changes", [c[1] for c in VALID], ids=[c[0] for c in VALID])
def test_valid_spec_is_accepted_by_the_crd_and_the_operator(changes: dict[str, Any]) -> None:
    doc = fleet(**changes)
    assert api_server_errors(doc) == []
    parse_spec(doc["spec"])


def test_unknown_region_passes_the_crd_but_not_the_operator() -> None:
    # Deliberate: presets live in the operator, so adding one needs no CRD upgrade.
    doc = fleet(region="atlantis")
    assert api_server_errors(doc) == []
    with pytest.raises(SpecError) as refused:
        parse_spec(doc["spec"])
    assert refused.value.reason == "UnknownRegion"
    assert refused.value.field == "spec.region"
    for name in REGIONS:
        assert name in str(refused.value)


@pytest.mark.parametrize("region", sorted(REGIONS))
def test_every_region_preset_is_a_box_the_crd_would_accept(region: str) -> None:
    south, west, north, east = REGIONS[region]
    box = {"south": south, "west": west, "north": north, "east": east}
    assert api_server_errors(fleet(region=None, boundingBox=box)) == []
    assert api_server_errors(fleet(region=region)) == []


def test_defaults_of_the_crd_and_the_operator_agree() -> None:
    schema = open_api_schema()
    doc = with_defaults(schema, fleet())
    spec = parse_spec(fleet()["spec"])
    assert doc["spec"]["updateIntervalSeconds"] == spec.update_interval_seconds
    assert doc["spec"]["parallelism"] == spec.parallelism
    assert doc["spec"]["tokenSecretRef"]["key"] == spec.token_secret_ref.key
