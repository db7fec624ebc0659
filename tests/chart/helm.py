"""Run the pinned helm binary on the chart; install it first when a fresh clone lacks it."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "greenlane"
SUBCHARTS = sorted(p for p in (CHART / "charts").iterdir() if (p / "Chart.yaml").is_file())
TOOLS_BIN = ROOT / ".tools" / "bin"
INSTALL_HELM = ROOT / "scripts" / "tools" / "install_helm.sh"
RELEASE = "greenlane"
NAMESPACE = "greenlane"

# The Kubernetes versions the chart supports (Chart.yaml kubeVersion >=1.29): every
# minor release from the oldest to the newest the pinned kubectl (1.35) speaks to.
OLDEST_KUBERNETES = "1.29"
NEWEST_KUBERNETES = "1.35"
KUBERNETES_VERSIONS = tuple(f"1.{minor}" for minor in range(29, 36))

# The value sets every check runs on: the defaults and each ci/*-values.yaml.
VALUE_SETS: dict[str, Path | None] = {"default": None} | {
    p.name.removesuffix("-values.yaml"): p for p in sorted((CHART / "ci").glob("*-values.yaml"))
}

Manifest = dict[str, Any]


class DuplicateKeyError(yaml.constructor.ConstructorError):
    """A mapping names one key twice: Helm keeps the last, kyaml-based tools refuse it."""


class UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a mapping with a repeated key.

    PyYAML, like Helm, silently keeps the last of two equal keys; Flux's
    helm-controller, `kustomize --enable-helm` and Argo CD (kyaml) refuse the whole
    manifest ("mapping key ... already defined"). Every rendered manifest is parsed
    with this loader so that a duplicate fails here first.
    """

    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> dict[Any, Any]:
        assert isinstance(node, yaml.MappingNode)
        seen: dict[Any, yaml.Mark] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
            if key in seen:
                raise DuplicateKeyError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found duplicate key {key!r} (first at line {seen[key].line + 1})",
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


def load_manifests(text: str) -> tuple[Manifest, ...]:
    """Every non-empty document of a multi-document YAML stream; duplicate keys refused."""
    return tuple(doc for doc in yaml.load_all(text, Loader=UniqueKeyLoader) if doc)  # noqa: S506


class HelmError(AssertionError):
    """helm exited non-zero; the message holds its stderr."""


@cache
def helm_binary() -> Path:
    """.tools/bin/helm, installed by scripts/tools/install_helm.sh when missing: never a skip."""
    helm = TOOLS_BIN / "helm"
    if not (helm.is_file() and os.access(helm, os.X_OK)):
        done = subprocess.run(
            ["bash", str(INSTALL_HELM)], capture_output=True, text=True, timeout=600, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"{INSTALL_HELM.relative_to(ROOT)} could not install helm "
                f"(exit {done.returncode}); the chart checks need it:\n{done.stderr}"
            )
    return helm


def run_helm(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """Run helm; a non-zero exit raises HelmError with helm's own message."""
    done = subprocess.run(
        [str(helm_binary()), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ROOT,
    )
    if done.returncode != 0:
        raise HelmError(f"helm {' '.join(map(str, args))} failed:\n{helm_messages(done.stderr)}")
    return done


def helm_messages(stderr: str) -> str:
    """helm's stderr without its note about the chart's symlinked folders."""
    return "\n".join(line for line in stderr.splitlines() if "symbolic link" not in line)


@dataclass(frozen=True)
class Rendered:
    """What `helm template` made of one value set for one Kubernetes version."""

    value_set: str
    kubernetes: str
    manifests: tuple[Manifest, ...]

    def of_kind(self, kind: str) -> list[Manifest]:
        return [m for m in self.manifests if m["kind"] == kind]

    def named(self, kind: str, name: str) -> Manifest:
        found = [m for m in self.of_kind(kind) if m["metadata"]["name"] == name]
        assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
        return found[0]


def template(
    *extra: str | Path, values: Path | None = None, kubernetes: str = NEWEST_KUBERNETES
) -> tuple[Manifest, ...]:
    """helm template of the chart (CRDs and test hooks included), parsed."""
    args: list[str | Path] = [
        "template",
        RELEASE,
        CHART,
        "--namespace",
        NAMESPACE,
        "--include-crds",
        "--kube-version",
        f"{kubernetes}.0",
    ]
    if values is not None:
        args += ["--values", values]
    return load_manifests(run_helm(*args, *extra).stdout)


@cache
def render(value_set: str, kubernetes: str = NEWEST_KUBERNETES) -> Rendered:
    """One value set rendered once per test session."""
    return Rendered(
        value_set, kubernetes, template(values=VALUE_SETS[value_set], kubernetes=kubernetes)
    )


def app_version() -> str:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    return str(chart["appVersion"])
