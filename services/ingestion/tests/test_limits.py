"""The per-credential limits, without I/O: the token bucket and the stream count."""

from __future__ import annotations

from greenlane.core.auth import ALL_SCOPES, Limits, Principal
from greenlane.ingestion.limits import LimitDefaults, Limiter, TokenBucket


def test_a_bucket_grants_its_burst_then_its_rate_and_says_when_to_retry() -> None:
    bucket = TokenBucket(rate=10.0, burst=5.0)
    assert [bucket.take(1, 0.0) for _ in range(5)] == [0.0] * 5
    wait = bucket.take(1, 0.0)
    assert 0.09 < wait <= 0.1
    assert bucket.take(1, 0.1) == 0.0  # one token came back in 0.1 s
    assert bucket.take(1, 0.1) > 0


def test_a_refused_take_costs_nothing() -> None:
    bucket = TokenBucket(rate=1.0, burst=2.0)
    bucket.take(2, 0.0)
    for _ in range(100):
        assert bucket.take(1, 0.5) > 0
    assert bucket.take(1, 1.0) == 0.0


def test_a_batch_larger_than_the_burst_passes_on_a_full_bucket_and_leaves_a_debt() -> None:
    bucket = TokenBucket(rate=10.0, burst=5.0)
    assert bucket.take(20, 0.0) == 0.0
    assert bucket.take(1, 1.0) > 0  # 15 tokens of debt, 10 repaid


def test_credential_limits_override_the_defaults_and_streams_are_counted() -> None:
    limiter = Limiter(LimitDefaults(statuses_per_second=100, burst=100, streams=3, batch=50))
    own = Principal("acme", ALL_SCOPES, "acme", limits=Limits(streams=1, batch=500))
    other = Principal("beta", ALL_SCOPES, "beta")
    assert limiter.limits(own).batch == 50  # never above the server's
    assert limiter.open_stream(own, 0.0)
    assert not limiter.open_stream(own, 0.0)
    assert [limiter.open_stream(other, 0.0) for _ in range(4)] == [True, True, True, False]
    limiter.close_stream(own)
    assert limiter.open_stream(own, 0.0)
