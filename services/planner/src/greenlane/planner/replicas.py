"""Which planner replica plans which site: rendezvous hashing over live replicas.

Every replica reads every partition of fleet-events (assigned, no consumer group: the
cars of one site are spread over every partition, keyed by car), so each one holds the
whole picture of every site. Each plans and publishes only the sites it owns: a site
belongs to the live replica with the highest hash of (replica, site). Replicas announce
themselves in one Redis sorted set (`{REGION}:planner-replicas`, score = last heartbeat);
when one stops or dies its sites move to the others within a heartbeat timeout, and they
are re-planned at once from the picture the new owner already holds.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

HEARTBEAT_SECONDS = 5.0
TIMEOUT_SECONDS = 15.0


def _weight(replica: str, site_id: str) -> bytes:
    return hashlib.blake2b(f"{replica}\x00{site_id}".encode(), digest_size=8).digest()


def owner(site_id: str, replicas: Iterable[str]) -> str | None:
    """The replica that plans site_id (None when there is none)."""
    return max(replicas, key=lambda r: _weight(r, site_id), default=None)


class Ownership:
    """This replica's share of the sites, from the live replicas it last saw."""

    def __init__(self, me: str) -> None:
        self.me = me
        self.replicas: frozenset[str] = frozenset({me})

    def owns(self, site_id: str) -> bool:
        return owner(site_id, self.replicas) == self.me

    def update(self, replicas: Iterable[str], sites: Iterable[str]) -> set[str]:
        """Take the live replicas (this one always among them); returns the sites this
        replica owns now and did not before."""
        sites = list(sites)
        before = {s for s in sites if self.owns(s)}
        self.replicas = frozenset(replicas) | {self.me}
        return {s for s in sites if self.owns(s)} - before
