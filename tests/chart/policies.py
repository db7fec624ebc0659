"""Policies every rendered manifest of the chart must meet; each returns its violations.

A policy is a plain function from manifests to a list of human-readable
violations ("Deployment/greenlane-grid container grid: no memory limit"), so a
test can show both that the chart meets it and that a broken manifest fails it.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any

Manifest = dict[str, Any]
Policy = Callable[[Iterable[Manifest]], list[str]]

# Workloads that run until stopped: their containers need probes. Jobs and bare
# Pods (the migration hook, the helm test) run to completion and need none.
LONG_RUNNING = frozenset({"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet"})
SECRET_NAME = re.compile(
    r"(?i)(password|passwd|secret|token|credential|private[_-]?key|api[_-]?key)"
)
# scheme://user:password@ with a literal password ($(VAR) references are fine).
URL_CREDENTIALS = re.compile(r"[a-z][a-z0-9+.-]*://[^/\s:@]*:(?!\$\()[^/\s@]+@", re.IGNORECASE)
PRIVATE_KEY = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")
# Kubernetes' imagePullSecrets are Secret *names*: a variable ending in _PULL_SECRETS
# that holds comma-separated DNS names passes them on, it holds no secret.
PULL_SECRET_NAMES = re.compile(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?(,[a-z0-9]([-a-z0-9.]*[a-z0-9])?)*")
PINNED_TAG = re.compile(r"\d+\.\d+\.\d+")
GREENLANE_IMAGE = re.compile(r"^(?:.+/)?greenlane-[a-z0-9-]+$")


def where(manifest: Manifest) -> str:
    return f"{manifest['kind']}/{manifest['metadata']['name']}"


def pod_spec(manifest: Manifest) -> dict[str, Any] | None:
    """The pod spec a workload manifest runs, or None for other kinds."""
    kind = manifest["kind"]
    spec = manifest.get("spec") or {}
    if kind == "Pod":
        return dict(spec)
    if kind == "CronJob":
        return dict(spec["jobTemplate"]["spec"]["template"]["spec"])
    if kind in LONG_RUNNING or kind == "Job":
        return dict(spec["template"]["spec"])
    return None


def containers(manifest: Manifest) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(label, container, pod spec) of every container and init container of a workload."""
    spec = pod_spec(manifest)
    if spec is None:
        return
    for field, label in (("initContainers", "init container"), ("containers", "container")):
        for c in spec.get(field) or []:
            yield f"{where(manifest)} {label} {c['name']}", c, spec


def _effective(container: dict[str, Any], spec: dict[str, Any], key: str) -> Any:
    """A security setting as Kubernetes applies it: the container's, else the pod's."""
    own = (container.get("securityContext") or {}).get(key)
    return own if own is not None else (spec.get("securityContext") or {}).get(key)


def requests_and_limits(manifests: Iterable[Manifest]) -> list[str]:
    """Every container requests and limits both CPU and memory."""
    found = []
    for label, c, _ in (x for m in manifests for x in containers(m)):
        resources = c.get("resources") or {}
        for bound in ("requests", "limits"):
            for resource in ("cpu", "memory"):
                if not (resources.get(bound) or {}).get(resource):
                    found.append(f"{label}: no {resource} {bound[:-1]}")
    return found


def probes(manifests: Iterable[Manifest]) -> list[str]:
    """Every container of a long-running workload has a liveness and a readiness probe."""
    found = []
    for m in manifests:
        if m["kind"] not in LONG_RUNNING:
            continue
        for c in (pod_spec(m) or {}).get("containers") or []:
            for probe in ("livenessProbe", "readinessProbe"):
                if not c.get(probe):
                    found.append(f"{where(m)} container {c['name']}: no {probe}")
    return found


def non_root(manifests: Iterable[Manifest]) -> list[str]:
    """Every container must run as non-root: runAsNonRoot, and never user 0."""
    found = []
    for label, c, spec in (x for m in manifests for x in containers(m)):
        if _effective(c, spec, "runAsNonRoot") is not True:
            found.append(f"{label}: runAsNonRoot is not true")
        if _effective(c, spec, "runAsUser") == 0:
            found.append(f"{label}: runAsUser is 0 (root)")
    return found


def read_only_root_filesystem(manifests: Iterable[Manifest]) -> list[str]:
    """Every container mounts its image read-only."""
    return [
        f"{label}: readOnlyRootFilesystem is not true"
        for m in manifests
        for label, c, _ in containers(m)
        if (c.get("securityContext") or {}).get("readOnlyRootFilesystem") is not True
    ]


def no_privileges(manifests: Iterable[Manifest]) -> list[str]:
    """Every container drops ALL capabilities and cannot escalate privileges."""
    found = []
    for label, c, _ in (x for m in manifests for x in containers(m)):
        context = c.get("securityContext") or {}
        if "ALL" not in ((context.get("capabilities") or {}).get("drop") or []):
            found.append(f"{label}: capabilities.drop does not contain ALL")
        if (context.get("capabilities") or {}).get("add"):
            found.append(f"{label}: adds capabilities {context['capabilities']['add']}")
        if context.get("allowPrivilegeEscalation") is not False:
            found.append(f"{label}: allowPrivilegeEscalation is not false")
        if context.get("privileged"):
            found.append(f"{label}: privileged")
    return found


def seccomp(manifests: Iterable[Manifest]) -> list[str]:
    """Every container runs under the runtime's seccomp profile (Pod Security "restricted")."""
    found = []
    for label, c, spec in (x for m in manifests for x in containers(m)):
        profile = _effective(c, spec, "seccompProfile") or {}
        if profile.get("type") not in ("RuntimeDefault", "Localhost"):
            found.append(f"{label}: no RuntimeDefault seccomp profile")
    return found


def pinned_images(app_version: str) -> Policy:
    """greenlane-* images are at the chart's appVersion; every other image has a pinned tag."""

    def check(manifests: Iterable[Manifest]) -> list[str]:
        found = []
        for label, c, _ in (x for m in manifests for x in containers(m)):
            image = str(c.get("image", ""))
            name, _, digest = image.partition("@")
            repository, tag = name, ""
            if ":" in name.rsplit("/", 1)[-1]:
                repository, _, tag = name.rpartition(":")
            if GREENLANE_IMAGE.match(repository):
                if tag != app_version:
                    found.append(f"{label}: {image} is not at appVersion {app_version}")
            elif not (digest.startswith("sha256:") or PINNED_TAG.search(tag)):
                found.append(f"{label}: {image} has no pinned version tag or digest")
        return found

    check.__doc__ = pinned_images.__doc__
    return check


def _secret_values(manifests: Iterable[Manifest]) -> set[str]:
    values = set()
    for m in manifests:
        if m["kind"] != "Secret":
            continue
        for v in (m.get("data") or {}).values():
            values.add(base64.b64decode(v).decode(errors="replace"))
        values.update(str(v) for v in (m.get("stringData") or {}).values())
    # Short strings ("true", "1") would match by accident; secrets are longer.
    return {v for v in values if len(v) >= 8}


def no_secrets_in_config_maps(manifests: Iterable[Manifest]) -> list[str]:
    """No ConfigMap holds a secret: no secret-like key, credentials or a Secret's value."""
    manifests = list(manifests)
    secrets = _secret_values(manifests)
    found = []
    for m in manifests:
        if m["kind"] != "ConfigMap":
            continue
        for key, value in (m.get("data") or {}).items():
            text = str(value)
            if SECRET_NAME.search(key) and text.strip():
                found.append(f"{where(m)} key {key}: a secret-like name with a value")
            if URL_CREDENTIALS.search(text):
                found.append(f"{where(m)} key {key}: a URL with a password")
            if PRIVATE_KEY.search(text):
                found.append(f"{where(m)} key {key}: a private key")
            if any(s in text for s in secrets):
                found.append(f"{where(m)} key {key}: the value of a Secret")
    return found


def secrets_from_secret_refs(manifests: Iterable[Manifest]) -> list[str]:
    """A container's secret-like variables come from Secrets, never a literal in the pod spec."""
    found = []
    for label, c, _ in (x for m in manifests for x in containers(m)):
        for env in c.get("env") or []:
            value = env.get("value")
            if value is None:
                continue
            names_only = env["name"].endswith("_PULL_SECRETS") and PULL_SECRET_NAMES.fullmatch(
                str(value)
            )
            if SECRET_NAME.search(env["name"]) and str(value).strip() and not names_only:
                found.append(f"{label} env {env['name']}: a literal value, not a secretKeyRef")
            if URL_CREDENTIALS.search(str(value)):
                found.append(f"{label} env {env['name']}: a URL with a literal password")
    return found


def all_policies(app_version: str) -> dict[str, Policy]:
    return {
        "requests_and_limits": requests_and_limits,
        "probes": probes,
        "non_root": non_root,
        "read_only_root_filesystem": read_only_root_filesystem,
        "no_privileges": no_privileges,
        "seccomp": seccomp,
        "pinned_images": pinned_images(app_version),
        "no_secrets_in_config_maps": no_secrets_in_config_maps,
        "secrets_from_secret_refs": secrets_from_secret_refs,
    }
