"""The live fleet picture in Redis: the client (standalone or Cluster) and car-state writes.

Car states are written by one Lua script generated from the event table
(greenlane.core.events.REDIS_FIELDS). Per car it keeps the newest timestamp: an older
status leaves the car's hash and position alone (it is still history, for Kafka), and a
flush writes only each car's newest status. A
status that Redis refuses (say a key of the wrong type) fails alone; the others of the
call are stored. On a standalone server one call writes a whole flush; on Redis Cluster
the car hashes are written with one call per slot (shard of the fleet) and the fleet's
GEO index with one more, each keeping the newest timestamp on its own.

Every write answers, per status, what the car held before, so a status the flush could
not publish can be taken back (`CarStateWrite.undo`): that is how an UNAVAILABLE answer
means that nothing of the status stayed in Redis.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Final, TypeAlias

from redis import crc
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import (
    ClusterError,
    NoScriptError,
    RedisClusterException,
    RedisError,
    ResponseError,
)

from greenlane.core import keys
from greenlane.core.events import CAR_STATE_FIELDS, REDIS_FIELDS, CarState, state_from_hash

log = logging.getLogger(__name__)

RedisClient: TypeAlias = "Redis | RedisCluster"


class BoundedRedisCluster(RedisCluster):
    """A cluster client whose callers wait for one of max_connections calls in flight
    (as with BlockingConnectionPool) instead of failing with MaxConnectionsError."""

    def __init__(self, *, max_connections: int = 64, **kwargs: Any) -> None:
        super().__init__(max_connections=max_connections, **kwargs)
        self._in_flight = asyncio.Semaphore(max_connections)

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        async with self._in_flight:
            return await super().execute_command(*args, **kwargs)


def connect(
    url: str,
    *,
    cluster: bool = False,
    max_connections: int = 64,
    timeout: float = 5.0,
) -> RedisClient:
    """A client for GREENLANE_REDIS_URL; with cluster (GREENLANE_REDIS_CLUSTER) a Redis
    Cluster client that finds every node from the one in the URL.

    Callers wait for a free connection (bounded) rather than fail when all are busy.
    """
    if cluster:
        return BoundedRedisCluster.from_url(
            url,
            max_connections=max_connections,
            socket_timeout=timeout,
            socket_connect_timeout=min(timeout, 2.0),
        )
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=timeout,
        socket_timeout=timeout,
        socket_connect_timeout=min(timeout, 2.0),
    )
    return Redis.from_pool(pool)


def is_cluster(client: RedisClient) -> bool:
    return isinstance(client, RedisCluster)


# Errors a later try may not see: the server is away, busy, moving slots or short of memory.
_TRANSIENT_REPLIES: Final = (
    "OOM",
    "BUSY",
    "LOADING",
    "TRYAGAIN",
    "CLUSTERDOWN",
    "MASTERDOWN",
    "READONLY",
)


def is_transient(exc: BaseException) -> bool:
    """Whether a Redis failure may pass (retry it) or is permanent (never retry it)."""
    if isinstance(exc, ClusterError | RedisClusterException | OSError | TimeoutError):
        return True
    if isinstance(exc, ResponseError):
        return str(exc).startswith(_TRANSIENT_REPLIES)
    return isinstance(exc, RedisError)  # connection and timeout errors


# --- the scripts, generated from the table ----------------------------------------------

_NAMES: Final = REDIS_FIELDS
_STRIDE: Final = 2 + len(_NAMES)  # car_id, the hash fields, then the writer's claim
_OWNER: Final = 1 + len(_NAMES)  # the owner's position in the HMGET reply
# 1-based positions in HMGET replies and among a status's values.
_AT: Final = {name: i + 1 for i, name in enumerate(_NAMES)}
_TS, _LAT, _LON = _AT["timestamp"], _AT["lat"], _AT["lon"]
_SEP: Final = "|"  # never in a value: ids match CAR_ID_PATTERN, the rest are numbers


def _lua_list(items: Sequence[str]) -> str:
    return ", ".join(f"'{x}'" for x in items)


def _hset_args(value: str) -> str:
    """`'lat', <value of lat>, 'lon', ...` for HSET, values from a Lua expression pattern."""
    return ", ".join(f"'{n}', {value.format(i=_AT[n])}" for n in _NAMES)


_PREAMBLE: Final = """
local mode = ARGV[1]
local fleet, cars = mode ~= 'c', mode ~= 'f'
local first = fleet and 2 or 0
if fleet then
  for k, want in pairs({[1] = 'zset', [2] = 'hash'}) do
    local t = redis.call('TYPE', KEYS[k])['ok']
    if t ~= want and t ~= 'none' then
      return redis.error_reply('WRONGTYPE ' .. KEYS[k] .. ' holds a ' .. t .. ', not a ' .. want)
    end
  end
end
"""

# KEYS: mode 'cf' (standalone): the fleet GEO index, its timestamps, then one car hash per
# status; 'c': only car hashes (one slot); 'f': only the fleet's two keys. The timestamps
# hash is kept only where the index and the hashes live apart ('f', on Redis Cluster): in
# 'cf' the car's hash decides for both, in one step.
# ARGV: mode, then per status car_id, the hash fields in REDIS_FIELDS order, and the
# writer's claim: its fleet ('acme'; '*acme' for an operator, who may write any car; ''
# for none). A car belongs to the fleet that first wrote it (the hash's OWNER_FIELD);
# another fleet's status for it is refused.
# Returns per status '=' .. what the car held before (values joined by '|', or nothing
# when it held nothing; mode 'f': 'timestamp|lon|lat'), '<' when it held a newer status,
# '#' when the car belongs to another fleet, or '!' .. the error that refused this status
# alone.
WRITE_LUA: Final = (
    _PREAMBLE
    + f"""
local n = (#ARGV - 1) / {_STRIDE}
local out = {{}}
for i = 1, n do
  local b = 1 + (i - 1) * {_STRIDE}
  local car, ts = ARGV[b + 1], tonumber(ARGV[b + 1 + {_TS}])
  local claim = ARGV[b + {_STRIDE}]
  local op = string.byte(claim, 1) == 42
  if op then claim = string.sub(claim, 2) end
  local res
  if cars then
    local key = KEYS[first + i]
    local p = redis.pcall('HMGET', key, {_lua_list((*_NAMES, keys.OWNER_FIELD))})
    local owner = not p.err and p[{_OWNER}]
    if p.err then
      res = '!' .. p.err
    elseif owner and claim ~= '' and not op and owner ~= claim then
      res = '#'
    elseif p[{_TS}] and tonumber(p[{_TS}]) >= ts then
      res = '<'
    else
      -- HMGET proved the key a hash (or absent): HSET cannot refuse it.
      redis.call('HSET', key, {_hset_args("ARGV[b + 1 + {i}]")})
      if not owner and claim ~= '' then redis.call('HSET', key, '{keys.OWNER_FIELD}', claim) end
      if p[{_TS}] then
        res = '=' .. {" .. '|' .. ".join(f"(p[{_AT[n]}] or '')" for n in _NAMES)}
      else
        res = '='
      end
    end
  end
  if fleet and (res == nil or string.byte(res) == 61) then
    local lon, lat = ARGV[b + 1 + {_LON}], ARGV[b + 1 + {_LAT}]
    if cars then
      -- One server: the car's hash decided, atomically; its position follows.
      redis.call('GEOADD', KEYS[1], lon, lat, car)
    else
      local t = redis.call('HGET', KEYS[2], car)
      if t and tonumber(t) >= ts then
        res = '<'
      else
        local pos = redis.call('GEOPOS', KEYS[1], car)[1]
        redis.call('GEOADD', KEYS[1], lon, lat, car)
        redis.call('HSET', KEYS[2], car, ARGV[b + 1 + {_TS}])
        res = '='
        if t and pos then res = '=' .. t .. '|' .. pos[1] .. '|' .. pos[2] end
      end
    end
  end
  out[i] = res
end
return out
"""
)

# Takes statuses back: a car (or its position) that still holds the timestamp a write
# gave it goes back to a given state, or to nothing. KEYS as for WRITE_LUA; ARGV: mode, then
# per status car_id, the timestamp written, and the state to go back to as WRITE_LUA's '='
# replies give one (hash values joined by '|'; mode 'f': 'timestamp|lon|lat'; '': none).
UNDO_LUA: Final = (
    _PREAMBLE
    + f"""
local function split(s)
  local v = {{}}
  for x in string.gmatch(s .. '|', '([^|]*)|') do v[#v + 1] = x end
  return v
end
local function place(car, ts, lon, lat)
  if ts == nil then
    redis.call('ZREM', KEYS[1], car)
    redis.call('HDEL', KEYS[2], car)
  else
    redis.call('GEOADD', KEYS[1], lon, lat, car)
    redis.call('HSET', KEYS[2], car, ts)
  end
end
local n = (#ARGV - 1) / 3
for i = 1, n do
  local car, ts, prev = ARGV[3 * i - 1], ARGV[3 * i], ARGV[3 * i + 1]
  local v = prev ~= '' and split(prev) or nil
  if cars then
    local key = KEYS[first + i]
    if redis.call('HGET', key, 'timestamp') == ts then
      if v then
        redis.call('HSET', key, {_hset_args("v[{i}]")})
      else
        redis.call('DEL', key)
      end
      if fleet then
        if v then
          redis.call('GEOADD', KEYS[1], v[{_LON}], v[{_LAT}], car)
        else
          redis.call('ZREM', KEYS[1], car)
        end
      end
    end
  elseif redis.call('HGET', KEYS[2], car) == ts then
    if v then place(car, v[1], v[2], v[3]) else place(car) end
  end
end
return n
"""
)


@dataclass(frozen=True, slots=True)
class Script:
    """A Lua script and its SHA1 (what EVALSHA names it by)."""

    text: str
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sha", hashlib.sha1(self.text.encode()).hexdigest())


WRITE: Final = Script(WRITE_LUA)
UNDO: Final = Script(UNDO_LUA)


# --- packing --------------------------------------------------------------------------


def _bulk(value: str) -> str:
    return f"${len(value)}\r\n{value}\r\n"


@lru_cache(maxsize=200_000)
def _car(car_id: str) -> tuple[str, str, int]:
    """The car's hash key, the same as a RESP bulk string, and its cluster slot."""
    key = keys.car_state(car_id)
    return key, _bulk(key), crc.key_slot(key.encode())


def _generate_packers() -> str:
    """Python source of `_values(s)` (a status's ARGV) and `_argv(s)` (the same as RESP)."""
    rules = dict(CAR_STATE_FIELDS)
    exprs = ["s.car_id"]
    for name in _NAMES:
        kind = rules[name].kind
        exprs.append(
            f"repr(s.{name})"
            if kind == "number"
            else f"str(s.{name})"
            if kind == "timestamp"
            else f"s.{name}"
        )
    exprs.append("claim")
    assign = [f"    a{i} = {e}" for i, e in enumerate(exprs)]
    fmt = "$%d\\r\\n%s\\r\\n" * len(exprs)
    lengths = ", ".join(f"len(a{i}), a{i}" for i in range(len(exprs)))
    return "\n".join(
        [
            "def _values(s, claim=''):",
            f"    return ({', '.join(exprs)})",
            "",
            "def _argv(s, claim=''):",
            *assign,
            f'    return "{fmt}" % ({lengths})',
        ]
    )


_PACKER_SOURCE: Final = _generate_packers()
_ns: dict[str, Any] = {}
exec(compile(_PACKER_SOURCE, "<greenlane.core.redis_state generated>", "exec"), _ns)  # noqa: S102
_values: Callable[[CarState, str], tuple[str, ...]] = _ns["_values"]
_argv: Callable[[CarState, str], str] = _ns["_argv"]


def pack_call(
    script: Script, keys_resp: Sequence[str], argv_resp: Sequence[str], numkeys: int, nargs: int
) -> bytes:
    """RESP of one EVALSHA whose keys and arguments are RESP bulk strings already."""
    head = f"*{3 + numkeys + nargs}\r\n$7\r\nEVALSHA\r\n$40\r\n{script.sha}\r\n" + _bulk(
        str(numkeys)
    )
    return (head + "".join(keys_resp) + "".join(argv_resp)).encode()


# --- writing -----------------------------------------------------------------------------

_FLEET_KEYS: Final = (keys.FLEET_LOCATIONS, keys.FLEET_TIMESTAMPS)
_FLEET_RESP: Final = "".join(_bulk(k) for k in _FLEET_KEYS)
Reply = bytes | None  # b"=..." stored (what it replaced), b"<" older, b"#" another fleet's,
# b"!..." refused
_REFUSED: Final = (b"!", b"#")


class Denied(str):
    """The reason a status is refused because its car belongs to another fleet."""


def claim_of(fleet: str | None, operator: bool = False) -> str:
    """What a write claims for its statuses (see WRITE_LUA): '' claims nothing."""
    if not fleet:
        return ""
    return ("*" if operator else "") + fleet


@dataclass(slots=True)
class _Call:
    """One script call of a write: its mode, the statuses it carries, and where its
    replies go (the car part or the fleet part of the statuses)."""

    mode: str  # 'cf' (standalone: both parts), 'c' (car hashes of one slot), 'f' (fleet)
    indices: list[int]
    replies: list[Reply]
    done: bool = False


def _by_slot(states: Sequence[CarState], indices: Sequence[int]) -> list[list[int]]:
    groups: dict[int, list[int]] = {}
    for i in indices:
        groups.setdefault(_car(states[i].car_id)[2], []).append(i)
    return list(groups.values())


def _newest_per_car(
    states: Sequence[CarState], claims: Sequence[str]
) -> tuple[list[int], list[int]]:
    """The index of each car's newest status (the first, among equal timestamps) per
    claim (one fleet's status never speaks for another's), and for every status the
    index that speaks for it in Redis."""
    best: dict[tuple[str, str], int] = {}
    for i, s in enumerate(states):
        k = (s.car_id, claims[i])
        j = best.get(k)
        if j is None or s.timestamp > states[j].timestamp:
            best[k] = i
    return list(best.values()), [best[(s.car_id, claims[i])] for i, s in enumerate(states)]


def _text_of(state: CarState, fleet_only: bool) -> str:
    """A state as a write's '=' reply gives a previous one (see WRITE_LUA)."""
    if fleet_only:
        return f"{state.timestamp}|{state.lon!r}|{state.lat!r}"
    return _SEP.join(_values(state, "")[1:-1])  # the hash fields, not the id or the claim


def _ts_of(previous: str, fleet_only: bool) -> int:
    return int(previous.split(_SEP)[0 if fleet_only else _TS - 1])


class CarStateWrite:
    """The Redis side of one flush: try until done, read the outcome per status, undo.

    Only each car's newest status of the flush is written: the older ones are history,
    for Kafka, and Redis keeps the newest anyway. They share their newest one's outcome.
    """

    def __init__(
        self,
        store: CarStateStore,
        states: Sequence[CarState],
        claims: Sequence[str] | None = None,
    ) -> None:
        self._store = store
        self._states = states
        self._claims = claims if claims is not None else [""] * len(states)
        written, self._speaker = _newest_per_car(states, self._claims)
        self._car: list[Reply] = [None] * len(states)
        self._fleet: list[Reply] | None = None
        if store.cluster:
            # Car hashes first, one call per slot; then the fleet's index for the statuses
            # whose car took them, so a refused status leaves no position either.
            self._fleet = [None] * len(states)
            self._calls = [_Call("c", idx, self._car) for idx in _by_slot(states, written)]
        else:
            # One call writes both parts: its reply speaks for both.
            self._calls = [_Call("cf", written, self._car)]
        self.failed_calls = 0  # for metrics

    def _fleet_todo(self) -> list[int]:
        """Statuses whose car part is answered (not refused) and whose position is not."""
        fleet = self._fleet
        if fleet is None:
            return []
        return [
            i
            for call in self._calls
            for i in call.indices
            if (car := self._car[i]) is not None and car[:1] not in _REFUSED and fleet[i] is None
        ]

    @property
    def pending(self) -> bool:
        """Some part has no answer yet (not tried, or a failure that may pass)."""
        return any(not c.done for c in self._calls) or bool(self._fleet_todo())

    async def attempt(self) -> None:
        """One try at every part still pending; failures that may pass stay pending."""
        await asyncio.gather(*(self._run(c) for c in self._calls if not c.done))
        todo = self._fleet_todo()
        if todo and self._fleet is not None:
            await self._run(_Call("f", todo, self._fleet))

    async def _run(self, call: _Call) -> None:
        states = [self._states[i] for i in call.indices]
        claims = [self._claims[i] for i in call.indices]
        pack = _values if self._store.cluster else _argv
        try:
            replies = await self._store.run(
                WRITE, call.mode, states, [pack(s, c) for s, c in zip(states, claims, strict=True)]
            )
        except Exception as exc:
            self.failed_calls += 1
            if is_transient(exc):
                log.warning("Redis write of %d statuses failed (retried): %s", len(states), exc)
                return
            log.warning("Redis refused a write of %d statuses: %s", len(states), exc)
            replies = [b"!" + str(exc).encode()] * len(states)
        for i, reply in zip(call.indices, replies, strict=True):
            call.replies[i] = reply
        call.done = True

    def _failure(self, j: int) -> str | None:
        """Why the written status j is not taken (None: it is; "": no answer)."""
        car = self._car[j]
        parts = (car,) if self._fleet is None else (car, self._fleet[j])
        for p in parts:
            if p is not None and p[:1] == b"#":
                return Denied(f"car_id: {self._states[j].car_id} belongs to another fleet")
            if p is not None and p[:1] == b"!":
                return "Redis refused it: " + p[1:].decode(errors="replace")
        return "" if any(p is None for p in parts) else None

    def failures(self) -> dict[int, str]:
        """The statuses Redis did not take (it holds neither them nor a newer state of
        their car), and why: what refused them, or "" when Redis did not answer."""
        bad = {
            j: why
            for call in self._calls
            for j in call.indices
            if (why := self._failure(j)) is not None
        }
        if not bad:
            return {}
        return {i: bad[j] for i, j in enumerate(self._speaker) if j in bad}

    async def undo(self, failed: Sequence[int]) -> int:
        """Take back the statuses that are not stored; returns how many cars it touched.

        A car gets the newest of what it held before the flush and of its statuses in the
        flush that are stored; a car that holds a later status meanwhile keeps it.
        """
        gone = set(failed)
        kept: dict[str, int] = {}  # car -> its newest status of the flush that stays
        for i, s in enumerate(self._states):
            if i not in gone:
                k = kept.get(s.car_id)
                if k is None or s.timestamp > self._states[k].timestamp:
                    kept[s.car_id] = i
        parts = [("cf" if self._fleet is None else "c", self._car)]
        if self._fleet is not None:
            parts.append(("f", self._fleet))
        touched: set[str] = set()
        calls: list[tuple[str, list[tuple[int, str]]]] = []
        for mode, replies in parts:
            rows = [
                (i, self._fallback(mode, reply[1:].decode(), kept.get(self._states[i].car_id)))
                for i, reply in enumerate(replies)
                if i in gone and reply is not None and reply[:1] == b"="
            ]
            touched.update(self._states[i].car_id for i, _ in rows)
            if mode == "c":
                back = dict(rows)
                groups = _by_slot(self._states, [i for i, _ in rows])
                calls += [(mode, [(i, back[i]) for i in group]) for group in groups]
            elif rows:
                calls.append((mode, rows))
        await asyncio.gather(*(self._undo(mode, rows) for mode, rows in calls))
        return len(touched)

    def _fallback(self, mode: str, previous: str, kept: int | None) -> str:
        """What a car goes back to: the newer of what it held and of its stored status."""
        fleet_only = mode == "f"
        if kept is None:
            return previous
        state = self._states[kept]
        if previous and _ts_of(previous, fleet_only) >= state.timestamp:
            return previous
        return _text_of(state, fleet_only)

    async def _undo(self, mode: str, rows: list[tuple[int, str]]) -> None:
        states = [self._states[i] for i, _ in rows]
        values: list[Any] = [
            (s.car_id, str(s.timestamp), back) for s, (_, back) in zip(states, rows, strict=True)
        ]
        if not self._store.cluster:
            values = ["".join(_bulk(v) for v in row) for row in values]
        await self._store.run(UNDO, mode, states, values)


class CarStateStore:
    """Writes car states to a standalone Redis or a Redis Cluster."""

    def __init__(self, client: RedisClient) -> None:
        self.client = client
        self.cluster = is_cluster(client)

    def begin(
        self, states: Sequence[CarState], claims: Sequence[str] | None = None
    ) -> CarStateWrite:
        """A write of states; claims[i] is status i's fleet claim (claim_of), None: none."""
        return CarStateWrite(self, states, claims)

    async def run(
        self, script: Script, mode: str, states: Sequence[CarState], values: Sequence[Any]
    ) -> Any:
        """Run a script in a mode over statuses (KEYS from the mode and the cars).

        values: per status its arguments: RESP text on a standalone server (packed by
        hand: the hot path), a tuple of strings on a cluster.
        """
        with_fleet, with_cars = "f" in mode, mode != "f"
        if isinstance(self.client, RedisCluster):
            ks = list(_FLEET_KEYS) if with_fleet else []
            if with_cars:
                ks += [_car(s.car_id)[0] for s in states]
            args = [mode, *(v for row in values for v in row)]
            try:
                return await self.client.evalsha(script.sha, len(ks), *ks, *args)
            except NoScriptError:
                return await self.client.eval(script.text, len(ks), *ks, *args)
        keys_resp = [_FLEET_RESP] if with_fleet else []
        if with_cars:
            keys_resp += [_car(s.car_id)[1] for s in states]
        numkeys = (2 if with_fleet else 0) + (len(states) if with_cars else 0)
        per_status = _STRIDE if script is WRITE else 3
        packed = pack_call(
            script, keys_resp, [_bulk(mode), *values], numkeys, 1 + per_status * len(states)
        )
        return await self._send(packed, script)

    async def _send(self, packed: bytes, script: Script) -> Any:
        assert isinstance(self.client, Redis)
        pool = self.client.connection_pool
        conn = await pool.get_connection()  # type: ignore[no-untyped-call]
        try:
            await conn.send_packed_command(packed)
            try:
                return await conn.read_response()
            except NoScriptError:
                # A server that does not know the script yet (or restarted) learns it.
                await conn.send_command("SCRIPT", "LOAD", script.text)
                await conn.read_response()
                await conn.send_packed_command(packed)
                return await conn.read_response()
        except BaseException:
            # A half-read connection must never go back into the pool.
            await conn.disconnect()
            raise
        finally:
            await pool.release(conn)


async def write_car_states(client: RedisClient, states: Sequence[CarState]) -> None:
    """Write states (newest timestamp wins per car); raise if any was not stored."""
    if not states:
        return
    write = CarStateStore(client).begin(states)
    await write.attempt()
    failed = write.failures()
    if failed:
        first = next(iter(failed.values())) or "no answer"
        raise RedisError(f"{len(failed)} of {len(states)} states not stored: {first}")


async def read_car_state(client: RedisClient, car_id: str) -> dict[str, str]:
    """The car's hash as text (empty when Redis holds no state for it)."""
    raw = await client.hgetall(keys.car_state(car_id))
    return {
        (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
        for k, v in raw.items()
    }


async def read_state(client: RedisClient, car_id: str) -> CarState | None:
    """The car's latest stored state; None when Redis holds none (or an unreadable one)."""
    return state_from_hash(car_id, await client.hgetall(keys.car_state(car_id)))


async def count_cars(client: RedisClient) -> int:
    """Cars with a position in the fleet's GEO index."""
    return int(await client.zcard(keys.FLEET_LOCATIONS))
