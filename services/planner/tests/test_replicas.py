"""Planner replicas share the sites: each site has exactly one owner among the live ones."""

from __future__ import annotations

from greenlane.planner.replicas import Ownership, owner

SITES = [f"site-{i}" for i in range(200)]


def test_every_site_has_one_owner_and_the_sites_spread_over_the_replicas() -> None:
    replicas = ["a", "b", "c"]
    owned = {r: [s for s in SITES if owner(s, replicas) == r] for r in replicas}
    assert sum(len(v) for v in owned.values()) == len(SITES)
    assert all(40 <= len(v) <= 100 for v in owned.values()), {r: len(v) for r, v in owned.items()}


def test_when_a_replica_leaves_only_its_sites_move_and_the_others_gain_them() -> None:
    before = {s: owner(s, ["a", "b", "c"]) for s in SITES}
    after = {s: owner(s, ["a", "b"]) for s in SITES}
    moved = {s for s in SITES if before[s] != after[s]}
    assert moved == {s for s in SITES if before[s] == "c"}

    a = Ownership("a")
    a.update(["a", "b", "c"], SITES)
    gained = a.update(["a", "b"], SITES)
    assert gained == {s for s in moved if after[s] == "a"}
    assert all(a.owns(s) == (after[s] == "a") for s in SITES)


def test_a_replica_alone_or_not_yet_heard_of_owns_everything() -> None:
    alone = Ownership("me")
    assert all(alone.owns(s) for s in SITES)
    assert alone.update([], SITES) == set()  # it always counts itself
    assert owner("x", []) is None
