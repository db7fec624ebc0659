"""Each service's image: the one clean Dockerfile, and proof that its slim environment starts."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
import uuid
from pathlib import Path

import container_images
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
from containers.packages import needed_distributions, probe_imports

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


def stages(dockerfile: Path) -> dict[str, list[tuple[str, str]]]:
    """Each named stage's instructions, from its FROM to the next FROM."""
    found: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    for keyword, args in instructions(dockerfile):
        if keyword == "FROM":
            current = []
            words = args.split()
            if len(words) == 3 and words[1].upper() == "AS":
                found[words[2]] = current
        current.append((keyword, args))
    return found


DOCKERFILE = container_images.DOCKERFILE


def test_one_dockerfile_has_a_stage_for_each_image() -> None:
    assert IDS == ["grid", "hub", "ingestion", "operator", "planner", "pricing_worker", "simulator"]
    assert [s.dockerfile for s in SERVICES] == [DOCKERFILE] * len(SERVICES)
    assert not list(ROOT.glob("services/*/Dockerfile"))  # no copies left to drift apart


def test_the_image_is_the_stage_named_by_the_service_build_argument() -> None:
    steps = instructions(DOCKERFILE)
    assert steps[0] == ("ARG", "SERVICE")
    assert steps[-1] == ("FROM", "${SERVICE}")
    assert ("ARG", "SERVICE") in stages(DOCKERFILE)["builder"]


def test_hadolint_finds_nothing_in_the_dockerfile() -> None:
    done = hadolint(DOCKERFILE)
    assert (done.returncode, done.stdout) == (0, "")


def test_hadolint_fails_a_careless_dockerfile(tmp_path: Path) -> None:
    careless = tmp_path / "Dockerfile"
    careless.write_text("FROM python:latest\nRUN apt-get update && apt-get install -y curl\n")
    done = hadolint(careless)
    assert done.returncode != 0
    assert "DL3007" in done.stdout  # latest tag
    assert "DL3008" in done.stdout  # unpinned apt package


def test_every_base_image_is_pinned_to_a_version() -> None:
    bases = container_images.base_images()
    assert bases and all(re.search(r":v?\d+\.\d+\.\d+", b) for b in bases), bases
    runtime = stages(DOCKERFILE)["runtime"][0][1].split()[0]
    assert "python:3.11." in runtime


@pytest.mark.parametrize("service", SERVICES, ids=IDS)
def test_the_image_runs_the_service_module_as_a_numeric_non_root_user(service: Service) -> None:
    all_stages = stages(DOCKERFILE)
    own = all_stages[service.name]
    assert own[0] == ("FROM", f"runtime AS {service.name}")
    users = [args for k, args in all_stages["runtime"] + own if k == "USER"]
    assert users and re.fullmatch(r"[1-9]\d*(:[1-9]\d*)?", users[-1])
    entrypoints = [args for k, args in own if k == "ENTRYPOINT"]
    assert [json.loads(e) for e in entrypoints] == [["python", "-m", service.module]]
    titles = [args for k, args in own if k == "LABEL" and "image.title" in args]
    assert len(titles) == 1 and f'image.title="{service.image}"' in titles[0]


def test_the_user_is_an_ordinary_account_so_useradd_does_not_warn() -> None:
    (useradd,) = [a for k, a in stages(DOCKERFILE)["runtime"] if k == "RUN" and "useradd" in a]
    # --system with a uid above SYS_UID_MAX (999) makes useradd warn on every build.
    assert "--uid 10001" in useradd and "--system" not in useradd
    assert "--no-log-init" in useradd  # no sparse lastlog entry for a high uid


def test_the_builder_installs_only_the_services_own_locked_packages() -> None:
    text = " ".join(f"{k} {args}" for k, args in stages(DOCKERFILE)["builder"])
    assert 'uv export --frozen --package "greenlane-$(echo "${SERVICE}" | tr _ -)" --no-dev' in text
    assert "--require-hashes" in text
    assert '--no-deps ./services/core "./services/${SERVICE}"' in text
    for part in ("core/pyproject.toml", "${SERVICE}/pyproject.toml", "core/src", "${SERVICE}/src"):
        assert f"COPY services/{part}" in text
    assert "rm -f /app/.venv/.lock" in text  # uv leaves it world-writable


@pytest.mark.parametrize("service", SERVICES, ids=IDS)
def test_core_and_the_service_are_all_the_workspace_packages_it_needs(service: Service) -> None:
    # The template installs exactly these two; a service needing another would break it.
    assert workspace_members(service) == ["./services/core", f"./services/{service.name}"]


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
        src.replace("${SERVICE}", s.name)
        for s in SERVICES
        for k, args in instructions(s.dockerfile)
        if k == "COPY" and not args.startswith("--from")
        for src in args.split()[:-1]
    }
    assert "services/grid/src" in copied and "sql/" in copied
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
        "Dockerfile",
        "compose.yaml",
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


@pytest.mark.parametrize("service", SERVICES, ids=IDS)
def test_the_slim_environment_holds_only_what_the_services_code_imports(
    service: Service, tmp_path: Path
) -> None:
    # The same rule tests/containers holds each built image to, here without an engine.
    venv = service_venv(service)
    report = probe_imports(service.name, lambda *args: run_in(venv, *args, cwd=tmp_path))
    assert report["unresolved"] == []
    needed = needed_distributions(report)
    installed = {d for d in report["installed"] if not d.startswith("greenlane-")}
    assert sorted(installed - set(needed)) == []
    assert sorted(set(needed) - installed) == []


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
