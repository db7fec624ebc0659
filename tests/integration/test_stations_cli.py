"""`greenlane stations load` with sites, on a real Valkey: the station file and its site
file go in together, and a bad file is refused whole, naming the file, line and field."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from redis.asyncio import Redis

from greenlane.cli.embedded import EmbeddedRedis
from greenlane.core.keys import Region

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

STATIONS = (
    "id,name,lat,lon,capacity,power_kw,site_id\n"
    "s-1,One,40.7580,-73.9855,2,150,hub\n"
    "s-2,Two,40.7590,-73.9845,4,50,hub\n"
    "s-3,Three,40.7000,-74.0100,1,22,depot\n"
)
SITES = "site_id,name,limit_kw\nhub,The hub,120\ndepot,The depot,22\n"


def load(
    tmp_path: Path, redis: EmbeddedRedis, region: str, sites: str
) -> subprocess.CompletedProcess[str]:
    (tmp_path / "stations.csv").write_text(STATIONS)
    (tmp_path / "sites.csv").write_text(sites)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GREENLANE_")}
    return subprocess.run(
        [sys.executable, "-m", "greenlane.cli", "stations", "load", str(tmp_path / "stations.csv"),
         "--sites", str(tmp_path / "sites.csv"), "--redis-url", redis.url, "--region", region],
        capture_output=True, text=True, timeout=60, check=False, env=env,
    )  # fmt: skip


async def test_stations_load_puts_the_sites_and_their_limits_beside_the_stations(
    tmp_path: Path, redis_server: EmbeddedRedis, redis_client: Redis
) -> None:
    loaded = load(tmp_path, redis_server, "sites-ok", SITES)

    assert loaded.returncode == 0, loaded.stdout + loaded.stderr
    assert "loaded 3 stations and 2 sites" in loaded.stdout
    region = Region("sites-ok")
    assert await redis_client.smembers(region.sites) == {b"hub", b"depot"}
    assert await redis_client.hget(region.site("hub"), "limit_kw") == b"120.0"
    assert await redis_client.smembers(region.site_stations("hub")) == {b"s-1", b"s-2"}
    assert await redis_client.hget(region.station("s-3"), "site_id") == b"depot"


@pytest.mark.parametrize(
    ("sites", "message"),
    [
        ("site_id,name,limit_kw\nhub,The hub,-5\ndepot,D,22\n", "sites.csv: line 2: limit_kw:"),
        ("site_id,name,limit_kw\nhub,The hub,120\n", "stations.csv: line 4: site_id:"),
        ("site_id,name,limit_kw\nhub,H,1\nhub,H,2\ndepot,D,3\n", "sites.csv: line 3: site_id:"),
    ],
)
async def test_stations_load_refuses_a_bad_site_file_whole_naming_file_line_and_field(
    tmp_path: Path, redis_server: EmbeddedRedis, redis_client: Redis, sites: str, message: str
) -> None:
    refused = load(tmp_path, redis_server, "sites-bad", sites)

    assert refused.returncode == 2
    assert message in refused.stdout, refused.stdout
    region = Region("sites-bad")
    assert await redis_client.exists(region.sites, region.stations_locations) == 0
