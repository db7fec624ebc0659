"""The rule that holds each image to its service's needs (pure: synthetic probe reports)."""

from __future__ import annotations

from typing import Any

from containers.packages import needed_distributions


def report(imports: dict[str, str | None], installed: dict[str, list[str]]) -> dict[str, Any]:
    return {
        "imports": {
            m: {"dist": d, "by": "greenlane.x", "optional": False} for m, d in imports.items()
        },
        "installed": {d: {"version": "1", "requires": r} for d, r in installed.items()},
        "unresolved": [],
    }


def test_a_distribution_is_needed_when_imported_or_required_by_one_that_is() -> None:
    found = needed_distributions(
        report(
            {"starlette.routing": "starlette", "json": None},
            {"starlette": ["anyio>=3", "httpx; extra == 'full'"], "anyio": ["idna"], "idna": []},
        )
    )
    assert found == {
        "starlette": "greenlane.x imports starlette.routing",
        "anyio": "starlette requires it",
        "idna": "anyio requires it",
    }


def test_requirements_for_other_platforms_and_pythons_are_not_needed() -> None:
    found = needed_distributions(
        report(
            {"aiokafka": "aiokafka"},
            {
                "aiokafka": [
                    "async-timeout; python_version < '3.11'",
                    "tzdata; sys_platform == 'win32'",
                    "packaging",
                ],
                "packaging": [],
            },
        )
    )
    assert set(found) == {"aiokafka", "packaging"}


def test_what_a_library_loads_at_run_time_is_needed_only_with_that_library() -> None:
    installed: dict[str, list[str]] = {"redis": [], "hiredis": [], "tzdata": [], "cramjam": []}
    with_redis = needed_distributions(report({"redis.asyncio": "redis"}, installed))
    assert set(with_redis) == {"redis", "hiredis"}
    with_zones = needed_distributions(report({"zoneinfo": None}, installed))
    assert with_zones == {"tzdata": "zoneinfo loads it at run time"}
    assert needed_distributions(report({"json": None}, installed)) == {}


def test_our_own_workspace_packages_are_never_counted_as_third_party_needs() -> None:
    found = needed_distributions(report({"greenlane.v1": "greenlane-core"}, {"greenlane-core": []}))
    assert found == {}
