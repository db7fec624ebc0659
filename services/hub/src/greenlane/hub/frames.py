"""The JSON frames the hub sends, assembled from each object's cached encoding.

Object ids are map keys and are written without escaping: car, station and booking
ids all match the id pattern (letters, digits and _ . : -), checked when decoded.

- snapshot: `{"type":"snapshot","epoch","seq","reason"?,"cars":{id:obj},"stations":{…},
  "bookings":{…},"plans":{…},"stats":{…}}`: replaces everything a client holds.
- changes: `{"type":"changes","from","seq","coalesced","cars":{id:obj|null},…,"stats"?}`:
  applies on top of position `from` and moves the client to `seq`; null removes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from greenlane.hub.state import KINDS, Entry, Kind


def _maps(entries: Iterable[Entry], *, all_kinds: bool) -> str:
    grouped: dict[Kind, list[str]] = {kind: [] for kind in KINDS}
    for e in entries:
        grouped[e.kind].append(f'"{e.key}":{e.json()}')
    return ",".join(
        f'"{kind}":{{{",".join(items)}}}' for kind, items in grouped.items() if items or all_kinds
    )


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), allow_nan=False)


def encode_snapshot(
    epoch: str,
    seq: int,
    entries: Iterable[Entry],
    stats: dict[str, Any],
    reason: str | None = None,
) -> str:
    """Everything current at `seq`; `reason` says why a WebSocket client gets it."""
    head = f'{{"type":"snapshot","epoch":{_dumps(epoch)},"seq":{seq}'
    if reason:
        head += f',"reason":{_dumps(reason)}'
    return f'{head},{_maps(entries, all_kinds=True)},"stats":{_dumps(stats)}}}'


def encode_changes(
    since: int,
    seq: int,
    entries: Iterable[Entry],
    coalesced: int,
    stats: dict[str, Any] | None,
) -> str:
    """The changes that take a client from `since` to `seq`."""
    body = _maps(entries, all_kinds=False)
    text = f'{{"type":"changes","from":{since},"seq":{seq},"coalesced":{coalesced}'
    if body:
        text += "," + body
    if stats is not None:
        text += f',"stats":{_dumps(stats)}'
    return text + "}"


def encode_error(field: str, message: str) -> str:
    """Why a WebSocket is closed: the field at fault and what is wrong with it."""
    return _dumps({"type": "error", "field": field, "message": message})
