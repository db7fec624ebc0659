"""Run statistics: exact percentiles, a bounded reservoir, and the summary renderings."""

from __future__ import annotations

import random

import pytest

from greenlane.simulator.stats import Reservoir, Stats, percentile


def test_percentiles_of_one_to_a_hundred_are_the_nearest_ranks() -> None:
    data = [float(v) for v in range(1, 101)]
    random.Random(1).shuffle(data)
    assert percentile(data, 50) == 50.0
    assert percentile(data, 99) == 99.0
    assert percentile(data, 100) == 100.0
    assert percentile(data, 1) == 1.0


def test_percentiles_of_a_small_odd_sample() -> None:
    data = [5.0, 1.0, 3.0]
    assert percentile(data, 50) == 3.0
    assert percentile(data, 99) == 5.0


def test_a_percentile_of_nothing_is_none() -> None:
    assert percentile([], 50) is None
    assert Stats().p99() is None


def test_a_percentile_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError, match="q must be"):
        percentile([1.0], 0)


def test_the_reservoir_is_exact_below_its_capacity() -> None:
    reservoir = Reservoir(capacity=1000)
    for v in range(1, 1001):
        reservoir.add(v / 1000)
    assert reservoir.exact
    assert reservoir.percentile(50) == 0.5
    assert reservoir.percentile(99) == 0.99
    assert reservoir.max == 1.0
    assert reservoir.mean == pytest.approx(0.5005)


def test_the_reservoir_keeps_at_most_its_capacity_but_counts_everything() -> None:
    reservoir = Reservoir(capacity=1000)
    for v in range(100_000):
        reservoir.add(v / 100_000)
    assert len(reservoir.samples) == 1000
    assert reservoir.count == 100_000
    assert not reservoir.exact
    assert reservoir.max == pytest.approx(0.99999)
    # A uniform sample: its percentiles estimate those of all values.
    assert reservoir.percentile(50) == pytest.approx(0.5, abs=0.05)
    assert reservoir.percentile(99) == pytest.approx(0.99, abs=0.02)


def test_a_subsampled_percentile_is_close_to_the_exact_one() -> None:
    reservoir = Reservoir(capacity=200_000)
    rng = random.Random(2)
    for _ in range(50_000):
        reservoir.add(rng.expovariate(100.0))
    exact = reservoir.percentile(99)
    estimate = reservoir.percentile(99, max_samples=5_000)
    assert exact is not None and estimate is not None
    assert estimate == pytest.approx(exact, rel=0.15)


def test_booked_and_no_capacity_answers_count_as_accepted() -> None:
    stats = Stats()
    stats.record_sent(4)
    stats.record_answer(0.001, accepted=1)
    stats.record_answer(0.002, booked=1)
    stats.record_answer(0.003, no_capacity=1)
    stats.record_answer(0.004, rejected=1)
    assert (stats.accepted, stats.booked, stats.no_capacity, stats.rejected) == (3, 1, 1, 1)
    assert stats.answered == 4
    assert stats.latencies.count == 4


def test_a_batch_answer_counts_every_status_and_one_latency() -> None:
    stats = Stats()
    stats.record_sent(10)
    stats.record_answer(0.01, accepted=8, rejected=2)
    assert (stats.sent, stats.accepted, stats.rejected) == (10, 8, 2)
    assert stats.latencies.count == 1


def test_the_summary_dict_gives_latencies_in_milliseconds_and_a_rate() -> None:
    stats = Stats()
    stats.start(100.0)
    for ms in range(1, 101):
        stats.record_sent()
        stats.record_answer(ms / 1000, accepted=1)
    stats.record_error()
    stats.record_unanswered(3)
    stats.finish(110.0)
    summary = stats.to_dict()
    assert summary["elapsed_s"] == 10.0
    assert summary["sent"] == 100 and summary["accepted"] == 100
    assert summary["errors"] == 1 and summary["unanswered"] == 3
    assert summary["answered_per_s"] == 10.0
    assert summary["latency_ms"]["p50"] == 50.0
    assert summary["latency_ms"]["p99"] == 99.0
    assert summary["latency_ms"]["max"] == 100.0
    assert summary["latency_ms"]["samples"] == 100


def test_an_empty_run_summarises_without_latencies() -> None:
    summary = Stats().to_dict()
    assert summary["sent"] == 0
    assert summary["answered_per_s"] == 0.0
    assert summary["latency_ms"]["p50"] is None


def test_the_summary_lines_are_aligned_name_value_pairs() -> None:
    stats = Stats()
    stats.record_sent()
    stats.record_answer(0.0025, accepted=1)
    lines = stats.lines()
    assert any(line.startswith("latency p50 ") and line.endswith(" 2.500 ms") for line in lines)
    assert any(line.startswith("accepted ") and line.endswith(" 1") for line in lines)
    # One column for the values: every value starts at the same offset.
    offsets = {len(line) - len(line[line.index("  ") :].lstrip()) for line in lines}
    assert len(offsets) == 1


def test_the_summary_counts_charging_sessions_and_cars_still_plugged_in() -> None:
    stats = Stats()
    stats.charging_sessions_started = 3
    stats.charging_sessions_finished = 2
    stats.bookings_expired_en_route = 1
    summary = stats.to_dict()
    assert summary["charging_sessions_started"] == 3
    assert summary["charging_sessions_finished"] == 2
    assert summary["bookings_expired_en_route"] == 1
    assert stats.charging_now == 1
    # The keys the operator and `greenlane dev` read are all still there.
    assert {"sent", "accepted", "booked", "no_capacity", "rejected", "unavailable"} <= set(summary)


def test_elapsed_time_runs_until_finished() -> None:
    stats = Stats()
    assert stats.elapsed() == 0.0
    stats.start(10.0)
    assert stats.elapsed(now=12.5) == 2.5
    stats.finish(14.0)
    assert stats.elapsed() == 4.0


def test_steady_figures_count_only_messages_sent_after_the_warmup() -> None:
    import time as _time

    stats = Stats(warmup_s=5.0)
    stats.start(_time.monotonic() - 10.0)  # the run began 10 s ago
    stats.record_answer(9.0, accepted=1)  # sent 9 s ago: during the warm-up
    stats.record_answer(0.010, accepted=1)  # sent just now
    stats.record_answer(0.020, accepted=1)
    stats.finish(_time.monotonic())

    steady = stats.to_dict()["steady"]
    assert steady["answered"] == 2
    assert steady["latency_ms"]["samples"] == 2
    assert steady["latency_ms"]["max"] == 20.0
    assert stats.to_dict()["latency_ms"]["max"] == 9000.0
    assert "steady" not in Stats().to_dict()
