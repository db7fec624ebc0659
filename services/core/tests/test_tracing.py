"""Tracing settings and the rules that join many traces in one span: pure logic, no I/O."""

from __future__ import annotations

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import SpanContext, TraceFlags

from greenlane.core.errors import ConfigurationError
from greenlane.core.telemetry import (
    MAX_LINKS,
    continue_and_link,
    trace_headers,
    traced_record,
)
from greenlane.core.tracing import exporting, sampler_from_env

ENDPOINT = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317"}


def context(trace_id: int, span_id: int, sampled: bool = True) -> SpanContext:
    flags = TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT)
    return SpanContext(trace_id, span_id, is_remote=True, trace_flags=flags)


def test_the_default_sampler_follows_the_parent_and_samples_every_root() -> None:
    sampler = sampler_from_env({})
    assert isinstance(sampler, ParentBased)
    assert "AlwaysOnSampler" in sampler.get_description()


def test_a_ratio_sampler_takes_its_ratio_from_the_sampler_arg() -> None:
    sampler = sampler_from_env(
        {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.1"}
    )
    assert isinstance(sampler, ParentBased)
    assert "TraceIdRatioBased{0.1}" in sampler.get_description()
    plain = sampler_from_env({"OTEL_TRACES_SAMPLER": "TraceIdRatio"})  # the ratio defaults to 1
    assert isinstance(plain, TraceIdRatioBased) and plain.rate == 1.0


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"OTEL_TRACES_SAMPLER": "sometimes"}, "OTEL_TRACES_SAMPLER: 'sometimes' is not one of"),
        (
            {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "ten percent"},
            "OTEL_TRACES_SAMPLER_ARG: 'ten percent' is not a ratio between 0 and 1",
        ),
        (
            {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "1.5"},
            "OTEL_TRACES_SAMPLER_ARG: '1.5' is not a ratio",
        ),
        (
            {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "nan"},
            "OTEL_TRACES_SAMPLER_ARG: 'nan' is not a ratio",
        ),
    ],
)
def test_a_bad_sampler_setting_is_refused_naming_the_variable(
    env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        sampler_from_env(env)


def test_spans_are_exported_only_to_an_endpoint_and_unless_switched_off() -> None:
    assert not exporting({})
    assert exporting(ENDPOINT)
    assert exporting({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4317"})
    assert not exporting({**ENDPOINT, "OTEL_SDK_DISABLED": "true"})
    assert not exporting({**ENDPOINT, "OTEL_TRACES_EXPORTER": "none"})
    with pytest.raises(ConfigurationError, match="OTEL_TRACES_EXPORTER: 'zipkin' is not"):
        exporting({**ENDPOINT, "OTEL_TRACES_EXPORTER": "zipkin"})


def test_a_span_over_many_items_continues_the_first_and_links_each_other_trace_once() -> None:
    first, second, third = context(1, 11), context(2, 22), context(3, 33)
    parent, links, dropped = continue_and_link([first, second, first, third, second])
    assert parent is not None
    assert trace.get_current_span(parent).get_span_context() == first
    assert [link.context for link in links] == [second, third]
    assert dropped == 0
    # Same span id, other trace: another item.
    _, links, _ = continue_and_link([first, context(4, 11)])
    assert [link.context.trace_id for link in links] == [4]


def test_links_beyond_the_limit_are_counted_not_kept() -> None:
    many = [context(i + 1, i + 1) for i in range(MAX_LINKS + 6)]
    _, links, dropped = continue_and_link(many)
    assert (len(links), dropped) == (MAX_LINKS, 5)


def test_a_span_over_nothing_traced_continues_nothing() -> None:
    assert continue_and_link([]) == (None, [], 0)


def test_a_record_tells_its_sampled_trace_and_nothing_else() -> None:
    traced = context(0xABC, 0xDEF)
    headers = trace_headers(traced)
    assert headers == [("traceparent", f"00-{0xABC:032x}-{0xDEF:016x}-01".encode())]
    assert traced_record(headers) == traced
    assert traced_record(trace_headers(context(5, 6, sampled=False))) is None
    assert traced_record([]) is None and traced_record(None) is None
    assert traced_record([("traceparent", b"not a trace")]) is None
