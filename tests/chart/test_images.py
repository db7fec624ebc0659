"""Each service's image: a clean Dockerfile, and proof that its slim environment starts."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
import uuid
from pathlib import Path

import psycopg
import pytest
import yaml
from chart.helm import CHART, ROOT
from chart.images import (
    SERVICES,
    Service,
    installed,
    run_in,
    service_venv,
    third_party,
    workspace_members,
)

from greenlane.cli.embedded import EmbeddedPostgres

HADOLINT = Path(sys.executable).parent / "hadolint"
IDS = [s.name for s in SERVICES]


def hadolint(*paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(HADOLINT), "--no-color", *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            found.append((keyword.upper(), " ".join(rest.split())))
    return found


def final_stage(dockerfile: Path) -> list[tuple[str, str]]:
    steps = instructions(dockerfile)
    last_from = max(i for i, (k, _) in enumerate(steps) if k == "FROM")
    return steps[last_from:]


def test_the_six_images_have_dockerfiles() -> None:
    assert IDS == ["grid", "hub", "ingestion", "operator", "pricing_worker", "simulator"]


def test_hadolint_finds_nothing_in_any_dockerfile() -> None:
    done = hadolint(*(s.dockerfile for s in SERVICES))
    assert (done.returncode, done.stdout) == (0, "")


def test_hadolint_fails_a_careless_dockerfile(tmp_path: Path) -> None:
    careless = tmp_path / "Dockerfile"
    careless.write_text("FROM python:latest\nRUN apt-get update && apt-get install -y curl\n")
    done = hadolint(careless)
    assert done.returncode != 0
    assert "DL3007" in done.stdout  # latest tag
    assert "DL3008" in done.stdout  # unpinned apt package


@pytest.mark.parametrize("service", SERVICES, ids=IDS)
def test_every_base_image_is_pinned_to_a_version(service: Service) -> None:
    bases = [args.split()[0] for k, args in instructions(service.dockerfile) if k == "FROM"]
    assert bases and all(re.search(r":v?\d+\.\d+\.\d+", b) for b in bases), bases
    assert "python:3.11." in bases[-1]


@pytest.mark.parametrize("service", SERVICES, ids=IDS)
def test_the_image_runs_the_service_module_as_a_numeric_non_root_user(service: Service) -> None:
    final = final_stage(service.dockerfile)
    users = [args for k, args in final if k == "USER"]
    assert users and re.fullmatch(r"[1-9]\d*(:[1-9]\d*)?", users[-1])
    entrypoints = [args for k, args in final if k == "ENTRYPOINT"]
    assert [json.loads(e) for e in entrypoints] == [["python", "-m", service.module]]


@pytest.mark.parametrize("service", SERVICES, ids=IDS)
def test_the_image_installs_only_its_own_locked_packages(service: Service) -> None:
    text = " ".join(f"{k} {args}" for k, args in instructions(service.dockerfile))
    assert f"uv export --frozen --package {service.package} --no-dev" in text
    assert "--require-hashes" in text
    installs = re.findall(r"--no-deps ((?:\./services/\S+ ?)+)", text)
    assert [sorted(i.split()) for i in installs] == [workspace_members(service)]
    for member in workspace_members(service):
        assert f"COPY {member.removeprefix('./')}/pyproject.toml" in text
        assert f"COPY {member.removeprefix('./')}/src" in text


def test_the_chart_uses_the_image_names_of_the_dockerfiles() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    in_chart = {c["image"]["repository"] for c in values["components"].values()} | {
        values["operator"]["image"]["repository"],
        values["operator"]["simulatorImage"]["repository"],
        values["tests"]["image"]["repository"],
    }
    assert in_chart == {s.image for s in SERVICES}


def _glob_regex(glob: str) -> re.Pattern[str]:
    """A .dockerignore pattern as a regex: * and ? stay within one folder, ** spans many."""
    out = ""
    for token in re.split(r"(\*\*/?|\*|\?)", glob.strip("/")):
        if token in ("**", "**/"):
            out += "(?:.*/)?" if token == "**/" else ".*"
        elif token == "*":
            out += "[^/]*"
        elif token == "?":
            out += "[^/]"
        else:
            out += re.escape(token)
    return re.compile(out)


def dockerignore_allows(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its folders decides."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    allowed = True
    for pattern in patterns:
        regex = _glob_regex(pattern.removeprefix("!"))
        if any(regex.fullmatch(p) for p in prefixes):
            allowed = pattern.startswith("!")
    return allowed


def test_the_build_context_holds_what_the_dockerfiles_copy_and_no_more() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    copied = {
        src
        for s in SERVICES
        for k, args in instructions(s.dockerfile)
        if k == "COPY" and not args.startswith("--from")
        for src in args.split()[:-1]
    }
    for src in sorted(copied):
        source = ROOT / src
        files = [source] if source.is_file() else sorted(source.rglob("*.*"))
        files = [f for f in files if "__pycache__" not in f.parts]
        assert files, f"COPY {src}: nothing there"
        for f in files:
            assert dockerignore_allows(str(f.relative_to(ROOT)), patterns), f
    for kept_out in (
        ".venv/bin/python",
        ".git/HEAD",
        "tests/conftest.py",
        "charts/greenlane/Chart.yaml",
        "services/ingestion/Dockerfile",
        "services/hub/web/node_modules/maplibre-gl/package.json",
        "services/hub/web/dist/index.html",
        "services/core/src/greenlane/core/__pycache__/events.cpython-311.pyc",
        ".tools/bin/helm",
    ):
        assert not dockerignore_allows(kept_out, patterns), kept_out


# ---------------------------------------------------------------- slim environments


@pytest.mark.parametrize("service", SERVICES, ids=IDS)
def test_the_service_starts_from_only_its_own_dependencies(
    service: Service, tmp_path: Path
) -> None:
    venv = service_venv(service)
    done = run_in(venv, "-m", service.module, "--help", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: python -m {service.module}")


@pytest.mark.parametrize("service", SERVICES, ids=IDS)
def test_every_module_of_the_service_imports_in_its_slim_environment(
    service: Service, tmp_path: Path
) -> None:
    # --help may stop before the heavy imports (the operator imports kopf later).
    m = service.module
    walk = (
        f"import importlib, pkgutil, {m}; "
        f"names = [i.name for i in pkgutil.walk_packages({m}.__path__, '{m}.')]; "
        "[importlib.import_module(n) for n in names]; print(len(names))"
    )
    done = run_in(service_venv(service), "-c", walk, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) > 0


@pytest.mark.parametrize("service", SERVICES, ids=IDS)
def test_the_slim_environment_holds_exactly_the_locked_packages(service: Service) -> None:
    members = {}
    for member in workspace_members(service):
        project = tomllib.loads((ROOT / member / "pyproject.toml").read_text())["project"]
        members[project["name"]] = project["version"]
    assert installed(service_venv(service)) == third_party(service) | members


def test_the_pricing_worker_image_refuses_to_migrate_without_a_database_url(
    tmp_path: Path,
) -> None:
    venv = service_venv(Service("pricing_worker"))
    done = run_in(venv, "-m", "greenlane.core.migrations", cwd=tmp_path)
    assert done.returncode == 2
    assert "GREENLANE_DATABASE_URL" in done.stderr


def test_the_migration_job_command_migrates_a_database_from_the_slim_image(
    postgres_server: EmbeddedPostgres, tmp_path: Path
) -> None:
    # What the chart's hook Job runs, in the pricing worker's environment, on a real
    # PostgreSQL: a database of its own, with the sql/ files the image copies to /app/sql.
    name = f"chart_migrations_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres_server.url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = postgres_server.url.rsplit("/", 1)[0] + f"/{name}"
    venv = service_venv(Service("pricing_worker"))
    env = {
        "GREENLANE_DATABASE_URL": url,
        "GREENLANE_MIGRATIONS_DIR": str(ROOT / "sql"),
        "GREENLANE_LOG_FORMAT": "json",
    }
    done = run_in(venv, "-m", "greenlane.core.migrations", cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    with psycopg.connect(url) as conn:
        applied = conn.execute("SELECT count(*) FROM schema_migrations").fetchone()
        table = conn.execute("SELECT to_regclass('charging_sessions') IS NOT NULL").fetchone()
    assert applied == (len(list((ROOT / "sql").glob("*.sql"))),)
    assert table == (True,)
