"""The hub on the real broker (Tansu) and Valkey: order, resume, slow clients, bad input."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from typing import Any

import pytest
from hubtools import DEV_TOKEN, open_client, running_hub, stalled_socket, wait_until
from redis.asyncio import Redis
from websockets.exceptions import ConnectionClosed

from greenlane.cli.embedded import EmbeddedKafka, EmbeddedRedis
from greenlane.core.kafka import ensure_topic, make_producer
from greenlane.core.stations import Station, load_stations

pytestmark = pytest.mark.integration


def telemetry(car_id: str, t: int, battery: float, **extra: Any) -> dict[str, Any]:
    return {
        "car_id": car_id,
        "lat": 40.75 + (t % 1000) * 1e-5,
        "lon": -73.98,
        "battery": battery,
        "velocity": 30.0,
        "timestamp": t,
        "event_type": "telemetry",
        **extra,
    }


async def produce(kafka: str, topic: str, events: list[dict[str, Any] | bytes]) -> None:
    """Write events in order, keyed by car id like ingestion (bytes are sent as they are)."""
    producer = make_producer(kafka, client_id="test-hub")
    await producer.start()
    try:
        sent = []
        for event in events:
            if isinstance(event, bytes):
                value, key = event, b"garbage"
            else:
                value, key = json.dumps(event).encode(), str(event["car_id"]).encode()
            sent.append(await producer.send(topic, value, key=key))
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


def settings_for(redis: EmbeddedRedis, kafka: EmbeddedKafka, topic: str) -> dict[str, Any]:
    return {
        "redis_url": redis.url,
        "kafka_bootstrap_servers": kafka.url,
        "fleet_events_topic": topic,
    }


async def ready_hub_with_topic(kafka: EmbeddedKafka, topic: str) -> None:
    await ensure_topic(kafka.url, topic, partitions=3)


def get(port: int, path: str, token: str | None = DEV_TOKEN) -> tuple[int, Any]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    if token is not None:
        request.add_header("x-api-token", token)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


async def test_every_event_reaches_a_websocket_client_in_per_car_order(
    redis_server: EmbeddedRedis, kafka_server: EmbeddedKafka, topic: str, redis_client: Redis
) -> None:
    await ready_hub_with_topic(kafka_server, topic)
    async with running_hub(**settings_for(redis_server, kafka_server, topic)) as hub:
        await wait_until(lambda: hub.follower.ever_caught_up, what="the hub to follow the topic")
        client = await open_client(hub.port)
        await wait_until(lambda: client.position is not None, what="the first frame")
        now = int(time.time() * 1000)
        cars, rounds = 40, 25
        events = [
            telemetry(f"car-{c:02d}", now + r * 10 + c, 90.0 - r)
            for r in range(rounds)
            for c in range(cars)
        ]
        await produce(kafka_server.url, topic, events)
        last = {e["car_id"]: e for e in events}
        await wait_until(
            lambda: all(
                client.objects["cars"].get(c, {}).get("timestamp") == e["timestamp"]
                for c, e in last.items()
            ),
            what="every car's last event at the client",
        )
        for car_id, changes in client.car_changes.items():
            stamps = [c["timestamp"] for c in changes]
            assert stamps == sorted(set(stamps)), f"{car_id} out of order: {stamps}"
            assert changes[-1]["battery"] == last[car_id]["battery"]
        received = sum(len(changes) for changes in client.car_changes.values())
        # Each event reached the client, or was folded into a later change of its car.
        assert received + client.coalesced == len(events)
        assert received > 0
        await client.close()


async def test_a_hub_started_before_the_topic_exists_follows_it_once_it_is_made(
    redis_server: EmbeddedRedis, kafka_server: EmbeddedKafka, topic: str
) -> None:
    # As in greenlane dev, where the hub may start before ingestion makes the topic.
    async with running_hub(**settings_for(redis_server, kafka_server, topic)) as hub:
        await wait_until(lambda: hub.follower.topic_missing, what="the hub to wait for the topic")
        await ready_hub_with_topic(kafka_server, topic)
        await produce(
            kafka_server.url, topic, [telemetry("car-late", int(time.time() * 1000), 50.0)]
        )
        # Well within the consumer's periodic metadata refresh (5 minutes).
        await wait_until(
            lambda: "car-late" in hub.state.cars, seconds=20, what="the car in the hub"
        )


async def test_a_client_that_reconnects_with_since_gets_exactly_what_it_missed(
    redis_server: EmbeddedRedis, kafka_server: EmbeddedKafka, topic: str, redis_client: Redis
) -> None:
    await load_stations(redis_client, [Station("st-1", "One", 40.75, -73.98, 2, 50.0)])
    await ready_hub_with_topic(kafka_server, topic)
    now = int(time.time() * 1000)
    async with running_hub(**settings_for(redis_server, kafka_server, topic)) as hub:
        await produce(kafka_server.url, topic, [telemetry(f"car-{c}", now, 80.0) for c in range(6)])
        first = await open_client(hub.port)
        await wait_until(lambda: len(first.objects["cars"]) == 6, what="six cars")
        await wait_until(lambda: "st-1" in first.objects["stations"], what="the station")
        position, epoch = first.position, first.epoch
        await first.close()

        booked = {"booking_id": "bk-1", "station_id": "st-1", "expires_at": now + 1_200_000}
        missed: list[dict[str, Any]] = [
            telemetry("car-1", now + 1000, 70.0),
            telemetry("car-1", now + 2000, 60.0),
            telemetry("car-2", now + 1000, 15.0),
            {**telemetry("car-2", now + 1001, 15.0), "event_type": "booking_created", **booked},
            telemetry("car-new", now + 1000, 50.0),
            {
                **telemetry("car-3", now + 1000, 15.0),
                "event_type": "booking_created",
                "booking_id": "bk-2",
                "station_id": "st-1",
                "expires_at": now + 1_200_000,
            },
            {
                **telemetry("car-3", now + 1001, 15.0),
                "event_type": "booking_cancelled",
                "booking_id": "bk-2",
                "station_id": "st-1",
            },
        ]
        await produce(kafka_server.url, topic, missed)
        await wait_until(
            lambda: (
                "car-new" in {e.key for e in hub.state.entries()}
                and "bk-2" not in hub.state.bookings
                and hub.state.cars["car-1"].timestamp == now + 2000
            ),
            what="the hub to apply what the client missed",
        )
        await asyncio.sleep(0.3)  # a tick, so the changes carry a sequence number

        again = await open_client(hub.port, since=position, epoch=epoch)
        await wait_until(lambda: bool(again.frames), what="the resumed client's first frame")
        resumed = again.frames[0]
        assert resumed["type"] == "changes" and resumed["from"] == position
        # car-3's booking came and went and moved no car: only cars whose state changed.
        assert set(resumed["cars"]) == {"car-1", "car-2", "car-new"}
        assert resumed["cars"]["car-1"]["battery"] == 60.0  # its two changes, coalesced
        assert resumed["bookings"] == {"bk-1": resumed["bookings"]["bk-1"]}
        assert resumed["bookings"]["bk-1"]["car_id"] == "car-2"
        # bk-2 came and went while the client was away: nothing to tell it about bk-2.
        assert set(resumed["stations"]) == {"st-1"}
        assert resumed["stations"]["st-1"]["booked"] == 1
        fresh = await open_client(hub.port)
        await wait_until(lambda: fresh.position is not None, what="a fresh snapshot")
        await wait_until(lambda: again.position == fresh.position, what="the same position")
        # The first client's picture plus the frame is what a fresh snapshot shows.
        picture = {kind: dict(objects) for kind, objects in first.objects.items()}
        for kind in picture:
            for key, value in resumed.get(kind, {}).items():
                if value is None:
                    picture[kind].pop(key, None)
                else:
                    picture[kind][key] = value
        for kind in ("cars", "bookings", "stations"):
            assert picture[kind] == fresh.objects[kind], kind
        await again.close()
        await fresh.close()


async def test_a_client_that_stops_reading_does_not_delay_another(
    redis_server: EmbeddedRedis, kafka_server: EmbeddedKafka, topic: str, redis_client: Redis
) -> None:
    await ready_hub_with_topic(kafka_server, topic)
    overrides = settings_for(redis_server, kafka_server, topic)
    overrides |= {"hub_send_timeout_seconds": 2.0, "hub_slow_client_ticks": 4}
    async with running_hub(**overrides) as hub:
        await wait_until(lambda: hub.follower.ever_caught_up, what="the hub to follow the topic")
        stalled = await asyncio.to_thread(stalled_socket, hub.port)
        fast = await open_client(hub.port)
        await wait_until(lambda: hub.clients == 2, what="two clients")
        now = int(time.time() * 1000)
        # Enough frames (about 10 MB) to fill the kernel's socket buffers of the stalled one.
        cars, bursts = 5000, 18
        for burst in range(bursts):
            events = [telemetry(f"car-{c:04d}", now + burst * 100, 80 - burst) for c in range(cars)]
            await produce(kafka_server.url, topic, events)
            await asyncio.sleep(0.2)
        await wait_until(
            lambda: (
                len(fast.objects["cars"]) == cars
                and all(v["battery"] == 80 - bursts + 1 for v in fast.objects["cars"].values())
            ),
            seconds=20,
            what="the reading client to see the last burst",
        )
        # The stalled client was dropped, not waited for; the reading one never was.
        await wait_until(lambda: hub.clients == 1, seconds=20, what="the stalled client dropped")
        gaps = [b - a for a, b in zip(fast.arrivals, fast.arrivals[1:], strict=False)]
        assert max(gaps) < 5.0, f"the reading client waited {max(gaps):.1f} s for a frame"
        stalled.close()
        await fast.close()


async def test_the_feed_needs_a_token_and_names_a_bad_parameter(
    redis_server: EmbeddedRedis, kafka_server: EmbeddedKafka, topic: str, redis_client: Redis
) -> None:
    from websockets.asyncio.client import connect

    async with running_hub(**settings_for(redis_server, kafka_server, topic)) as hub:
        status, body = await asyncio.to_thread(get, hub.port, "/api/snapshot", None)
        assert status == 401 and "x-api-token" in body["detail"]
        status, body = await asyncio.to_thread(get, hub.port, "/api/snapshot", "wrong-token-123456")
        assert status == 401
        status, body = await asyncio.to_thread(get, hub.port, "/api/cars/bad%20id")
        assert (status, body["parameter"]) == (400, "car_id")
        status, body = await asyncio.to_thread(get, hub.port, "/api/cars/nobody")
        assert status == 404

        async with connect(f"ws://127.0.0.1:{hub.port}/ws") as ws:
            await ws.send(json.dumps({"type": "auth", "token": "wrong-token-123456"}))
            error = json.loads(await ws.recv())
            assert error["field"] == "token"
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
        async with connect(f"ws://127.0.0.1:{hub.port}/ws?since=-3") as ws:
            error = json.loads(await ws.recv())
            assert (error["type"], error["field"]) == ("error", "since")
        # A browser sends the token as its first message, never in the URL.
        async with connect(f"ws://127.0.0.1:{hub.port}/ws") as ws:
            await ws.send(json.dumps({"type": "auth", "token": DEV_TOKEN}))
            first = json.loads(await ws.recv())
            assert (first["type"], first["reason"]) == ("snapshot", "new")


async def test_unknown_and_malformed_messages_are_counted_and_the_feed_goes_on(
    redis_server: EmbeddedRedis, kafka_server: EmbeddedKafka, topic: str, redis_client: Redis
) -> None:
    await ready_hub_with_topic(kafka_server, topic)
    now = int(time.time() * 1000)
    plan = {
        "event_type": "charging_plan",
        "car_id": "car-1",
        "site_id": "site-a",
        "station_id": "st-1",
        "timestamp": now,
        "slot_minutes": 15,
        "start": now,
        "power_kw": [11.0, 7.4],
        "expected_kwh": 4.6,
        "expected_cost": 1.1,
        "feasible": True,
        "shortfall_kwh": 0.0,
        "reason": "",
        "setpoint_kw": 11.0,
        "setpoint_until": now + 900_000,
    }
    events: list[dict[str, Any] | bytes] = [
        b"not json at all",
        json.dumps({"car_id": "car-1", "event_type": "telemetry", "lat": "north"}).encode(),
        {**telemetry("car-1", now, 50.0), "event_type": "car_washed"},
        telemetry("car-1", now + 1, 44.0, station_id="st-1"),
        plan,
    ]
    async with running_hub(**settings_for(redis_server, kafka_server, topic)) as hub:
        await produce(kafka_server.url, topic, events)
        client = await open_client(hub.port)
        await wait_until(lambda: "car-1" in client.objects["plans"], what="the plan")
        assert client.objects["cars"]["car-1"]["station_id"] == "st-1"
        assert client.objects["plans"]["car-1"]["setpoint_kw"] == 11.0
        sample = hub.registry.get_sample_value
        assert sample("greenlane_hub_events_total", {"event_type": "malformed"}) == 2
        assert sample("greenlane_hub_events_total", {"event_type": "unknown"}) == 1
        assert sample("greenlane_hub_events_total", {"event_type": "charging_plan"}) == 1
        assert sample("greenlane_hub_clients") == 1
        assert (sample("greenlane_hub_frames_total") or 0) >= 1
        status, detail = await asyncio.to_thread(get, hub.port, "/api/cars/car-1")
        assert status == 200 and detail["plan"]["setpoint_kw"] == 11.0
        assert detail["history"][0][1] == 44.0
        await client.close()
