"""The whole platform on the embedded servers, for `bench chaos` and `bench soak`.

Valkey, PostgreSQL and Tansu on free ports, the broker behind a TCP proxy (so its
connections can be cut), the grid, ingestion and the pricing worker as child processes
started the way `greenlane dev` starts them (DevStack), a few small stations, and a
simulated fleet on greenlane.client writing every acknowledged status to an ack log.
Every process started is remembered, so the run can prove none is left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from bench.tcpproxy import TcpProxy
from greenlane.cli.devstack import LOCAL_SERVICES, Child, DevStack, Ports
from greenlane.cli.embedded import (
    EmbeddedKafka,
    EmbeddedPostgres,
    EmbeddedRedis,
    EmbeddedServer,
    free_port,
    spawn,
    stop_process,
)
from greenlane.core.settings import DEV_TOKEN
from greenlane.core.stations import Station

SERVICES = ("grid", "ingestion", "pricing_worker")
# Small stations in the simulator's Manhattan box: bookings contend for few slots.
STATIONS = [
    Station(f"chaos-{i}", f"Chaos {i}", 40.71 + i * 0.01, -74.00 + (i % 4) * 0.01, 2, 150.0)
    for i in range(8)
]


def _ports() -> Ports:
    names = list(Ports.VARIABLES)
    return Ports(**{name: free_port() for name in names})


@dataclass
class Platform:
    """Servers and services of one run; start(), then stop() in finally."""

    workdir: Path
    ports: Ports = field(default_factory=_ports)
    proxy_port: int = field(default_factory=free_port)
    pids: set[int] = field(default_factory=set)
    restarts: dict[str, int] = field(default_factory=dict)
    simulator: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        data = self.workdir / "data"
        self.redis = EmbeddedRedis(self.ports.redis, data)
        self.postgres = EmbeddedPostgres(self.ports.postgres, data)
        self.kafka = EmbeddedKafka(self.ports.kafka, data, advertised_port=self.proxy_port)
        self.proxy = TcpProxy(self.proxy_port, self.ports.kafka)
        env = {k: v for k, v in os.environ.items() if not k.startswith("GREENLANE_")}
        env.update(
            {
                "GREENLANE_REDIS_URL": self.redis.url,
                "GREENLANE_KAFKA_BOOTSTRAP_SERVERS": self.kafka.url,
                "GREENLANE_DATABASE_URL": self.postgres.url,
                "GREENLANE_LOG_LEVEL": "WARNING",
            }
        )
        self.stack = DevStack(self.workdir, self.ports, env)

    @property
    def redis_url(self) -> str:
        return self.redis.url

    @property
    def kafka_url(self) -> str:
        return self.kafka.url

    @property
    def database_url(self) -> str:
        return self.postgres.url

    @property
    def topic(self) -> str:
        return self.stack.topic

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.ports.ingestion}"

    def _server_started(self, server: EmbeddedServer) -> None:
        server.start()
        if server.proc is not None:
            self.pids.add(server.proc.pid)

    async def start(self) -> None:
        """Servers, schema, stations, then the services; blocking steps off the loop."""
        await asyncio.to_thread(self._server_started, self.redis)
        await asyncio.to_thread(self._server_started, self.postgres)
        await asyncio.to_thread(self._server_started, self.kafka)
        await self.proxy.start()
        self.stack.start_servers()
        from greenlane.core.migrations import apply_migrations

        await asyncio.to_thread(apply_migrations, self.database_url)
        await self._load_stations()
        await asyncio.to_thread(self.stack.start_services, list(SERVICES))
        self.pids.update(c.proc.pid for c in self.stack.children)

    async def _load_stations(self) -> None:
        from greenlane.core.redis_state import connect
        from greenlane.core.stations import load_stations

        client = connect(self.redis_url)
        try:
            await load_stations(client, STATIONS)
        finally:
            await client.aclose()

    def child(self, name: str) -> Child:
        return next(c for c in self.stack.children if c.name == name)

    def service_pids(self) -> dict[str, int]:
        """The pid of every service and server running now, by name."""
        pids = {c.name: c.proc.pid for c in self.stack.children if c.proc.poll() is None}
        for server in (self.redis, self.postgres, self.kafka):
            if server.proc is not None and server.proc.poll() is None:
                pids[server.name] = server.proc.pid
        return pids

    def restart_service(self, name: str) -> None:
        """SIGKILL a service (a crash: no shutdown) and start it again, ready (blocking)."""
        child = self.child(name)
        stop_process(child.proc, signal.SIGKILL)
        self.stack.children.remove(child)
        n = self.restarts[name] = self.restarts.get(name, 0) + 1
        with contextlib.suppress(OSError):
            child.log_path.rename(child.log_path.with_suffix(f".{n}.log"))
        service = next(s for s in LOCAL_SERVICES if s.name == name)
        self.stack.start_service(
            name, f"greenlane.{name}", service.ready_url(self.ports), service.env(self.ports)
        )
        self.pids.add(self.child(name).proc.pid)
        self.stack.wait_ready(120.0)

    def restart_server(self, server: EmbeddedServer) -> None:
        """Stop a server the way its operator would, and start it on its data (blocking)."""
        server.stop()
        self._server_started(server)

    def start_simulator(self, cars: int, interval: float, ack_log: Path) -> None:
        argv = [
            sys.executable,
            "-m",
            "greenlane.simulator",
            "--target",
            self.target,
            "--cars",
            str(cars),
            "--interval",
            str(interval),
            "--seed",
            "1",
            "--json",
            "--no-progress",
            "--ack-log",
            str(ack_log),
            # Low batteries and fast charging: cars book, charge and drive on in minutes.
            "--initial-battery",
            "15,60",
            "--charge-below",
            "30",
            "--charge-speedup",
            "30",
            "--log-level",
            "WARNING",
        ]
        env = self.stack.child_env(GREENLANE_API_TOKEN=DEV_TOKEN)
        self.simulator = spawn(
            argv,
            self.workdir / "logs" / "simulator.log",
            env=env,
            stdout_path=self.workdir / "simulator-summary.json",
        )
        self.pids.add(self.simulator.pid)

    def stop_simulator(self) -> int | None:
        """SIGINT: the cars stop, drain their answers and print the summary (blocking)."""
        if self.simulator is None:
            return None
        stop_process(self.simulator, signal.SIGINT, grace=30.0)
        return self.simulator.returncode

    async def stop(self) -> None:
        if self.simulator is not None:
            await asyncio.to_thread(self.stop_simulator)
        await asyncio.to_thread(self.stack.stop)
        await self.proxy.stop()
        for server in (self.kafka, self.postgres, self.redis):
            await asyncio.to_thread(server.stop)


RUN_MARKER = "BENCH_RUN_DIR"


def mark_run(workdir: Path) -> None:
    """Every process this one starts from now on inherits the run's directory."""
    os.environ[RUN_MARKER] = str(workdir)


def leftovers(workdir: Path) -> list[str]:
    """Processes of the run still alive: those whose environment or command names its
    directory (mark_run), this process aside. Pids alone could be reused by others."""
    alive: list[str] = []
    marker = str(workdir).encode()
    tag = f"{RUN_MARKER}={workdir}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if state == "Z":
            continue  # exited, waiting for its parent: nothing runs
        if tag in environ.split(b"\0") or marker in cmdline:
            shown = cmdline.replace(b"\0", b" ").decode(errors="replace")[:120]
            alive.append(f"{entry.name} {shown}")
    return alive
