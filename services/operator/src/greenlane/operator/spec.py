"""The FleetSimulation spec: the CRD's rules in Python, and the region presets.

The CRD in charts/greenlane/crds/ is what the API server enforces; this model
mirrors it (tests/crd/ checks that both accept and refuse the same documents) so
that `greenlane simulate -f` refuses what `kubectl apply` would, with the same
field names. What the CRD deliberately cannot check (a region preset name, so
that presets can grow without a CRD upgrade, which Helm never does for crds/)
is checked by `FleetSimulationSpec.bbox()`.

No kopf import here: the CLI imports this module.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.alias_generators import to_camel

GROUP: Final = "greenlane.io"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"
KIND: Final = "FleetSimulation"
PLURAL: Final = "fleetsimulations"

MAX_CARS: Final = 100_000
MAX_PARALLELISM: Final = 100
MAX_DURATION_S: Final = 604_800  # one week
# The key of the chart's own token Secret (RELEASE-greenlane-auth): one token or a
# comma-separated list, of which the simulator uses the first.
DEFAULT_TOKEN_KEY: Final = "api-tokens"

# (south, west, north, east) in degrees. Each box is a rectangle of streets, no water
# guarantees: the simulator's random walk bounces off the edges.
REGIONS: Final[Mapping[str, tuple[float, float, float, float]]] = {
    "manhattan": (40.700, -74.020, 40.880, -73.907),
    "brooklyn": (40.570, -74.042, 40.739, -73.833),
    "sf": (37.708, -122.515, 37.812, -122.357),
}

# The same patterns appear in the CRD's openAPIV3Schema.
REGION_PATTERN: Final = r"^[a-z][a-z0-9-]{0,62}$"
_PORT = r"([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
TARGET_PATTERN: Final = (
    r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?):" + _PORT + "$"
)
SECRET_NAME_PATTERN: Final = r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"
SECRET_KEY_PATTERN: Final = r"^[-._a-zA-Z0-9]{1,253}$"
QUANTITY_PATTERN: Final = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
    r"(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)


class SpecError(ValueError):
    """A FleetSimulation that cannot run; `field` is its path, e.g. `spec.region`."""

    def __init__(self, field: str, message: str, reason: str = "InvalidSpec") -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        self.reason = reason


def _matching(value: str, pattern: str, what: str) -> str:
    if not re.fullmatch(pattern, value):
        raise ValueError(f"{value!r} is not {what}")
    return value


class _Model(BaseModel):
    # Unknown fields are refused, as `kubectl apply` does (strict field validation).
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )


class BoundingBox(_Model):
    """A rectangle in degrees; it may not cross the antimeridian (west < east)."""

    south: float = Field(ge=-90.0, le=90.0, allow_inf_nan=False, strict=True)
    west: float = Field(ge=-180.0, le=180.0, allow_inf_nan=False, strict=True)
    north: float = Field(ge=-90.0, le=90.0, allow_inf_nan=False, strict=True)
    east: float = Field(ge=-180.0, le=180.0, allow_inf_nan=False, strict=True)

    @model_validator(mode="after")
    def _ordered(self) -> BoundingBox:
        if not self.south < self.north:
            raise ValueError("boundingBox.south must be less than boundingBox.north")
        if not self.west < self.east:
            raise ValueError("boundingBox.west must be less than boundingBox.east")
        return self

    def as_arg(self) -> str:
        """`SOUTH,WEST,NORTH,EAST`, the simulator's --bbox format."""
        return ",".join(repr(float(v)) for v in (self.south, self.west, self.north, self.east))


class SecretKeyRef(_Model):
    """Where the simulator pods read their x-api-token."""

    name: str = Field(max_length=253)
    key: str = Field(default=DEFAULT_TOKEN_KEY, max_length=253)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _matching(value, SECRET_NAME_PATTERN, "a Secret name (lower case, digits, - and .)")

    @field_validator("key")
    @classmethod
    def _key(cls, value: str) -> str:
        return _matching(value, SECRET_KEY_PATTERN, "a Secret key (letters, digits, - _ and .)")


Quantity = int | str


class ResourceList(_Model):
    cpu: Quantity | None = None
    memory: Quantity | None = None

    @field_validator("cpu", "memory")
    @classmethod
    def _quantity(cls, value: Quantity | None) -> Quantity | None:
        if isinstance(value, str) and not re.fullmatch(QUANTITY_PATTERN, value):
            raise ValueError(f"{value!r} is not a Kubernetes quantity such as 500m or 256Mi")
        return value


class Resources(_Model):
    """Per simulator pod; unset values take the operator's defaults."""

    requests: ResourceList | None = None
    limits: ResourceList | None = None


class FleetSimulationSpec(_Model):
    """`.spec` of a FleetSimulation, field names as in the YAML (camelCase)."""

    cars: int = Field(ge=1, le=MAX_CARS, strict=True)
    update_interval_seconds: float = Field(
        default=2.0, ge=0.1, le=3600.0, allow_inf_nan=False, strict=True
    )
    # None: the simulation runs until the FleetSimulation is deleted.
    duration_seconds: int | None = Field(default=None, ge=1, le=MAX_DURATION_S, strict=True)
    region: str | None = None
    bounding_box: BoundingBox | None = None
    seed: int | None = Field(default=None, ge=0, le=2**63 - 1, strict=True)
    # None: the operator's default (the chart's ingestion Service).
    target: str | None = None
    token_secret_ref: SecretKeyRef
    parallelism: int = Field(default=1, ge=1, le=MAX_PARALLELISM, strict=True)
    resources: Resources | None = None

    @field_validator("region")
    @classmethod
    def _region(cls, value: str | None) -> str | None:
        if value is None:
            return None
        return _matching(value, REGION_PATTERN, "a preset name such as manhattan (lower case)")

    @field_validator("target")
    @classmethod
    def _target(cls, value: str | None) -> str | None:
        if value is None:
            return None
        return _matching(value, TARGET_PATTERN, "HOST:PORT with a port in 1..65535")

    @model_validator(mode="after")
    def _cross_field(self) -> FleetSimulationSpec:
        # The CRD's x-kubernetes-validations (CEL) say the same.
        if (self.region is None) == (self.bounding_box is None):
            raise ValueError("set exactly one of spec.region and spec.boundingBox")
        if self.parallelism > self.cars:
            raise ValueError("spec.parallelism must not exceed spec.cars")
        return self

    def bbox(self) -> BoundingBox:
        """The area to simulate: the explicit box, else the region preset's."""
        if self.bounding_box is not None:
            return self.bounding_box
        assert self.region is not None  # the model validator guarantees one of both
        box = REGIONS.get(self.region)
        if box is None:
            known = ", ".join(sorted(REGIONS))
            raise SpecError(
                "spec.region",
                f"unknown region preset {self.region!r}: use one of {known}, "
                "or give spec.boundingBox {south, west, north, east} instead",
                reason="UnknownRegion",
            )
        south, west, north, east = box
        return BoundingBox(south=south, west=west, north=north, east=east)


def _describe(exc: ValidationError) -> SpecError:
    """The first problem, named by its YAML path (`spec.boundingBox.south`)."""
    problems = []
    for err in exc.errors():
        path = ".".join(["spec", *(str(p) for p in err["loc"])])
        message = err["msg"].removeprefix("Value error, ")
        problems.append((path, message))
    path, message = problems[0]
    if len(problems) > 1:
        message += "; also " + "; ".join(f"{p}: {m}" for p, m in problems[1:])
    return SpecError(path, message)


def parse_spec(raw: Mapping[str, Any] | None) -> FleetSimulationSpec:
    """Validate a `.spec` mapping as the CRD does, then the region; raises SpecError."""
    if not isinstance(raw, Mapping):
        raise SpecError("spec", "must be a mapping with at least cars and tokenSecretRef")
    try:
        spec = FleetSimulationSpec.model_validate(dict(raw))
    except ValidationError as exc:
        raise _describe(exc) from None
    spec.bbox()  # an unknown region fails here
    return spec


def parse_manifest(doc: Any) -> tuple[str, FleetSimulationSpec]:
    """A whole FleetSimulation document (as in examples/): its name and its spec."""
    if not isinstance(doc, Mapping):
        raise SpecError("(document)", "is not a YAML mapping")
    if doc.get("apiVersion") != API_VERSION or doc.get("kind") != KIND:
        raise SpecError(
            "apiVersion/kind",
            f"expected apiVersion {API_VERSION} and kind {KIND}, "
            f"got {doc.get('apiVersion')!r} and {doc.get('kind')!r}",
        )
    metadata = doc.get("metadata")
    name = metadata.get("name") if isinstance(metadata, Mapping) else None
    if not isinstance(name, str) or not name:
        raise SpecError("metadata.name", "is required")
    return name, parse_spec(doc.get("spec"))
