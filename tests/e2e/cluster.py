"""Reach a GreenLane release in any cluster through kubectl: port-forwards and secrets."""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FORWARDING = re.compile(r"Forwarding from 127\.0\.0\.1:(\d+) ->")


class ClusterUnreachable(AssertionError):
    """No cluster, or no GreenLane release in it: the e2e tests cannot run."""


def kubectl_binary() -> str:
    """$KUBECTL, else kubectl on PATH, else the pinned one in .tools/bin."""
    for candidate in (
        os.environ.get("KUBECTL"),
        shutil.which("kubectl"),
        ROOT / ".tools/bin/kubectl",
    ):
        if candidate and Path(candidate).is_file():
            return str(candidate)
    raise ClusterUnreachable("kubectl not found: set $KUBECTL or run scripts/tools/install_helm.sh")


@dataclass(frozen=True)
class Release:
    """Where the release under test is: $GREENLANE_E2E_NAMESPACE / _RELEASE / _FULLNAME."""

    namespace: str
    name: str
    fullname: str

    @classmethod
    def from_env(cls) -> Release:
        namespace = os.environ.get("GREENLANE_E2E_NAMESPACE", "greenlane")
        name = os.environ.get("GREENLANE_E2E_RELEASE", "greenlane")
        # The chart's naming: RELEASE-greenlane, or RELEASE alone when it says greenlane.
        default = name if "greenlane" in name else f"{name}-greenlane"
        return cls(namespace, name, os.environ.get("GREENLANE_E2E_FULLNAME", default))

    def kubectl(self, *args: str, timeout: float = 60) -> str:
        done = subprocess.run(
            [kubectl_binary(), "--namespace", self.namespace, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            raise ClusterUnreachable(f"kubectl {' '.join(args)} failed: {done.stderr.strip()}")
        return done.stdout

    def secret(self, name: str, key: str) -> str:
        escaped = key.replace(".", "\\.")
        encoded = self.kubectl("get", "secret", name, "-o", f"jsonpath={{.data.{escaped}}}")
        if not encoded:
            raise ClusterUnreachable(f"secret {name} has no key {key}")
        return base64.b64decode(encoded).decode()

    @contextmanager
    def port_forward(self, service: str, port: int) -> Iterator[int]:
        """Forward a free local port to a Service's port; yield the local port."""
        command = [kubectl_binary(), "--namespace", self.namespace, "port-forward"]
        proc = subprocess.Popen(
            [*command, f"svc/{service}", f":{port}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None and proc.stderr is not None
        errors: list[str] = []
        # kubectl logs every connection: keep reading, or a full pipe would stall it.
        drains = [
            threading.Thread(target=lambda: errors.extend(proc.stderr), daemon=True),  # type: ignore[arg-type]
        ]
        try:
            line = proc.stdout.readline()  # kubectl prints the port once it listens
            drains.append(threading.Thread(target=proc.stdout.read, daemon=True))
            for drain in drains:
                drain.start()
            match = FORWARDING.search(line)
            if match is None:
                proc.wait(timeout=10)
                raise ClusterUnreachable(
                    f"port-forward to svc/{service}:{port} failed: {line}{''.join(errors)}"
                )
            yield int(match.group(1))
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            for drain in drains:
                if drain.is_alive() or drain.ident is not None:
                    drain.join(timeout=5)
            proc.stdout.close()
            proc.stderr.close()
