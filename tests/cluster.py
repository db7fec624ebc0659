"""A real Valkey Cluster for the tests: three primaries on loopback, slots split evenly."""

from __future__ import annotations

import time
from pathlib import Path

import redis

from greenlane.cli.embedded import (
    EmbeddedRedis,
    ServerFailed,
    free_port,
    spawn,
    stop_process,
    wait_for_port,
)

SLOTS = 16384


class ValkeyCluster:
    """valkey-server in cluster mode, three times, joined with CLUSTER MEET."""

    def __init__(self, workdir: Path, primaries: int = 3) -> None:
        self.workdir = workdir
        self.ports = [free_port() for _ in range(primaries)]
        # The cluster bus defaults to port + 10000, which a high free port cannot have.
        self.bus_ports = [free_port() for _ in range(primaries)]
        self.procs: list = []

    @property
    def url(self) -> str:
        """One node: a cluster client finds the others from it."""
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    def start(self) -> None:
        binary = EmbeddedRedis.binary()
        for port, bus in zip(self.ports, self.bus_ports, strict=True):
            data = self.workdir / f"node-{port}"
            data.mkdir(parents=True, exist_ok=True)
            argv = [
                binary,
                "--port", str(port),
                "--bind", "127.0.0.1",
                "--dir", str(data),
                "--cluster-enabled", "yes",
                "--cluster-port", str(bus),
                "--cluster-config-file", str(data / "nodes.conf"),
                "--cluster-node-timeout", "5000",
                "--appendonly", "no",
                "--save", "",
                "--protected-mode", "no",
                "--daemonize", "no",
            ]  # fmt: skip
            proc = spawn(argv, data / "valkey.log")
            self.procs.append(proc)
            if not wait_for_port(port, 10, proc):
                self.stop()
                raise ServerFailed(f"cluster node on {port} did not start; see {data}")
        nodes = [redis.Redis(port=p, socket_timeout=5) for p in self.ports]
        try:
            share = SLOTS // len(nodes)
            for n, node in enumerate(nodes):
                last = SLOTS - 1 if n == len(nodes) - 1 else (n + 1) * share - 1
                node.execute_command("CLUSTER", "ADDSLOTSRANGE", n * share, last)
            for node in nodes[1:]:
                node.execute_command(
                    "CLUSTER", "MEET", "127.0.0.1", self.ports[0], self.bus_ports[0]
                )
            self._wait_until_ok(nodes)
        finally:
            for node in nodes:
                node.close()

    def _wait_until_ok(self, nodes: list[redis.Redis], timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            infos = [node.execute_command("CLUSTER", "INFO") for node in nodes]
            texts = [i.decode() if isinstance(i, bytes) else str(i) for i in infos]
            known = [len(node.execute_command("CLUSTER", "NODES").splitlines()) for node in nodes]
            if all("cluster_state:ok" in t for t in texts) and all(k == len(nodes) for k in known):
                return
            time.sleep(0.05)
        self.stop()
        raise ServerFailed("the Valkey cluster did not reach cluster_state:ok")

    def stop(self) -> None:
        for proc in self.procs:
            stop_process(proc)
        self.procs.clear()
