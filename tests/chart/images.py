"""The service images: the one Dockerfile, and a slim virtual environment built like each image."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import container_images
from chart.helm import ROOT
from packaging.requirements import Requirement

VENVS = ROOT / ".tools" / "venvs"


@dataclass(frozen=True)
class Service:
    """A service that ships as an image: folder services/<name>, image greenlane-<kebab>,
    stage <name> of the Dockerfile."""

    name: str

    @property
    def kebab(self) -> str:
        return self.name.replace("_", "-")

    @property
    def package(self) -> str:
        return f"greenlane-{self.kebab}"

    @property
    def image(self) -> str:
        return f"greenlane-{self.kebab}"

    @property
    def module(self) -> str:
        return f"greenlane.{self.name}"

    @property
    def dockerfile(self) -> Path:
        return container_images.DOCKERFILE


SERVICES = tuple(Service(name) for name in sorted(container_images.services()))


def uv() -> str:
    """The Makefile's pinned uv (.tools/uv, made by `make setup`), else uv on PATH."""
    pinned = ROOT / ".tools" / "uv" / "bin" / "uv"
    found = str(pinned) if pinned.is_file() else shutil.which("uv")
    if found is None:
        raise RuntimeError("no uv: run `make setup` (it builds the per-service environments)")
    return found


def export(service: Service) -> list[str]:
    """The locked requirement lines of one service alone (uv export --package)."""
    return list(_export(service.package))


@functools.cache
def _export(package: str) -> tuple[str, ...]:
    done = subprocess.run(
        [
            uv(),
            "export",
            "--frozen",
            "--package",
            package,
            "--no-dev",
            "--no-editable",
            "--no-hashes",
            "--no-header",
            "--no-annotate",
            "--quiet",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return tuple(line.strip() for line in done.stdout.splitlines() if line.strip())


def workspace_members(service: Service) -> list[str]:
    """The workspace packages the service needs, as ./services/<folder> paths."""
    return sorted(line for line in export(service) if line.startswith("./services/"))


def third_party(service: Service) -> dict[str, str]:
    """name -> version of the third-party packages the lock gives the service on this platform."""
    found = {}
    for line in export(service):
        if line.startswith("./"):
            continue
        requirement = Requirement(line)
        if requirement.marker is None or requirement.marker.evaluate():
            (pin,) = requirement.specifier
            found[canonical(requirement.name)] = pin.version
    return found


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _lock_key(service: Service) -> str:
    digest = hashlib.sha256()
    for path in [
        ROOT / "uv.lock",
        ROOT / "pyproject.toml",
        *sorted(ROOT.glob("services/*/pyproject.toml")),
    ]:
        digest.update(path.read_bytes())
    digest.update(service.name.encode())
    return digest.hexdigest()[:16]


@cache
def service_venv(service: Service) -> Path:
    """A virtual environment with only the service's locked dependencies, like its image.

    The third-party part is cached under .tools/venvs by the hash of the lock and
    the pyprojects; the workspace packages are reinstalled (as non-editable
    wheels, as in the image) once per test session, so code changes are seen.
    """
    venv = VENVS / f"{service.name}-{_lock_key(service)}"
    python = venv / "bin" / "python"
    marker = venv / ".greenlane-deps-installed"
    if not marker.is_file():
        for stale in VENVS.glob(f"{service.name}-*"):
            shutil.rmtree(stale)
        VENVS.mkdir(parents=True, exist_ok=True)
        requirements = venv.with_suffix(".requirements.txt")
        _run(
            uv(),
            "export",
            "--frozen",
            "--package",
            service.package,
            "--no-dev",
            "--no-editable",
            "--no-emit-workspace",
            "--quiet",
            "--output-file",
            str(requirements),
        )
        _run(uv(), "venv", "--quiet", "--python", sys.executable, str(venv))
        _run(
            uv(),
            "pip",
            "install",
            "--quiet",
            "--python",
            str(python),
            "--require-hashes",
            "--requirement",
            str(requirements),
        )
        requirements.unlink()
        marker.write_text("third-party dependencies installed from uv.lock\n")
    _run(
        uv(),
        "pip",
        "install",
        "--quiet",
        "--python",
        str(python),
        "--no-deps",
        "--reinstall",
        *workspace_members(service),
    )
    return venv


def installed(venv: Path) -> dict[str, str]:
    """name -> version of every distribution in a virtual environment."""
    done = _run(uv(), "pip", "list", "--python", str(venv / "bin" / "python"), "--format", "json")
    return {canonical(d["name"]): d["version"] for d in json.loads(done.stdout)}


def run_in(
    venv: Path, *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the venv's python with a clean environment (plus env), away from the source tree."""
    clean = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(cwd), "LANG": "C.UTF-8"}
    return subprocess.run(
        [str(venv / "bin" / "python"), *args],
        cwd=cwd,
        env=clean | (env or {}),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        args,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env={**os.environ, "UV_PYTHON_DOWNLOADS": "never"},
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
    return done
