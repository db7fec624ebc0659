"""The simulator's traces: which statuses start one, what rides in the status, the flags."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import SpanKind, StatusCode

from greenlane.simulator.cli import parse_options
from greenlane.simulator.settings import SimulatorSettings
from greenlane.simulator.tracing import StatusTracer, answered, traced_channels
from greenlane.v1 import fleet_pb2

ENDPOINT = "OTEL_EXPORTER_OTLP_ENDPOINT"


def settings(**values: object) -> SimulatorSettings:
    return SimulatorSettings.model_validate(
        {"ingestion_addr": None, "api_token": None, "api_tokens": [], **values}
    )


def status() -> fleet_pb2.CarStatus:
    return fleet_pb2.CarStatus(car_id="car-1", lat=40.7, lon=-73.9, battery=50, timestamp=1)


def test_a_traced_status_carries_the_context_of_its_own_root_client_span() -> None:
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    msg = status()
    span = StatusTracer(1.0, provider).maybe_trace(msg, "StreamTelemetry")
    assert span is not None
    answered([span], fleet_pb2.UNAVAILABLE, "not stored: Kafka did not confirm")

    (done,) = spans.get_finished_spans()
    assert done.kind is SpanKind.CLIENT and done.parent is None
    assert done.context is not None
    (key, value), *_ = msg.trace_context.items()
    version, trace_id, span_id, flags = value.split("-")
    assert (key, version, len(msg.trace_context)) == ("traceparent", "00", 1)
    assert (int(trace_id, 16), int(span_id, 16)) == (done.context.trace_id, done.context.span_id)
    assert int(flags, 16) & 1  # sampled
    assert done.attributes is not None
    assert done.attributes["greenlane.status.answer"] == "UNAVAILABLE"
    assert done.status.status_code is StatusCode.ERROR


def test_the_ratio_decides_how_many_statuses_start_a_trace() -> None:
    provider = TracerProvider()
    never, always, tenth = (StatusTracer(r, provider) for r in (0.0, 1.0, 0.1))
    assert never.maybe_trace(status(), "StreamTelemetry") is None
    assert always.maybe_trace(status(), "StreamTelemetry") is not None
    traced = sum(tenth.maybe_trace(status(), "StreamTelemetry") is not None for _ in range(5000))
    assert 350 < traced < 650  # 500 expected; a generous bound, never flaky in practice


def test_a_sampler_that_says_no_leaves_the_status_untraced() -> None:
    msg = status()
    assert StatusTracer(1.0, TracerProvider(sampler=ALWAYS_OFF)).maybe_trace(msg, "x") is None
    assert not msg.trace_context


def test_the_stream_interceptors_can_be_left_out_with_the_instrumentations_variable() -> None:
    assert len(traced_channels(environ={})) == 4  # unary/stream x unary/stream
    excluded = {"OTEL_PYTHON_GRPC_EXCLUDED_SERVICES": "x.Y, greenlane.v1.FleetTelemetry"}
    assert traced_channels(environ=excluded) == []


def test_the_trace_ratio_comes_from_the_flag_or_the_setting_when_spans_are_exported(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(ENDPOINT, "http://127.0.0.1:4317")
    assert parse_options([], settings()).config.trace_ratio == 0.01
    assert parse_options([], settings(trace_ratio=0.2)).config.trace_ratio == 0.2
    options = parse_options(["--trace-ratio", "0.5"], settings(trace_ratio=0.2))
    assert (options.config.trace_ratio, options.tracing) == (0.5, True)


def test_without_an_endpoint_no_status_is_traced_and_a_given_ratio_is_reported(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(ENDPOINT, raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    options = parse_options(["--trace-ratio", "0.5"], settings())
    assert (options.config.trace_ratio, options.tracing, options.trace_ignored) == (
        0.0,
        False,
        True,
    )


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--trace-ratio", "1.5"], {}, "argument --trace-ratio: must be in [0, 1], got '1.5'"),
        (["--trace-ratio", "x"], {}, "argument --trace-ratio: 'x' is not a number"),
        ([], {"OTEL_TRACES_SAMPLER": "most"}, "OTEL_TRACES_SAMPLER: 'most' is not one of"),
    ],
)
def test_a_bad_tracing_flag_or_variable_exits_2_naming_it(
    argv: list[str],
    env: dict[str, str],
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as exit_info:
        parse_options(argv, settings())
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
