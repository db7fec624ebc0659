"""Which distributions a service needs: what its code imports, and what those require.

imports_probe.py reads the service's code inside its image (or slim environment);
this side follows Requires-Dist with `packaging`, markers evaluated for the
image's platform (the same as these machines': CPython 3.11 on Linux x86-64).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from packaging.requirements import Requirement

PROBE: Final = Path(__file__).with_name("imports_probe.py")

# Extra entry points of an image beyond `python -m greenlane.<service>`: the chart's
# migration Job (and compose's migrate service) run this in the pricing-worker image.
ENTRY_POINTS: Final = {"pricing_worker": ["greenlane.core.migrations"]}

# What a library loads by itself at run time, so no import of ours names it: the
# hiredis parser of redis, aiokafka's codecs for snappy/lz4/zstd batches, psycopg's
# C implementation, the IANA zones zoneinfo falls back to without /usr/share/zoneinfo,
# and the WebSocket implementation uvicorn is configured with.
LOADED_AT_RUN_TIME: Final = {
    "redis": ("hiredis",),
    "aiokafka": ("cramjam",),
    "psycopg": ("psycopg-binary",),
    "zoneinfo": ("tzdata",),
    # uvicorn runs the WebSocket protocol it is configured with (the hub: websockets).
    "uvicorn": ("websockets",),
}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def probe_imports(service: str, python: Callable[..., Any]) -> dict[str, Any]:
    """Run the probe with `python(*args)` (a container or a venv); its parsed report."""
    roots = [f"greenlane.{service}", *ENTRY_POINTS.get(service, ())]
    done = python("-c", PROBE.read_text(), *roots)
    if done.returncode != 0:
        raise AssertionError(f"the import probe failed:\n{done.stderr}")
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def needed_distributions(report: dict[str, Any]) -> dict[str, str]:
    """distribution -> why it is needed, for every third-party one the service's code uses."""
    installed: dict[str, Any] = report["installed"]
    needed: dict[str, str] = {}
    for module, found in sorted(report["imports"].items()):
        dist = found["dist"]
        if dist is not None and not dist.startswith("greenlane-"):
            needed.setdefault(dist, f"{found['by']} imports {module}")
        for companion in LOADED_AT_RUN_TIME.get(dist or module.split(".")[0], ()):
            if companion in installed:
                needed.setdefault(companion, f"{dist or module} loads it at run time")
    # The markers of the interpreter the probe ran in (an image's Python may be another
    # patch release than the runner's); the runner's platform otherwise.
    environment = {"extra": ""}
    if version := report.get("python_full_version"):
        environment["python_full_version"] = version
        environment["python_version"] = ".".join(version.split(".")[:2])
    queue = list(needed)
    while queue:
        dist = queue.pop()
        for line in (installed.get(dist) or {}).get("requires", ()):
            requirement = Requirement(line)
            if requirement.marker is not None and not requirement.marker.evaluate(environment):
                continue
            name = canonical(requirement.name)
            if name not in needed:
                needed[name] = f"{dist} requires it"
                queue.append(name)
    return needed
