"""Environment settings of the operator (GREENLANE_*); its command-line flags take precedence."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Final, Literal

from pydantic import Field, field_validator
from pydantic_settings import NoDecode

from greenlane.core.settings import BaseServiceSettings
from greenlane.operator.spec import TARGET_PATTERN

PullPolicy = Literal["Always", "IfNotPresent", "Never"]
# A Secret's name: a DNS subdomain.
SECRET_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")


# What a simulator pod needs to trace like the platform (docs/observability.md): the
# chart gives the operator's pod the same OTEL_* as every component.
TRACE_VARIABLES: Final = (
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_INSECURE",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
    "OTEL_PYTHON_GRPC_EXCLUDED_SERVICES",
    "GREENLANE_TRACE_RATIO",
)


def trace_env(environ: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """The tracing variables set in `environ`, in TRACE_VARIABLES order."""
    return tuple((name, environ[name]) for name in TRACE_VARIABLES if environ.get(name))


class OperatorSettings(BaseServiceSettings):
    """What the chart's Deployment sets; every default suits a local `python -m` run."""

    # GREENLANE_OPERATOR_NAMESPACE: the one namespace to watch; unset: the flags decide.
    operator_namespace: str | None = None
    simulator_image: str = Field("greenlane-simulator:latest", min_length=1)
    simulator_pull_policy: PullPolicy = "IfNotPresent"
    # GREENLANE_SIMULATOR_IMAGE_PULL_SECRETS: comma-separated Secret names for the Jobs.
    simulator_image_pull_secrets: Annotated[tuple[str, ...], NoDecode] = ()
    # Where simulator pods connect when a FleetSimulation has no spec.target.
    ingestion_addr: str = "ingestion:50051"
    # kopf's liveness endpoint (the Deployment's livenessProbe).
    liveness_endpoint: str = "http://0.0.0.0:8080/healthz"
    metrics_port: int = Field(9103, ge=0, le=65535)
    # Defaults for simulator pods whose FleetSimulation has no spec.resources.
    simulator_cpu_request: str = "100m"
    simulator_memory_request: str = "128Mi"
    simulator_cpu_limit: str = "1"
    simulator_memory_limit: str = "512Mi"

    @field_validator("ingestion_addr")
    @classmethod
    def _target(cls, value: str) -> str:
        if not re.fullmatch(TARGET_PATTERN, value):
            raise ValueError("must be HOST:PORT with a port in 1..65535")
        return value

    @field_validator("simulator_image_pull_secrets", mode="before")
    @classmethod
    def _pull_secrets(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        names = tuple(n.strip() for n in value.split(",") if n.strip())
        for name in names:
            if not SECRET_NAME.fullmatch(name):
                raise ValueError(f"{name!r} is not a Secret name (lower-case DNS subdomain)")
        return names

    @field_validator("operator_namespace")
    @classmethod
    def _namespace(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            return None  # the chart may render an empty value
        return value
