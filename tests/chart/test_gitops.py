"""The chart as GitOps tools read it: no duplicate keys, kustomize renders it, renders are stable.

Flux's helm-controller, `kustomize --enable-helm` and Argo CD parse what Helm renders
with kyaml, which refuses a mapping that names a key twice (Helm keeps the last one
silently). kubectl's built-in kustomize is such a tool: it runs here for real.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from chart.helm import (
    CHART,
    NAMESPACE,
    NEWEST_KUBERNETES,
    OLDEST_KUBERNETES,
    RELEASE,
    TOOLS_BIN,
    VALUE_SETS,
    DuplicateKeyError,
    helm_binary,
    load_manifests,
    render,
    template,
)

SETS = sorted(VALUE_SETS)


def test_the_manifest_loader_refuses_a_mapping_with_a_repeated_key() -> None:
    text = "kind: Service\nmetadata:\n  labels:\n    a: '1'\n    b: '2'\n    a: '1'\n"
    with pytest.raises(DuplicateKeyError, match=r"duplicate key 'a' \(first at line 4\)"):
        load_manifests(text)


def test_the_manifest_loader_reads_multi_document_streams_and_skips_empty_ones() -> None:
    docs = load_manifests("---\na: 1\n---\n# only a comment\n---\nb: {c: 2}\n")
    assert docs == ({"a": 1}, {"b": {"c": 2}})


@pytest.mark.parametrize("kubernetes", [OLDEST_KUBERNETES, NEWEST_KUBERNETES])
@pytest.mark.parametrize("value_set", SETS)
def test_no_rendered_manifest_names_a_key_twice(value_set: str, kubernetes: str) -> None:
    # render() parses with the duplicate-refusing loader: it raises on a repeated key.
    assert render(value_set, kubernetes).manifests


def kustomize(
    work: Path, chart: dict[str, object], chart_home: Path = CHART.parent
) -> subprocess.CompletedProcess[str]:
    """kubectl kustomize --enable-helm on a kustomization in work that inflates one chart."""
    # kustomize's helm plugin insists on `helm version -c` answering v3; helm v4 takes
    # the same `helm template` command line. The shim answers the version probe only.
    shim = work / "helm"
    shim.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = version ]; then echo v3.19.0+helm4; exit 0; fi\n'
        f'exec "{helm_binary()}" "$@"\n'
    )
    shim.chmod(0o755)
    (work / "kustomization.yaml").write_text(
        yaml.safe_dump({"helmGlobals": {"chartHome": str(chart_home)}, "helmCharts": [chart]})
    )
    return subprocess.run(
        [
            str(TOOLS_BIN / "kubectl"),
            "kustomize",
            "--enable-helm",
            "--helm-command",
            str(shim),
            "--load-restrictor",
            "LoadRestrictionsNone",
            str(work),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("value_set", SETS)
def test_kustomize_enable_helm_renders_the_chart_with_each_value_set(
    value_set: str, tmp_path: Path
) -> None:
    chart: dict[str, object] = {
        "name": CHART.name,
        "releaseName": RELEASE,
        "namespace": NAMESPACE,
        "includeCRDs": True,
    }
    if VALUE_SETS[value_set] is not None:
        chart["valuesFile"] = str(VALUE_SETS[value_set])
    done = kustomize(tmp_path, chart)
    assert done.returncode == 0, done.stderr
    kinds = {(m["kind"], m["metadata"]["name"]) for m in load_manifests(done.stdout)}
    # kustomize drops helm's test hooks; everything else Helm renders is there.
    helm_kinds = {
        (m["kind"], m["metadata"]["name"])
        for m in render(value_set).manifests
        if "test" not in str(m["metadata"].get("annotations", {}).get("helm.sh/hook", ""))
    }
    assert helm_kinds - kinds == set()


def test_kustomize_refuses_a_chart_with_a_duplicate_label(tmp_path: Path) -> None:
    # The check above can fail: the same kustomize refuses a manifest with a repeated key.
    broken = tmp_path / "chart"
    (broken / "templates").mkdir(parents=True)
    (broken / "Chart.yaml").write_text("apiVersion: v2\nname: chart\nversion: 0.1.0\n")
    (broken / "values.yaml").write_text("{}\n")
    (broken / "templates" / "cm.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n  labels:\n    a: '1'\n    a: '1'\n"
    )
    work = tmp_path / "work"
    work.mkdir()
    done = kustomize(work, {"name": "chart"}, chart_home=tmp_path)
    assert done.returncode != 0
    assert 'mapping key "a" already defined' in done.stderr


def test_the_gitops_value_set_renders_the_same_manifests_every_time() -> None:
    # Argo CD and kustomize render without a cluster, so Helm's lookup finds nothing:
    # a generated password or token would change on every sync. The gitops values
    # name existing Secrets instead, and two renders are identical.
    values = VALUE_SETS["gitops"]
    assert template(values=values) == template(values=values)
    assert [m for m in template(values=values) if m["kind"] == "Secret"] == []
