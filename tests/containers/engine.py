"""Running test containers: hardened by default, on the host network, always removed."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import container_images as ci
from containers.compose_run import remove_container


@dataclass
class Container:
    engine: ci.Engine
    name: str

    def logs(self) -> str:
        done = self.engine.run("logs", self.name, check=False, timeout=30)
        return done.stdout + done.stderr

    def state(self) -> dict[str, Any]:
        done = self.engine.run("inspect", self.name, check=False, timeout=30)
        if done.returncode != 0:
            return {}
        (info,) = json.loads(done.stdout)
        return dict(info.get("State") or {})

    def running(self) -> bool:
        return bool(self.state().get("Running"))

    def exit_code(self) -> int | None:
        state = self.state()
        return None if state.get("Running") else int(state.get("ExitCode", -1))

    def wait(self, timeout: float) -> int:
        self.engine.run("wait", self.name, timeout=timeout)
        code = self.exit_code()
        assert code is not None
        return code

    def stop(self, timeout: int = 10) -> None:
        self.engine.run("stop", "--time", str(timeout), self.name, check=False, timeout=60)


@dataclass
class Containers:
    """Starts containers and removes them all at the end of a test."""

    engine: ci.Engine
    started: list[Container] = field(default_factory=list)

    def command(
        self,
        image: str,
        *args: str,
        env: Mapping[str, str] = {},  # noqa: B006 - read only
        restricted: bool = True,
        network: str = "host",
        entrypoint: str | None = None,
        mounts: Sequence[tuple[Path, str]] = (),
        extra: Sequence[str] = (),
    ) -> list[str]:
        """`run` arguments: the machine's flags, the restricted profile, env, mounts."""
        flags = [*self.engine.run_flags, "--network", network]
        if restricted:
            flags += self.engine.restricted
        for key, value in env.items():
            flags += ["--env", f"{key}={value}"]
        for source, target in mounts:
            flags += ["--volume", f"{source}:{target}:ro"]
        if entrypoint is not None:
            flags += ["--entrypoint", entrypoint]
        return [*flags, *extra, image, *args]

    def start(self, image: str, *args: str, **options: Any) -> Container:
        name = f"greenlane-test-{uuid.uuid4().hex[:10]}"
        self.engine.run("run", "--detach", "--name", name, *self.command(image, *args, **options))
        container = Container(self.engine, name)
        self.started.append(container)
        return container

    def run(self, image: str, *args: str, timeout: float = 120, **options: Any) -> Any:
        """Run to completion; the CompletedProcess (stdout, stderr, returncode)."""
        return self.engine.run(
            "run", "--rm", *self.command(image, *args, **options), check=False, timeout=timeout
        )

    def remove_all(self) -> None:
        for container in self.started:
            remove_container(self.engine, container.name)
        self.started.clear()


def http_get(url: str, timeout: float = 5) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


async def wait_http(
    url: str, container: Container, *, status: int = 200, within: float = 60
) -> bytes:
    """Poll url until it answers `status`; fail with the container's log if it exits."""
    deadline = time.monotonic() + within
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            code, body = await asyncio.to_thread(http_get, url, 2)
            if code == status:
                return body
            last = f"{code} {body[:300]!r}"
        except OSError as exc:
            last = str(exc)
        if not await asyncio.to_thread(container.running):
            raise AssertionError(f"{container.name} exited; log:\n{container.logs()[-4000:]}")
        await asyncio.sleep(0.3)
    raise AssertionError(f"{url}: {last} after {within} s; log:\n{container.logs()[-4000:]}")
