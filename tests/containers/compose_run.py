"""A small runner for compose.yaml with docker or podman, where no compose tool is installed.

It reads the files as `docker compose -f A -f B` would (variables interpolated,
later files merged over earlier ones) and runs the services in depends_on order
on a network of their own, each reachable by its service name, waiting for each
condition (service_started, service_healthy by running the service's health check
in it, service_completed_successfully).

It implements the keys compose.yaml uses and refuses any other, so a new key
cannot go untested. Three are deliberately not applied: `ports` (nothing is
published: the host's default ports stay free for a running `make dev`),
`restart` (a failure must show, not be restarted away) and `build` (the images
are built beforehand by `make images` from the same Dockerfile and SERVICE;
tests check that build and image agree).
"""

from __future__ import annotations

import json
import re
import shlex
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import container_images as ci
import yaml

APPLIED: Final = {
    "image",
    "command",
    "entrypoint",
    "environment",
    "user",
    "read_only",
    "cap_drop",
    "security_opt",
    "tmpfs",
    "shm_size",
    "volumes",
    "healthcheck",
    "depends_on",
}
NOT_APPLIED: Final = {"ports", "restart", "build"}
TOP_LEVEL: Final = {"name", "services", "volumes"}

_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
    r"|(?P<plain>[A-Za-z_][A-Za-z0-9_]*))"
)


class ComposeError(Exception):
    """compose.yaml says something this runner cannot do, or a service failed."""


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Compose's ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error}, $NAME and $$."""

    def one(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name = match["braced"] or match["plain"]
        op, arg = match["op"], match["arg"] or ""
        value = env.get(name)
        unset = value is None or (op is not None and op.startswith(":") and value == "")
        if op in (":-", "-") and unset:
            return arg
        if op in (":?", "?") and unset:
            raise ComposeError(f"{name}: {arg or 'required'}")
        return value or ""

    return _VARIABLE.sub(one, text)


def _resolve(value: Any, env: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        return interpolate(value, env)
    if isinstance(value, list):
        return [_resolve(v, env) for v in value]
    if isinstance(value, dict):
        return {k: _resolve(v, env) for k, v in value.items()}
    return value


def merge(base: Any, over: Any) -> Any:
    """Mappings merge key by key; anything else (command, healthcheck.test) is replaced."""
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for key, value in over.items():
            out[key] = merge(base.get(key), value) if key in base else value
        return out
    return over


def load(paths: list[Path], env: Mapping[str, str]) -> dict[str, Any]:
    model: dict[str, Any] = {}
    for path in paths:
        model = merge(model, _resolve(yaml.safe_load(path.read_text()), env))
    unknown = set(model) - TOP_LEVEL - {k for k in model if k.startswith("x-")}
    if unknown:
        raise ComposeError(f"top-level keys this runner does not implement: {sorted(unknown)}")
    for name, service in model["services"].items():
        unknown = set(service) - APPLIED - NOT_APPLIED
        if unknown:
            raise ComposeError(f"{name}: keys this runner does not implement: {sorted(unknown)}")
    return model


def start_order(services: Mapping[str, Any]) -> list[str]:
    """Dependencies first (Kahn's algorithm, names sorted for a stable order)."""
    deps = {name: set(s.get("depends_on") or ()) for name, s in services.items()}
    for name, wanted in deps.items():
        if missing := wanted - set(services):
            raise ComposeError(f"{name} depends on unknown services {sorted(missing)}")
    order: list[str] = []
    ready = sorted(n for n, d in deps.items() if not d)
    while ready:
        name = ready.pop(0)
        order.append(name)
        for other in sorted(deps):
            if name in deps[other]:
                deps[other].discard(name)
                if not deps[other] and other not in order and other not in ready:
                    ready.append(other)
        ready.sort()
    if len(order) != len(services):
        raise ComposeError(f"depends_on has a cycle among {sorted(set(services) - set(order))}")
    return order


def _seconds(value: str | int | float | None, default: float) -> float:
    if value is None:
        return default
    if isinstance(value, int | float):
        return float(value)
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", value):
        total += float(number) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]
    return total


@dataclass
class ComposeRun:
    engine: ci.Engine
    model: dict[str, Any]
    project: str = field(default_factory=lambda: f"greenlane-test-{uuid.uuid4().hex[:8]}")
    containers: dict[str, str] = field(default_factory=dict)
    volumes: list[str] = field(default_factory=list)

    @property
    def network(self) -> str:
        return f"{self.project}_default"

    def run_flags(self, name: str, service: Mapping[str, Any]) -> list[str]:
        flags = [*self.engine.run_flags, "--name", self.containers[name]]
        flags += ["--network", self.network, "--network-alias", name]
        environment = service.get("environment") or {}
        if isinstance(environment, list):
            environment = dict(item.split("=", 1) for item in environment)
        for key, value in environment.items():
            flags += ["--env", f"{key}={'' if value is None else value}"]
        if "user" in service:
            flags += ["--user", str(service["user"])]
        if service.get("read_only"):
            flags.append("--read-only")
            if self.engine.name == "podman":
                flags.append("--read-only-tmpfs=false")  # only the tmpfs compose asks for
        for cap in service.get("cap_drop") or ():
            flags += ["--cap-drop", cap]
        for opt in service.get("security_opt") or ():
            flags += ["--security-opt", opt]
        for mount in service.get("tmpfs") or ():
            flags += ["--tmpfs", mount]
        if "shm_size" in service:
            flags += ["--shm-size", str(service["shm_size"])]
        for volume in service.get("volumes") or ():
            source, _, target = str(volume).partition(":")
            if source not in (self.model.get("volumes") or {}):
                raise ComposeError(f"{name}: only named volumes are implemented, not {volume}")
            flags += ["--volume", f"{self.project}_{source}:{target}"]
        entrypoint = service.get("entrypoint")
        command = service.get("command")
        args = shlex.split(command) if isinstance(command, str) else list(command or ())
        if entrypoint is not None:
            words = shlex.split(entrypoint) if isinstance(entrypoint, str) else list(entrypoint)
            flags += ["--entrypoint", words[0]]
            args = [*words[1:], *args]
        return [*flags, str(service["image"]), *args]

    def up(self, timeout: float = 300) -> None:
        self.engine.run("network", "create", self.network, timeout=60)
        for volume in self.model.get("volumes") or {}:
            self.engine.run("volume", "create", f"{self.project}_{volume}", timeout=60)
            self.volumes.append(f"{self.project}_{volume}")
        services = self.model["services"]
        for name in start_order(services):
            for dep, spec in (services[name].get("depends_on") or {}).items():
                condition = (spec or {}).get("condition", "service_started")
                self.wait_for(dep, condition, timeout)
            self.containers[name] = f"{self.project}-{name}"
            self.engine.run("run", "--detach", *self.run_flags(name, services[name]), timeout=120)

    def wait_for(self, name: str, condition: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.state(name)
            if condition == "service_completed_successfully":
                if not state.get("Running") and state.get("Status") == "exited":
                    if state.get("ExitCode") == 0:
                        return
                    raise ComposeError(f"{name} exited {state.get('ExitCode')}:\n{self.logs(name)}")
            elif not state.get("Running"):
                raise ComposeError(f"{name} is not running:\n{self.logs(name)}")
            elif condition == "service_started" or self.healthy(name):
                return
            time.sleep(1)
        raise ComposeError(f"{name}: not {condition} within {timeout} s:\n{self.logs(name)}")

    def healthy(self, name: str) -> bool:
        """Runs the service's health check inside it, as the engine would."""
        test = self.model["services"][name]["healthcheck"]["test"]
        if isinstance(test, str):
            test = ["CMD-SHELL", test]
        argv = ["sh", "-c", test[1]] if test[0] == "CMD-SHELL" else list(test[1:])
        check = self.model["services"][name]["healthcheck"].get("timeout")
        done = self.engine.run(
            "exec", self.containers[name], *argv, check=False, timeout=_seconds(check, 30) + 30
        )
        return done.returncode == 0

    def exec(self, name: str, *argv: str) -> Any:
        return self.engine.run("exec", self.containers[name], *argv, check=False, timeout=60)

    def state(self, name: str) -> dict[str, Any]:
        done = self.engine.run("inspect", self.containers[name], check=False, timeout=30)
        return dict(json.loads(done.stdout)[0].get("State") or {}) if done.returncode == 0 else {}

    def logs(self, name: str) -> str:
        done = self.engine.run("logs", self.containers[name], check=False, timeout=30)
        return (done.stdout + done.stderr)[-4000:]

    def down(self) -> None:
        for container in reversed(list(self.containers.values())):
            remove_container(self.engine, container)
        for volume in self.volumes:
            self.engine.run("volume", "rm", "--force", volume, check=False, timeout=60)
        self.engine.run("network", "rm", self.network, check=False, timeout=60)


def remove_container(engine: ci.Engine, name: str, attempts: int = 3) -> None:
    """rm --force, again if the container is still there (podman can lose that race)."""
    # docker's rm --force kills at once; podman's would wait its 10 s stop timeout.
    quick = ["--time", "2"] if engine.name == "podman" else []
    for _ in range(attempts):
        engine.run("rm", "--force", *quick, name, check=False, timeout=60)
        if engine.run("container", "inspect", name, check=False, timeout=30).returncode != 0:
            return
        time.sleep(1)
