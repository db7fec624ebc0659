"""The readiness registry behind /readyz: flags, checks, groups, and checks that misbehave."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from greenlane.core.lifecycle import Readiness


async def test_a_flag_reads_false_until_set() -> None:
    readiness = Readiness()
    started = readiness.flag("started")
    assert await readiness() == {"started": False}
    started.set()
    assert await readiness() == {"started": True}


async def test_sync_and_async_checks_are_both_evaluated_and_a_later_add_replaces() -> None:
    readiness = Readiness()

    async def pong() -> bool:
        return True

    readiness.add("redis", pong)
    readiness.add("kafka", lambda: False)
    assert await readiness() == {"redis": True, "kafka": False}
    readiness.add("kafka", lambda: True)
    assert await readiness() == {"redis": True, "kafka": True}


async def test_a_check_that_raises_or_hangs_reads_false_within_the_timeout() -> None:
    readiness = Readiness(timeout=0.05)

    def broken() -> bool:
        raise ConnectionError("redis is gone")

    async def hanging() -> bool:
        await asyncio.sleep(10)
        return True

    readiness.add("broken", broken)
    readiness.add("hanging", hanging)
    loop = asyncio.get_running_loop()
    began = loop.time()
    assert await readiness() == {"broken": False, "hanging": False}
    assert loop.time() - began < 5  # generous: the timeout, not the 10 s sleep


async def test_a_group_merges_its_named_results_and_a_failing_group_adds_nothing() -> None:
    readiness = Readiness()
    readiness.flag("started").set()

    async def worker() -> Mapping[str, bool]:
        return {"database": True, "grid": False}

    async def failing() -> Mapping[str, bool]:
        raise RuntimeError("no")

    readiness.add_group(worker)
    readiness.add_group(failing)
    assert await readiness() == {"started": True, "database": True, "grid": False}
