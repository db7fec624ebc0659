"""Frames from the running hub: one encoding per position, catch-ups, the slow-client rule."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanContext, TraceFlags

from greenlane.core.events import CarState
from greenlane.hub.events import CarEvent
from greenlane.hub.hub import Hub
from greenlane.hub.metrics import create_metrics
from greenlane.hub.state import FleetState

T0 = 1_764_000_000_000


def status(car_id: str, t: int, battery: float = 60.0) -> CarEvent:
    return CarEvent(
        "telemetry",
        CarState(car_id=car_id, lat=40.75, lon=-73.98, battery=battery, velocity=20.0, timestamp=t),
    )


async def new_hub(**kw: Any) -> Hub:
    metrics, _ = create_metrics()
    return Hub(FleetState(seq_base=1000), metrics, epoch="e1", **kw)


def apply(frame_text: str, held: dict[str, dict[str, Any]], position: int) -> int:
    """What a client does with a frame; returns its new position (asserts no gap)."""
    frame = json.loads(frame_text)
    if frame["type"] == "snapshot":
        held.clear()
        held.update(frame["cars"])
        return int(frame["seq"])
    assert frame["from"] == position, "a gap or a duplicate"
    for car_id, value in frame.get("cars", {}).items():
        if value is None:
            held.pop(car_id, None)
        else:
            held[car_id] = value
    return int(frame["seq"])


async def test_clients_at_the_same_position_share_one_encoded_frame() -> None:
    hub = await new_hub()
    hub.tick(T0, caught_up=True)
    position = hub.state.seq
    await hub.offer(status("a", T0), T0)
    await hub.offer(status("b", T0), T0)
    hub.tick(T0 + 250, caught_up=True)
    first, second = hub.next_frame(position, 1), hub.next_frame(position, 1)
    assert first is not None and first is second
    held: dict[str, dict[str, Any]] = {}
    assert apply(first.text, held, position) == hub.state.seq
    assert set(held) == {"a", "b"}


async def test_a_tick_coalesces_the_changes_of_one_car_and_says_how_many() -> None:
    hub = await new_hub()
    hub.tick(T0, caught_up=True)
    position = hub.state.seq
    for i in range(3):
        await hub.offer(status("a", T0 + i, battery=60 - i), T0)
    hub.tick(T0 + 250, caught_up=True)
    frame = hub.next_frame(position, 1)
    assert frame is not None
    data = json.loads(frame.text)
    assert (data["cars"]["a"]["battery"], data["coalesced"]) == (58.0, 2)


async def test_a_client_that_missed_ticks_gets_one_catch_up_without_gap_or_duplicate() -> None:
    hub = await new_hub(slow_client_ticks=8)
    hub.tick(T0, caught_up=True)
    held: dict[str, dict[str, Any]] = {}
    first = hub.first_frame(None, None)
    position = apply(first.text, held, 0)
    for tick in range(1, 4):
        await hub.offer(status(f"car-{tick}", T0 + tick), T0)
        await hub.offer(status("a", T0 + tick, battery=60 - tick), T0)
        hub.tick(T0 + tick * 250, caught_up=True)
    frame = hub.next_frame(position, 3)
    assert frame is not None and frame.reset is None
    position = apply(frame.text, held, position)
    assert position == hub.state.seq
    assert set(held) == {"a", "car-1", "car-2", "car-3"} and held["a"]["battery"] == 57.0
    assert hub.next_frame(position, 1) is None  # nothing new


async def test_a_client_too_many_ticks_behind_gets_a_fresh_snapshot() -> None:
    hub = await new_hub(slow_client_ticks=2)
    hub.tick(T0, caught_up=True)
    position = hub.state.seq
    await hub.offer(status("a", T0), T0)
    hub.tick(T0 + 250, caught_up=True)
    frame = hub.next_frame(position, 3)
    assert frame is not None and frame.reset == "slow"
    assert json.loads(frame.text)["type"] == "snapshot"
    assert hub.next_frame(position, 3) is frame  # one encoding for every slow client


async def test_a_client_resuming_from_an_old_or_foreign_position_gets_a_snapshot() -> None:
    hub = await new_hub()
    await hub.offer(status("a", T0), T0)
    hub.tick(T0, caught_up=True)
    assert hub.first_frame(5, None).reset == "epoch"  # before this hub's first number
    assert hub.first_frame(hub.state.seq, "another").reset == "epoch"
    assert hub.first_frame(None, None).reset == "new"
    resumed = hub.first_frame(1000, "e1")
    assert resumed.reset is None
    assert json.loads(resumed.text)["cars"]["a"]["battery"] == 60.0


async def test_stats_reach_clients_once_a_second() -> None:
    hub = await new_hub()
    hub.tick(T0, caught_up=True)
    position = hub.state.seq
    hub.tick(T0 + 250, caught_up=True)
    assert hub.next_frame(position, 1) is None  # no change and no new stats
    hub.tick(T0 + 1000, caught_up=True)
    frame = hub.next_frame(position, 1)
    assert frame is not None and json.loads(frame.text)["stats"]["time"] == T0 + 1000


async def test_the_hub_counts_changes_and_coalesced_changes() -> None:
    metrics, registry = create_metrics()
    hub = Hub(FleetState(seq_base=0), metrics)
    for i in range(4):
        await hub.offer(status("a", T0 + i), T0)
    await hub.offer(status("b", T0), T0)
    hub.tick(T0, caught_up=True)
    assert registry.get_sample_value("greenlane_hub_changes_total") == 5
    assert registry.get_sample_value("greenlane_hub_coalesced_total") == 3


async def test_closing_the_hub_wakes_every_waiting_client() -> None:
    hub = await new_hub()
    waiting = asyncio.ensure_future(hub.next_tick(hub.tick_no))
    await asyncio.sleep(0)
    assert not waiting.done()
    hub.close()
    assert await asyncio.wait_for(waiting, 1) == hub.tick_no and hub.closed
    assert await hub.next_tick(hub.tick_no) == hub.tick_no  # no waiting after close


def fleet_status(car_id: str, t: int, fleet: str) -> CarEvent:
    event = status(car_id, t)
    return CarEvent(event.event_type, event.car, fleet=fleet)


async def test_a_fleets_client_sees_only_its_fleets_cars_and_an_operator_sees_all() -> None:
    hub = await new_hub()
    await hub.offer(fleet_status("a-1", T0, "alpha"), T0)
    await hub.offer(fleet_status("b-1", T0, "beta"), T0)
    hub.tick(T0, caught_up=True)
    alpha = json.loads(hub.snapshot("new", "alpha").text)
    everyone = json.loads(hub.snapshot("new").text)
    assert set(alpha["cars"]) == {"a-1"}
    assert set(everyone["cars"]) == {"a-1", "b-1"}
    assert alpha["stats"]["cars_online"] == 1
    position = alpha["seq"]
    await hub.offer(fleet_status("b-1", T0 + 1000, "beta"), T0 + 1000)
    await hub.offer(fleet_status("a-1", T0 + 1000, "alpha"), T0 + 1000)
    hub.tick(T0 + 1000, caught_up=True)
    frame = hub.next_frame(position, 1, "alpha")
    assert frame is not None
    assert set(json.loads(frame.text).get("cars", {})) == {"a-1"}
    catch_up = json.loads(hub.catch_up(position, fleet="beta").text)
    assert set(catch_up.get("cars", {})) == {"b-1"}


def traced(n: int) -> SpanContext:
    return SpanContext(n, 0x100 + n, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED))


async def test_a_tick_of_traced_events_is_a_frame_span_that_continues_one_and_links_the_rest() -> (
    None
):
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    hub = await new_hub(tracer_provider=provider)
    await hub.offer(status("a", T0), T0, traced(1))
    await hub.offer(status("b", T0), T0)
    await hub.offer(status("c", T0), T0, traced(2))
    hub.tick(T0 + 250, caught_up=True)
    hub.tick(T0 + 500, caught_up=True)  # nothing traced in it: no span

    (frame,) = spans.get_finished_spans()
    assert frame.name == "hub frame"
    assert frame.parent is not None and frame.context is not None
    assert (frame.context.trace_id, frame.parent.span_id) == (1, 0x101)
    assert [link.context for link in frame.links] == [traced(2)]
    assert frame.attributes is not None
    assert (
        frame.attributes["greenlane.frame.events"],
        frame.attributes["greenlane.frame.traced"],
    ) == (3, 2)
    assert frame.attributes["greenlane.frame.seq"] == hub.state.seq
