"""The planner's Redis: the sites it reads, the plans and schedules it writes, the goals
the API keeps, and the replicas' heartbeats. Every key comes from greenlane.core.keys."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

from greenlane.core import keys
from greenlane.core.keys import Region
from greenlane.core.plans import CarPlan, SiteSchedule
from greenlane.core.redis_state import RedisClient, is_cluster
from greenlane.planner.fleet import CarSpec, Goal, SiteInfo, StationInfo

# A goal set through the API is kept until a day after its departure.
GOAL_KEEP_MS: Final = 24 * 3600 * 1000
# A site's schedule outlives its plan by this much (then readers see no plan at all).
SCHEDULE_KEEP_MS: Final = 3600 * 1000


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _float(raw: Mapping[str, str], name: str, default: float = 0.0) -> float:
    try:
        return float(raw.get(name, default))
    except ValueError:
        return default


async def read_sites(client: RedisClient, region: Region) -> list[SiteInfo]:
    """Every site of the region with its limit and stations (as `stations load` wrote)."""
    site_ids = sorted(_text(s) for s in await client.smembers(region.sites))
    if not site_ids:
        return []
    # Every key of a region is in its slot: one pipeline, also on Redis Cluster.
    pipe = client.pipeline(transaction=False)
    for site_id in site_ids:
        pipe.hgetall(region.site(site_id))
        pipe.smembers(region.site_stations(site_id))
    answers = await pipe.execute()
    stations_of = {
        site_id: sorted(_text(s) for s in answers[2 * i + 1]) for i, site_id in enumerate(site_ids)
    }
    pipe = client.pipeline(transaction=False)
    wanted = [(site_id, st) for site_id in site_ids for st in stations_of[site_id]]
    for _, station_id in wanted:
        pipe.hgetall(region.station(station_id))
    station_hashes = await pipe.execute() if wanted else []
    stations: dict[str, dict[str, StationInfo]] = {site_id: {} for site_id in site_ids}
    for (site_id, station_id), raw in zip(wanted, station_hashes, strict=True):
        data = {_text(k): _text(v) for k, v in raw.items()}
        if not data or data.get("site_id", site_id) != site_id:
            continue  # removed, or moved to another site since the set was read
        stations[site_id][station_id] = StationInfo(
            station_id=station_id,
            site_id=site_id,
            power_kw=_float(data, "power_kw", 50.0),
            capacity=int(_float(data, "capacity", 1.0)),
            lat=_float(data, "lat"),
            lon=_float(data, "lon"),
        )
    sites = []
    for i, site_id in enumerate(site_ids):
        data = {_text(k): _text(v) for k, v in answers[2 * i].items()}
        limit = _float(data, "limit_kw", -1.0)
        if limit <= 0:
            continue  # a site set member without its hash: not a site to plan
        sites.append(SiteInfo(site_id, data.get("name", site_id), limit, stations[site_id]))
    return sites


async def write_site_plan(
    client: RedisClient,
    region: Region,
    schedule: SiteSchedule,
    gone: Iterable[str],
) -> None:
    """Each car's plan hash (expiring when its plan ends), the site's schedule, and the
    plans of cars that left the site deleted."""
    pipe = client.pipeline(transaction=not is_cluster(client))
    for plan in schedule.cars:
        # Every field is written each time, so the hash never holds a mix of two plans.
        key = keys.plan(plan.car_id)
        pipe.hset(key, mapping=dict(plan.to_hash()))  # type: ignore[arg-type]
        pipe.pexpireat(key, plan.end)
    for car_id in gone:
        pipe.delete(keys.plan(car_id))
    end = schedule.start + schedule.horizon * schedule.slot_minutes * 60_000
    pipe.set(
        region.site_schedule(schedule.site_id),
        schedule.dumps(),
        pxat=end + SCHEDULE_KEEP_MS,
    )
    await pipe.execute()


async def delete_plans(client: RedisClient, car_ids: Iterable[str]) -> None:
    pipe = client.pipeline(transaction=False)
    for car_id in car_ids:
        pipe.delete(keys.plan(car_id))
    await pipe.execute()


async def read_car_goal(client: RedisClient, car_id: str) -> tuple[Goal | None, CarSpec | None]:
    """The goal and the pack/power the API set for a car (None where it set none)."""
    pipe = client.pipeline(transaction=False)
    pipe.hgetall(keys.goal(car_id))
    pipe.hgetall(keys.car_spec(car_id))
    goal_raw, spec_raw = await pipe.execute()
    goal = spec = None
    if goal_raw:
        data = {_text(k): _text(v) for k, v in goal_raw.items()}
        goal = Goal(_float(data, "target_battery"), int(_float(data, "depart_at")))
    if spec_raw:
        data = {_text(k): _text(v) for k, v in spec_raw.items()}
        spec = CarSpec(_float(data, "pack_kwh"), _float(data, "max_kw"))
    return goal, spec


async def write_car_goal(
    client: RedisClient, car_id: str, goal: Goal, spec: CarSpec | None, now_ms: int
) -> None:
    """The API's goal (kept a day past its departure) and, when given, the car's spec."""
    pipe = client.pipeline(transaction=False)
    key = keys.goal(car_id)
    pipe.hset(
        key,
        mapping={
            "target_battery": repr(goal.target_battery),
            "depart_at": goal.depart_at,
            "set_at": now_ms,
        },
    )
    pipe.pexpireat(key, max(goal.depart_at, now_ms) + GOAL_KEEP_MS)
    if spec is not None:
        spec_key = keys.car_spec(car_id)
        fields = {
            k: repr(v) for k, v in (("pack_kwh", spec.pack_kwh), ("max_kw", spec.max_kw)) if v
        }
        if fields:
            pipe.hset(spec_key, mapping=fields)  # type: ignore[arg-type]
    await pipe.execute()


async def read_car_plan(client: RedisClient, car_id: str) -> CarPlan | None:
    raw = await client.hgetall(keys.plan(car_id))
    return CarPlan.from_hash(car_id, raw) if raw else None


async def car_owner(client: RedisClient, car_id: str) -> str | None:
    """The fleet that owns the car (the first that wrote it; None: no fleet wrote it)."""
    raw = await client.hget(keys.car_state(car_id), keys.OWNER_FIELD)
    return _text(raw) if raw else None


async def car_owners(client: RedisClient, car_ids: Iterable[str]) -> dict[str, str | None]:
    """The owning fleet of each car (pipelined; a non-transactional pipeline also spans
    the slots of a Redis Cluster)."""
    ids = list(car_ids)
    if not ids:
        return {}
    pipe = client.pipeline(transaction=False)
    for car_id in ids:
        pipe.hget(keys.car_state(car_id), keys.OWNER_FIELD)
    raw = await pipe.execute()
    return {c: (_text(v) if v else None) for c, v in zip(ids, raw, strict=True)}


async def heartbeat(
    client: RedisClient, region: Region, me: str, now_ms: int, timeout_ms: int
) -> list[str]:
    """Announce this replica, drop the ones silent past the timeout; the live ones."""
    key = region.planner_replicas
    pipe = client.pipeline(transaction=not is_cluster(client))
    pipe.zadd(key, {me: now_ms})
    pipe.zremrangebyscore(key, "-inf", now_ms - timeout_ms)
    pipe.zrange(key, 0, -1)
    answers = await pipe.execute()
    return [_text(m) for m in answers[-1]]


async def leave(client: RedisClient, region: Region, me: str) -> None:
    await client.zrem(region.planner_replicas, me)
