"""Tracing: the one place that configures OpenTelemetry (provider, sampler, OTLP exporter).

Spans are recorded only when they can go somewhere: with OTEL_EXPORTER_OTLP_ENDPOINT
(or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) set, the standard sampler variables decide
(OTEL_TRACES_SAMPLER, OTEL_TRACES_SAMPLER_ARG; default parentbased_always_on) and a batch
processor exports over OTLP/gRPC (OTEL_BSP_* tune it). Without an endpoint nothing is
sampled, so an untraced service pays next to nothing for its spans. The trace model (which
span exists where, how they link) is in docs/observability.md.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping
from typing import Final

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    DEFAULT_OFF,
    DEFAULT_ON,
    ParentBasedTraceIdRatio,
    Sampler,
    TraceIdRatioBased,
)

from greenlane.core.errors import ConfigurationError

log = logging.getLogger(__name__)

SAMPLER_VARIABLE: Final = "OTEL_TRACES_SAMPLER"
SAMPLER_ARG_VARIABLE: Final = "OTEL_TRACES_SAMPLER_ARG"
ENDPOINT_VARIABLES: Final = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
EXPORTER_VARIABLE: Final = "OTEL_TRACES_EXPORTER"
DEFAULT_SAMPLER: Final = "parentbased_always_on"
# The samplers the SDK knows by name (the specification's built-in ones).
_FIXED_SAMPLERS: Final[Mapping[str, Sampler]] = {
    "always_on": ALWAYS_ON,
    "always_off": ALWAYS_OFF,
    "parentbased_always_on": DEFAULT_ON,
    "parentbased_always_off": DEFAULT_OFF,
}
_RATIO_SAMPLERS: Final = {
    "traceidratio": TraceIdRatioBased,
    "parentbased_traceidratio": ParentBasedTraceIdRatio,
}


def _env(environ: Mapping[str, str], name: str) -> str:
    return environ.get(name, "").strip()


def sampler_from_env(environ: Mapping[str, str] | None = None) -> Sampler:
    """The sampler OTEL_TRACES_SAMPLER(_ARG) name; a bad value raises ConfigurationError.

    The SDK itself would log a warning and fall back to sampling everything, which hides
    a typo in production until the trace store fills up.
    """
    env = os.environ if environ is None else environ
    name = _env(env, SAMPLER_VARIABLE).lower() or DEFAULT_SAMPLER
    if name in _FIXED_SAMPLERS:
        return _FIXED_SAMPLERS[name]
    if name not in _RATIO_SAMPLERS:
        known = ", ".join([*_FIXED_SAMPLERS, *_RATIO_SAMPLERS])
        raise ConfigurationError(f"{SAMPLER_VARIABLE}: {name!r} is not one of {known}")
    text = _env(env, SAMPLER_ARG_VARIABLE)
    try:
        ratio = float(text) if text else 1.0  # the specification's default
    except ValueError:
        ratio = math.nan
    if not 0.0 <= ratio <= 1.0:  # also NaN
        raise ConfigurationError(
            f"{SAMPLER_ARG_VARIABLE}: {text!r} is not a ratio between 0 and 1 (for {name})"
        )
    return _RATIO_SAMPLERS[name](ratio)


def exporting(environ: Mapping[str, str] | None = None) -> bool:
    """Spans go somewhere: an OTLP endpoint is set, and neither the SDK nor its trace
    exporter is switched off (OTEL_SDK_DISABLED, OTEL_TRACES_EXPORTER=none)."""
    env = os.environ if environ is None else environ
    if _env(env, "OTEL_SDK_DISABLED").lower() == "true":
        return False
    exporter = _env(env, EXPORTER_VARIABLE).lower() or "otlp"
    if exporter not in ("otlp", "none"):
        raise ConfigurationError(
            f"{EXPORTER_VARIABLE}: {exporter!r} is not supported (otlp, over gRPC, or none)"
        )
    return exporter == "otlp" and any(_env(env, name) for name in ENDPOINT_VARIABLES)


def check_tracing_env(environ: Mapping[str, str] | None = None) -> None:
    """Raise ConfigurationError naming the variable when a tracing setting is unusable."""
    exporting(environ)
    sampler_from_env(environ)


def setup_tracing(service_name: str) -> TracerProvider:
    """Install the global tracer provider of `greenlane-<service_name>` and return it.

    Raises ConfigurationError (naming the variable) for a bad OTEL_* value. Callers shut
    the provider down on exit, which exports the spans still queued.
    """
    check_tracing_env()
    resource = Resource.create({"service.name": f"greenlane-{service_name}"})
    if exporting():
        provider = TracerProvider(resource=resource, sampler=sampler_from_env())
        # Imported only when used: the exporter brings in grpc, slow to import.
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        log.info(
            "exporting traces over OTLP (sampler %s)",
            _env(os.environ, SAMPLER_VARIABLE) or DEFAULT_SAMPLER,
        )
    else:
        # Nowhere to send spans: record none. Trace ids still travel, marked unsampled.
        provider = TracerProvider(resource=resource, sampler=ALWAYS_OFF)
    trace.set_tracer_provider(provider)
    return provider
