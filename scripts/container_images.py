"""Build the greenlane-* images from the one Dockerfile, with docker or podman (`make images`).

    python3 scripts/container_images.py build [SERVICE ...]   every service by default
    python3 scripts/container_images.py bases                 the base images, or stand-ins
    python3 scripts/container_images.py services              the services, one per line
    python3 scripts/container_images.py engine                which engine, with which flags

The engine is docker when its daemon answers, else podman; CONTAINER_ENGINE=docker or
=podman chooses. Images are tagged greenlane-<name>:<the chart's appVersion>
(GREENLANE_IMAGE_TAG overrides it).

Where no registry can be reached (podman only), the bases are replaced by stand-ins
under the exact names the Dockerfile uses: `python:3.11.14-slim-bookworm` becomes
Debian bookworm's own python3.11 (mmdebstrap) with /usr/local/bin links, and
`ghcr.io/astral-sh/uv:0.13.9` an image holding only /uv from the uv wheel, and
`node:22.12.0-bookworm-slim` (the hub's web build) that Python base with this
machine's node and npm. A
stand-in carries the label io.greenlane.standin (a hash of its inputs), is rebuilt
only when those change, and is never mistaken for the real image: a base that is
present without that label, or that can be pulled, is used as it is.

Tests import this module (tests/containers): one place for engine quirks and builds.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

ROOT: Final = Path(__file__).resolve().parent.parent
DOCKERFILE: Final = ROOT / "Dockerfile"
CHART: Final = ROOT / "charts" / "greenlane" / "Chart.yaml"
STANDIN_LABEL: Final = "io.greenlane.standin"
PYTHON_REPO: Final = "docker.io/library/python:"
# podman as root raises the container's limits to these unless told otherwise.
PODMAN_ROOT_LIMIT: Final = 1_048_576
QUIET_ULIMITS: Final = ("nofile=1024:1024", "nproc=1024:1024")


class ImageError(RuntimeError):
    """A build or an engine call failed; the message says which and why."""


# ---------------------------------------------------------------- the Dockerfile


def services() -> list[str]:
    """The services the Dockerfile can build: its `FROM runtime AS <name>` stages."""
    names = re.findall(r"^FROM\s+runtime\s+AS\s+(\S+)\s*$", DOCKERFILE.read_text(), re.M | re.I)
    for name in names:
        if not (ROOT / "services" / name / "pyproject.toml").is_file():
            raise ImageError(f"Dockerfile stage {name!r} has no services/{name}/pyproject.toml")
    return names


def image_name(service: str) -> str:
    return "greenlane-" + service.replace("_", "-")


def app_version() -> str:
    found = re.search(r'^appVersion:\s*"?([^"\s]+)"?\s*$', CHART.read_text(), re.M)
    if found is None:
        raise ImageError(f"no appVersion in {CHART.relative_to(ROOT)}")
    return found.group(1)


def default_tag() -> str:
    return os.environ.get("GREENLANE_IMAGE_TAG") or app_version()


def checkout_tag() -> str:
    """A tag of this checkout's own (the tests use it): two checkouts on one machine
    that build at the same time never run, or remove, each other's images."""
    return f"{app_version()}-{hashlib.sha256(str(ROOT).encode()).hexdigest()[:8]}"


def base_images() -> list[str]:
    """The images the Dockerfile starts from (stages and build arguments left out)."""
    text = DOCKERFILE.read_text()
    stages = {m.lower() for m in re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", text, re.M | re.I)}
    bases: list[str] = []
    for ref in re.findall(r"^FROM\s+(?:--\S+\s+)?(\S+)", text, re.M | re.I):
        if ref.lower() not in stages and "$" not in ref and ref not in bases:
            bases.append(ref)
    return bases


# ---------------------------------------------------------------- the engine


@dataclass(frozen=True)
class Engine:
    """A container engine and the flags this machine needs for it."""

    name: str  # docker or podman
    argv: tuple[str, ...]  # the command, with global flags
    build_flags: tuple[str, ...] = ()
    run_flags: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default=(), compare=False)

    def command(self, *args: str) -> list[str]:
        return [*self.argv, *args]

    def run(
        self, *args: str, timeout: float = 120, check: bool = True, input_text: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            self.command(*args),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            input=input_text,
        )
        if check and done.returncode != 0:
            raise ImageError(
                f"{' '.join(self.command(*args[:3]))} … failed ({done.returncode}):\n"
                f"{done.stderr.strip()[-3000:]}"
            )
        return done

    @property
    def restricted(self) -> tuple[str, ...]:
        """The restricted profile: read-only root, uid 10001, no capabilities, no setuid gains."""
        flags = (
            "--read-only",
            "--user",
            "10001:10001",
            "--cap-drop",
            "ALL",
            "--security-opt",
            "no-new-privileges",
        )
        # podman mounts tmpfs on /tmp, /var/tmp and /run of a read-only container unless told.
        return (*flags, "--read-only-tmpfs=false") if self.name == "podman" else flags

    def image_exists(self, ref: str) -> bool:
        return self.run("image", "inspect", ref, check=False, timeout=30).returncode == 0

    def label(self, ref: str, key: str) -> str | None:
        done = self.run("image", "inspect", ref, check=False, timeout=30)
        if done.returncode != 0:
            return None
        (info,) = json.loads(done.stdout)
        labels = (info.get("Config") or {}).get("Labels") or {}
        value = labels.get(key)
        return str(value) if value is not None else None


def _works(argv: Sequence[str]) -> tuple[bool, str]:
    try:
        done = subprocess.run(
            [*argv, "info", "--format", "json"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"{argv[0]}: {exc}"
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return False, f"{argv[0]} info failed: {last}"
    return True, done.stdout


def _podman(info_json: str) -> Engine:
    """podman with what this machine needs: runc on cgroups v1, limits it may set."""
    info = json.loads(info_json)
    host = info.get("host") or {}
    argv: list[str] = ["podman"]
    notes = []
    runtime = (host.get("ociRuntime") or {}).get("name")
    if host.get("cgroupVersion") == "v1" and runtime != "runc" and shutil.which("runc"):
        argv += ["--runtime", "runc"]  # crun fails on hybrid cgroup v1 hosts
        notes.append("--runtime runc: crun cannot run containers on this cgroup v1 host")
    flags: tuple[str, ...] = ()
    hard = min(
        resource.getrlimit(resource.RLIMIT_NOFILE)[1], resource.getrlimit(resource.RLIMIT_NPROC)[1]
    )
    if os.geteuid() == 0 and 0 <= hard < PODMAN_ROOT_LIMIT:
        flags = tuple(f for u in QUIET_ULIMITS for f in ("--ulimit", u))
        notes.append(f"--ulimit {' '.join(QUIET_ULIMITS)}: podman may not raise limits here")
    return Engine(
        name="podman",
        argv=tuple(argv),
        build_flags=(*flags, "--network", "host"),
        run_flags=flags,
        notes=tuple(notes),
    )


def detect_engine() -> tuple[Engine | None, str]:
    """The engine to use, or None and why there is none."""
    wanted = os.environ.get("CONTAINER_ENGINE", "")
    if wanted not in ("", "docker", "podman"):
        return None, f"CONTAINER_ENGINE={wanted!r}: use docker or podman"
    reasons = []
    for name in ("docker", "podman"):
        if wanted and name != wanted:
            continue
        if shutil.which(name) is None:
            reasons.append(f"{name} is not installed")
            continue
        ok, out = _works([name])
        if not ok:
            reasons.append(out)
            continue
        return (_podman(out) if name == "podman" else Engine("docker", ("docker",))), ""
    return None, "; ".join(reasons)


def require_engine() -> Engine:
    engine, reason = detect_engine()
    if engine is None:
        raise ImageError(f"no container engine: {reason}")
    return engine


# ---------------------------------------------------------------- base images


def _uv_binary(version: str, workdir: Path) -> Path:
    """uv of that version: the Makefile's pinned one when it matches, else from its wheel."""
    pinned = ROOT / ".tools" / "uv" / "bin" / "uv"
    if pinned.is_file():
        out = subprocess.run([str(pinned), "--version"], capture_output=True, text=True)
        if out.stdout.split()[1:2] == [version]:
            return pinned
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
         "--dest", str(workdir), f"uv=={version}"],
        check=True,
        timeout=300,
    )  # fmt: skip
    import zipfile

    (wheel,) = workdir.glob("uv-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        (member,) = [n for n in zf.namelist() if re.fullmatch(r"uv-[^/]+\.data/scripts/uv", n)]
        target = workdir / "uv"
        target.write_bytes(zf.read(member))
    target.chmod(0o755)
    return target


def local_certificates() -> list[Path]:
    """Authorities this machine added (Debian's update-ca-certificates local folder)."""
    return sorted(Path("/usr/local/share/ca-certificates").glob("**/*.crt"))


PYTHON_STANDIN: Final = """\
FROM {minbase}
# Debian bookworm's python3.11 where the official image has its own build in /usr/local.
RUN ln -s /usr/bin/python3.11 /usr/local/bin/python3.11 \\
    && ln -s /usr/bin/python3.11 /usr/local/bin/python3 \\
    && ln -s /usr/bin/python3.11 /usr/local/bin/python
COPY certificates/ /usr/local/share/ca-certificates/
# uv in the builds checks TLS against these (outbound TLS may be re-signed here).
RUN update-ca-certificates
ENV LANG=C.UTF-8 SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
LABEL {label}="{digest}" org.opencontainers.image.description="stand-in for {name}"
"""

UV_STANDIN: Final = """\
FROM scratch
COPY uv /uv
LABEL {label}="{digest}" org.opencontainers.image.description="stand-in for {name}"
"""

NODE_STANDIN: Final = """\
FROM {python}
# This machine's node and npm where the official image has its own build (any Node the
# hub's dashboard builds with: vite needs 20.19+ or 22.12+); certificates as the base's.
COPY node /usr/local/bin/node
COPY npm/ /usr/local/lib/node_modules/npm/
RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm \\
    && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx \\
    && node --version && npm --version
ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt
LABEL {label}="{digest}" org.opencontainers.image.description="stand-in for {name}"
"""

MMDEBSTRAP: Final = (
    "mmdebstrap",
    "--variant=minbase",
    "--include=python3,python3-venv,passwd,ca-certificates",
    "bookworm",
)


def _digest(*parts: bytes) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(hashlib.sha256(part).digest())
    return digest.hexdigest()[:20]


def _build_standin(
    engine: Engine, ref: str, recipe: str, context: Path, digest: str, log: list[str]
) -> None:
    (context / "Containerfile").write_text(recipe)
    engine.run(
        "build", *engine.build_flags, "--pull=never", "--tag", ref, str(context), timeout=600
    )
    log.append(f"{ref}: stand-in built ({STANDIN_LABEL}={digest})")


def _python_standin(engine: Engine, ref: str, log: list[str]) -> None:
    certs = local_certificates()
    digest = _digest(
        PYTHON_STANDIN.encode(), " ".join(MMDEBSTRAP).encode(), *(c.read_bytes() for c in certs)
    )
    if engine.label(ref, STANDIN_LABEL) == digest:
        log.append(f"{ref}: stand-in up to date")
        return
    if shutil.which("mmdebstrap") is None:
        raise ImageError(f"{ref} cannot be pulled and mmdebstrap is not installed to stand in")
    minbase = f"localhost/greenlane-standin-bookworm:{digest}"
    with tempfile.TemporaryDirectory(prefix="greenlane-standin-") as tmp:
        work = Path(tmp)
        if not engine.image_exists(minbase):
            tarball = work / "rootfs.tar"
            subprocess.run(
                [*MMDEBSTRAP, str(tarball)], check=True, capture_output=True, timeout=900
            )
            engine.run("import", str(tarball), minbase, timeout=600)
            tarball.unlink()
        (work / "certificates").mkdir()
        for i, cert in enumerate(certs):
            shutil.copyfile(cert, work / "certificates" / f"local-{i}-{cert.name}")
        recipe = PYTHON_STANDIN.format(
            minbase=minbase, label=STANDIN_LABEL, digest=digest, name=ref
        )
        _build_standin(engine, ref, recipe, work, digest, log)
    remove_other_tags(engine, minbase)


def remove_other_tags(engine: Engine, keep: str) -> None:
    """Drop the other tags of keep's repository: stand-ins of inputs that changed."""
    repository = keep.rsplit(":", 1)[0]
    done = engine.run("images", "--format", "{{.Repository}}:{{.Tag}}", check=False, timeout=60)
    for ref in done.stdout.split():
        if ref.rsplit(":", 1)[0] == repository and ref != keep:
            engine.run("rmi", ref, check=False, timeout=120)


def _uv_standin(engine: Engine, ref: str, log: list[str]) -> None:
    version = ref.rsplit(":", 1)[1]
    with tempfile.TemporaryDirectory(prefix="greenlane-standin-") as tmp:
        work = Path(tmp)
        uv = _uv_binary(version, work)
        digest = _digest(UV_STANDIN.encode(), uv.read_bytes())
        if engine.label(ref, STANDIN_LABEL) == digest:
            log.append(f"{ref}: stand-in up to date")
            return
        if uv != work / "uv":
            shutil.copyfile(uv, work / "uv")
            (work / "uv").chmod(0o755)
        recipe = UV_STANDIN.format(label=STANDIN_LABEL, digest=digest, name=ref)
        _build_standin(engine, ref, recipe, work, digest, log)


def _node_standin(engine: Engine, ref: str, python: str, log: list[str]) -> None:
    node = shutil.which("node")
    if node is None:
        raise ImageError(f"{ref} cannot be pulled and no node is installed to stand in")
    binary = Path(node).resolve()
    npm = binary.parent.parent / "lib" / "node_modules" / "npm"
    if not (npm / "package.json").is_file():
        raise ImageError(f"{ref}: no npm next to {binary} (looked in {npm})")
    digest = _digest(
        NODE_STANDIN.encode(),
        python.encode(),
        str(engine.label(python, STANDIN_LABEL)).encode(),
        binary.read_bytes(),
        (npm / "package.json").read_bytes(),
    )
    if engine.label(ref, STANDIN_LABEL) == digest:
        log.append(f"{ref}: stand-in up to date")
        return
    with tempfile.TemporaryDirectory(prefix="greenlane-standin-") as tmp:
        work = Path(tmp)
        shutil.copy2(binary, work / "node")
        shutil.copytree(npm, work / "npm", symlinks=True)
        recipe = NODE_STANDIN.format(python=python, label=STANDIN_LABEL, digest=digest, name=ref)
        _build_standin(engine, ref, recipe, work, digest, log)


def qualified(ref: str) -> str:
    """docker.io/library/python:… for python:… (podman's local names are qualified)."""
    first = ref.split("/", 1)[0]
    if "/" not in ref:
        return f"docker.io/library/{ref}"
    if "." not in first and ":" not in first and first != "localhost":
        return f"docker.io/{ref}"
    return ref


def ensure_bases(engine: Engine) -> list[str]:
    """Every base image present: as it is, pulled, or (podman, no registry) a stand-in."""
    log: list[str] = []
    for ref in base_images():
        name = qualified(ref)
        if engine.image_exists(name) and engine.label(name, STANDIN_LABEL) is None:
            log.append(f"{ref}: present")
            continue
        pulled = engine.run("pull", "--quiet", name, check=False, timeout=600)
        if pulled.returncode == 0:
            log.append(f"{ref}: pulled")
            continue
        if engine.name != "podman":
            raise ImageError(f"cannot pull {ref}: {pulled.stderr.strip()[-500:]}")
        if re.fullmatch(r"docker\.io/library/python:3\.11\.\d+-slim-bookworm", name):
            _python_standin(engine, name, log)
        elif re.fullmatch(r"ghcr\.io/astral-sh/uv:\d+\.\d+\.\d+", name):
            _uv_standin(engine, name, log)
        elif re.fullmatch(r"docker\.io/library/node:\d+\.\d+\.\d+-bookworm-slim", name):
            python = next(
                (qualified(b) for b in base_images() if qualified(b).startswith(PYTHON_REPO)), None
            )
            if python is None or not engine.image_exists(python):
                raise ImageError(f"{ref}: its stand-in builds on the Python base, missing")
            _node_standin(engine, name, python, log)
        else:
            raise ImageError(f"cannot pull {ref}, and there is no stand-in recipe for it")
    return log


# ---------------------------------------------------------------- builds


@dataclass(frozen=True)
class Built:
    service: str
    ref: str
    output: str


def build(engine: Engine, service: str, tag: str | None = None) -> Built:
    """One image from the Dockerfile; its build output is kept for the caller."""
    ref = f"{image_name(service)}:{tag or default_tag()}"
    before = image_id(engine, ref)
    flags = [*engine.build_flags]
    if engine.name == "podman":
        flags.append("--pull=never")  # ensure_bases made them present
    done = engine.run(
        "build",
        *flags,
        "--file",
        str(DOCKERFILE),
        "--build-arg",
        f"SERVICE={service}",
        "--tag",
        ref,
        str(ROOT),
        timeout=900,
    )
    after = image_id(engine, ref)
    if before is not None and before != after:
        # The image this tag named before: untagged now, and as big as the venv layer.
        # Removing it keeps the layer cache (the builder stage) but not every old image.
        engine.run("rmi", before, check=False, timeout=120)
    return Built(service, ref, done.stdout + done.stderr)


def image_id(engine: Engine, ref: str) -> str | None:
    done = engine.run("image", "inspect", "--format", "{{.Id}}", ref, check=False, timeout=30)
    return done.stdout.strip() or None if done.returncode == 0 else None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/container_images.py", description=__doc__.split("\n\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build greenlane-<name>:<tag> images")
    b.add_argument("service", nargs="*", help="services to build (default: all)")
    b.add_argument("--tag", default=None, help="image tag (default: the chart's appVersion)")
    sub.add_parser("bases", help="make sure the base images are present (stand-ins if need be)")
    sub.add_parser("services", help="list the services the Dockerfile builds")
    sub.add_parser("engine", help="show the engine and the flags used on this machine")
    args = parser.parse_args(argv)

    if args.command == "services":
        print("\n".join(services()))  # noqa: T201 - a command-line tool
        return 0
    try:
        engine = require_engine()
        if args.command == "engine":
            print(" ".join(engine.argv), *engine.notes, sep="\n")  # noqa: T201
            return 0
        for line in ensure_bases(engine):
            print(line)  # noqa: T201
        if args.command == "bases":
            return 0
        known = services()
        chosen = args.service or known
        unknown = sorted(set(chosen) - set(known))
        if unknown:
            parser.error(f"unknown service(s) {', '.join(unknown)}; known: {', '.join(known)}")
        for service in chosen:
            built = build(engine, service, args.tag)
            print(f"built {built.ref}")  # noqa: T201
    except (ImageError, subprocess.SubprocessError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)  # noqa: T201
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
