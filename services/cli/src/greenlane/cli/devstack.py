"""The embedded platform behind `greenlane dev`: servers, migrations, services, simulator."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from greenlane.cli.embedded import (
    EmbeddedKafka,
    EmbeddedPostgres,
    EmbeddedRedis,
    EmbeddedServer,
    ServerFailed,
    require_free_port,
    spawn,
    stop_process,
)
from greenlane.core.events import FLEET_EVENTS_TOPIC
from greenlane.core.settings import DEV_TOKEN
from greenlane.core.tls import LocalPki

log = logging.getLogger(__name__)

# The dev demo runs in real time (the grid prices the instant energy is drawn), with
# charging sped up 30 times so that a stop takes minutes. The speed-up is a pack 30 times
# smaller, given to every component alike, so that kWh and costs agree end to end: the
# simulator charges a 2.5 kWh pack at the plan's real kW, the planner plans the energy
# that pack needs, and the pricing worker counts the same kWh at the instant it is drawn.
DEV_CHARGE_SPEEDUP = 30.0
DEV_PACK_KWH = 75.0 / DEV_CHARGE_SPEEDUP
# Stops on the road take 2 to 4 minutes, planned in 1-minute slots: plans are seen made
# and followed within a couple of minutes.
DEV_STOP_MINUTES = "2,4"
DEV_DEPOT_STATION = "depot-inwood"
DEV_INITIAL_BATTERY = "10,100"
DEV_SERVICE_ENV: dict[str, dict[str, str]] = {
    "planner": {
        "GREENLANE_PLANNER_SLOT_MINUTES": "1",
        "GREENLANE_PLANNER_HORIZON_HOURS": "14",
        "GREENLANE_PLANNER_PACK_KWH": repr(DEV_PACK_KWH),
        "GREENLANE_PLANNER_DEFAULT_STAY_MINUTES": "3",
        "GREENLANE_PLANNER_REPLAN_SECONDS": "20",
    },
    "pricing_worker": {"GREENLANE_PRICING_PACK_CAPACITY_KWH": repr(DEV_PACK_KWH)},
}


@dataclass(frozen=True)
class Ports:
    """Every local port of the embedded platform; each can be moved by a variable."""

    redis: int = 6379
    kafka: int = 19092
    postgres: int = 5432
    ingestion: int = 50051
    grid: int = 8081
    ingestion_metrics: int = 9101
    pricing_metrics: int = 9102
    booking_api: int = 8082
    planner: int = 8083
    # greenlane dev --observability
    prometheus: int = 9090
    redis_exporter: int = 9121
    postgres_exporter: int = 9187
    hub: int = 8090

    VARIABLES = {
        "redis": "GREENLANE_DEV_REDIS_PORT",
        "kafka": "GREENLANE_DEV_KAFKA_PORT",
        "postgres": "GREENLANE_DEV_POSTGRES_PORT",
        "ingestion": "GREENLANE_INGESTION_PORT",
        "grid": "GREENLANE_GRID_PORT",
        "ingestion_metrics": "GREENLANE_DEV_INGESTION_METRICS_PORT",
        "pricing_metrics": "GREENLANE_DEV_PRICING_METRICS_PORT",
        "booking_api": "GREENLANE_BOOKING_API_PORT",
        "planner": "GREENLANE_PLANNER_PORT",
        "prometheus": "GREENLANE_DEV_PROMETHEUS_PORT",
        "redis_exporter": "GREENLANE_DEV_REDIS_EXPORTER_PORT",
        "postgres_exporter": "GREENLANE_DEV_POSTGRES_EXPORTER_PORT",
        "hub": "GREENLANE_HUB_PORT",
    }

    @classmethod
    def from_env(cls, env: dict[str, str]) -> Ports:
        values: dict[str, int] = {}
        for name, variable in cls.VARIABLES.items():
            raw = env.get(variable)
            if raw is None:
                continue
            if not raw.isdigit() or not 0 < int(raw) < 65536:
                raise ValueError(f"{variable}: {raw!r} is not a port number (1-65535)")
            values[name] = int(raw)
        return cls(**values)


@dataclass(frozen=True)
class LocalPort:
    """A port of a local service: the Ports field with its number, the variable it reads."""

    field: str
    variable: str


@dataclass(frozen=True)
class LocalService:
    """One component as greenlane dev runs it: python -m greenlane.<name>.

    The chart's components.<component> entry has the same port names, default numbers
    and variables, the same readiness probe and metrics port
    (tests/chart/test_components.py holds them equal), so what runs here is what runs
    on Kubernetes. Adding a service: an entry here and one in the chart's values.yaml.
    """

    name: str
    component: str
    ports: Mapping[str, LocalPort]
    ready: tuple[str, str]  # (port name, path) of the readiness probe
    metrics: str  # the port name Prometheus scrapes (/metrics)
    hosts: tuple[str, ...]  # variables naming the address to listen on (127.0.0.1 here)

    def port(self, ports: Ports, name: str) -> int:
        return int(getattr(ports, self.ports[name].field))

    def env(self, ports: Ports) -> dict[str, str]:
        env = dict.fromkeys(self.hosts, "127.0.0.1")
        env.update({p.variable: str(getattr(ports, p.field)) for p in self.ports.values()})
        return env

    def ready_url(self, ports: Ports, tls: bool = False) -> str:
        name, path = self.ready
        # Service ports speak TLS with greenlane dev --tls; metrics ports stay plain.
        scheme = "https" if tls and name != "metrics" else "http"
        return f"{scheme}://127.0.0.1:{self.port(ports, name)}{path}"

    def metrics_target(self, ports: Ports) -> str:
        return f"127.0.0.1:{self.port(ports, self.metrics)}"


LOCAL_SERVICES: tuple[LocalService, ...] = (
    LocalService(
        "grid",
        "grid",
        {"http": LocalPort("grid", "GREENLANE_GRID_PORT")},
        ready=("http", "/readyz"),
        metrics="http",
        hosts=("GREENLANE_GRID_HOST",),
    ),
    LocalService(
        "ingestion",
        "ingestion",
        {
            "grpc": LocalPort("ingestion", "GREENLANE_INGESTION_PORT"),
            "http": LocalPort("booking_api", "GREENLANE_BOOKING_API_PORT"),
            "metrics": LocalPort("ingestion_metrics", "GREENLANE_METRICS_PORT"),
        },
        ready=("metrics", "/readyz"),
        metrics="metrics",
        hosts=("GREENLANE_INGESTION_HOST", "GREENLANE_METRICS_HOST"),
    ),
    LocalService(
        "pricing_worker",
        "pricing-worker",
        {"metrics": LocalPort("pricing_metrics", "GREENLANE_METRICS_PORT")},
        ready=("metrics", "/readyz"),
        metrics="metrics",
        hosts=("GREENLANE_METRICS_HOST",),
    ),
    LocalService(
        "planner",
        "planner",
        {"http": LocalPort("planner", "GREENLANE_PLANNER_PORT")},
        ready=("http", "/readyz"),
        metrics="http",
        hosts=("GREENLANE_PLANNER_HOST",),
    ),
    LocalService(
        "hub",
        "hub",
        {"http": LocalPort("hub", "GREENLANE_HUB_PORT")},
        ready=("http", "/readyz"),
        metrics="http",
        hosts=("GREENLANE_HUB_HOST",),
    ),
)


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    ready_url: str | None = None
    required: bool = True


@dataclass
class DevStack:
    """Starts what is missing, remembers what it started, stops it all in reverse order."""

    workdir: Path
    ports: Ports
    env: dict[str, str]
    servers: list[EmbeddedServer] = field(default_factory=list)
    children: list[Child] = field(default_factory=list)
    settings: dict[str, str] = field(default_factory=dict)
    # greenlane dev --tls: the local CA and certificates every service and client uses.
    tls: LocalPki | None = None

    @property
    def topic(self) -> str:
        """The event topic the services use (GREENLANE_FLEET_EVENTS_TOPIC)."""
        return self.env.get("GREENLANE_FLEET_EVENTS_TOPIC") or FLEET_EVENTS_TOPIC

    @property
    def logs(self) -> Path:
        return self.workdir / "logs"

    def check_ports(self, services: list[str], observability: bool = False) -> None:
        """Fail before starting anything when a port we need is taken."""
        wanted = [
            ("prometheus", "Prometheus (--observability)", observability),
            ("redis_exporter", "the Redis exporter (--observability)", observability),
            ("postgres_exporter", "the PostgreSQL exporter (--observability)", observability),
            ("redis", "Redis (Valkey)", "GREENLANE_REDIS_URL" not in self.env),
            ("kafka", "the Kafka broker", "GREENLANE_KAFKA_BOOTSTRAP_SERVERS" not in self.env),
            ("postgres", "PostgreSQL", "GREENLANE_DATABASE_URL" not in self.env),
            ("ingestion", "the ingestion gRPC server", "ingestion" in services),
            ("ingestion_metrics", "ingestion metrics", "ingestion" in services),
            ("booking_api", "the booking HTTP API", "ingestion" in services),
            ("grid", "the grid service", "grid" in services),
            ("pricing_metrics", "pricing worker metrics", "pricing_worker" in services),
            ("planner", "the planner API", "planner" in services),
            ("hub", "the hub and its web map", "hub" in services),
        ]
        for key, what, needed in wanted:
            if needed:
                require_free_port(getattr(self.ports, key), what, Ports.VARIABLES[key])

    def start_servers(self) -> None:
        """Embedded servers, unless GREENLANE_*_URL settings point at running ones."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        data = self.workdir / "data"
        if url := self.env.get("GREENLANE_REDIS_URL"):
            self.settings["GREENLANE_REDIS_URL"] = url
        else:
            self._start(EmbeddedRedis(self.ports.redis, data))
            self.settings["GREENLANE_REDIS_URL"] = self.servers[-1].url
        if url := self.env.get("GREENLANE_KAFKA_BOOTSTRAP_SERVERS"):
            self.settings["GREENLANE_KAFKA_BOOTSTRAP_SERVERS"] = url
        else:
            self._start(EmbeddedKafka(self.ports.kafka, data))
            self.settings["GREENLANE_KAFKA_BOOTSTRAP_SERVERS"] = self.servers[-1].url
        if url := self.env.get("GREENLANE_DATABASE_URL"):
            self.settings["GREENLANE_DATABASE_URL"] = url
        else:
            self._start(EmbeddedPostgres(self.ports.postgres, data))
            self.settings["GREENLANE_DATABASE_URL"] = self.servers[-1].url
        self.settings.update(
            {
                "GREENLANE_ENVIRONMENT": "development",
                "GREENLANE_API_TOKENS": self.env.get("GREENLANE_API_TOKENS", DEV_TOKEN),
                "GREENLANE_API_TOKEN": self.env.get("GREENLANE_API_TOKEN", DEV_TOKEN),
                "GREENLANE_INGESTION_ADDR": f"127.0.0.1:{self.ports.ingestion}",
                "GREENLANE_GRID_URL": f"{self.scheme}://127.0.0.1:{self.ports.grid}",
                "GREENLANE_PLANNER_URL": f"{self.scheme}://127.0.0.1:{self.ports.planner}",
            }
        )
        if self.tls is not None:
            pki = self.tls
            self.settings.update(
                {
                    # Servers: their certificate, and the CA clients' certificates come from.
                    "GREENLANE_TLS_CERT_FILE": str(pki.server_cert_file),
                    "GREENLANE_TLS_KEY_FILE": str(pki.server_key_file),
                    "GREENLANE_TLS_CLIENT_CA_FILE": str(pki.ca_file),
                    # Clients: the CA to trust, and the dev fleet's client certificate.
                    "GREENLANE_TLS_CA_FILE": str(pki.ca_file),
                    "GREENLANE_TLS_CLIENT_CERT_FILE": str(pki.client_cert_file),
                    "GREENLANE_TLS_CLIENT_KEY_FILE": str(pki.client_key_file),
                }
            )

    @property
    def scheme(self) -> str:
        return "https" if self.tls is not None else "http"

    def _start(self, server: EmbeddedServer) -> None:
        log.info("starting %s on port %d", server.name, server.port)
        server.start()
        self.servers.append(server)

    def write_env_file(self) -> Path:
        """`.greenlane/dev.env`: GREENLANE_…=value lines to source in a shell."""
        path = self.workdir / "dev.env"
        lines = ["# Written by `greenlane dev`: source it to reach the running platform."]
        lines += [f"{k}={v}" for k, v in sorted(self.settings.items())]
        # It holds the token: readable by its owner only, from the moment it exists.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write("\n".join(lines) + "\n")
        path.chmod(0o600)
        return path

    def child_env(self, **extra: str) -> dict[str, str]:
        env = {**self.env, **self.settings, "GREENLANE_LOG_FORMAT": "human", **extra}
        if self.tls is not None:
            # HTTP clients in the services (the pricing worker's grid calls) trust the CA.
            env["SSL_CERT_FILE"] = str(self.tls.ca_file)
        return env

    def start_service(
        self, name: str, module: str, ready_url: str | None, extra: dict[str, str]
    ) -> None:
        log_path = self.logs / f"{name}.log"
        proc = spawn([sys.executable, "-m", module], log_path, env=self.child_env(**extra))
        self.children.append(Child(name, proc, log_path, ready_url))

    def start_services(
        self, services: list[str], demo_env: Mapping[str, Mapping[str, str]] | None = None
    ) -> None:
        for service in LOCAL_SERVICES:
            if service.name in services:
                # The demo's settings, unless the caller's environment sets its own.
                wanted = {**DEV_SERVICE_ENV.get(service.name, {})}
                wanted.update((demo_env or {}).get(service.name, {}))
                demo = {k: v for k, v in wanted.items() if k not in self.env}
                self.start_service(
                    service.name,
                    f"greenlane.{service.name}",
                    service.ready_url(self.ports, self.tls is not None),
                    {**demo, **service.env(self.ports)},
                )
        self.wait_ready(60.0)

    def dashboard_url(self) -> str:
        """The hub's map, the token in the URL fragment: browsers never send that part."""
        token = self.settings.get("GREENLANE_API_TOKEN") or DEV_TOKEN
        return f"{self.scheme}://127.0.0.1:{self.ports.hub}/#token={quote(token, safe='')}"

    def wait_ready(self, limit: float) -> None:
        deadline = time.monotonic() + limit
        for child in self.children:
            if child.ready_url is None:
                continue
            while True:
                if child.proc.poll() is not None:
                    raise ServerFailed(
                        f"{child.name} exited with code {child.proc.returncode}; "
                        f"last lines of {child.log_path}:\n{tail(child.log_path)}"
                    )
                with contextlib.suppress(OSError):
                    context = (
                        ssl.create_default_context(cafile=str(self.tls.ca_file))
                        if self.tls is not None
                        else None
                    )
                    with urllib.request.urlopen(  # noqa: S310
                        child.ready_url, timeout=1, context=context
                    ) as resp:
                        if resp.status == 200:
                            break
                if time.monotonic() > deadline:
                    raise ServerFailed(
                        f"{child.name} was not ready after {limit:.0f}s; "
                        f"last lines of {child.log_path}:\n{tail(child.log_path)}"
                    )
                time.sleep(0.2)

    def start_simulator(
        self,
        cars: int,
        interval: float,
        duration: float | None,
        depot: tuple[str, float, float, float] | None = None,
    ) -> Child:
        argv = [
            sys.executable,
            "-m",
            "greenlane.simulator",
            "--cars",
            str(cars),
            "--interval",
            str(interval),
            "--json",
            "--no-progress",
            # Charging at real speed takes an hour: the dev fleet charges 30 times faster,
            # as a pack 30 times smaller (DEV_PACK_KWH, see above).
            "--pack-kwh",
            repr(DEV_PACK_KWH),
            "--stop-minutes",
            DEV_STOP_MINUTES,
            # A tenth of the fleet starts low: booked at once, plugged in within a minute.
            "--initial-battery",
            DEV_INITIAL_BATTERY,
        ]
        if depot is not None:
            argv += ["--depot", ",".join(str(v) for v in depot)]
        if duration is not None:
            argv += ["--duration", str(duration)]
        log_path = self.logs / "simulator.log"
        out = self.workdir / "simulator-summary.json"
        out.unlink(missing_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        proc = spawn(
            argv, log_path, env=self.child_env(), stdout_path=out, death_signal=signal.SIGINT
        )
        child = Child("simulator", proc, log_path, required=False)
        self.children.append(child)
        return child

    def dead_children(self) -> list[Child]:
        return [c for c in self.children if c.required and c.proc.poll() is not None]

    def stop(self) -> None:
        """Children first (they drain into the servers), then the servers."""
        for child in reversed(self.children):
            sig = signal.SIGINT if child.name == "simulator" else signal.SIGTERM
            stop_process(child.proc, sig, grace=15.0)
        self.children.clear()
        for server in reversed(self.servers):
            server.stop()
        self.servers.clear()


def tail(path: Path, lines: int = 12) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def available(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def simulator_summary(workdir: Path) -> dict[str, object] | None:
    path = workdir / "simulator-summary.json"
    with contextlib.suppress(OSError, ValueError):
        text = path.read_text().strip()
        if text:
            data = json.loads(text.splitlines()[-1])
            if isinstance(data, dict):
                return data
    return None
