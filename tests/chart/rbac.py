"""What a set of RBAC rules allows, and what an owner reference needs: pure functions."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml


def allows(rules: Iterable[Mapping[str, Any]], group: str, resource: str, verb: str) -> bool:
    """True when one PolicyRule grants verb on resource (e.g. "jobs", "x/status") of group."""
    for rule in rules:
        groups = rule.get("apiGroups") or []
        resources = rule.get("resources") or []
        verbs = rule.get("verbs") or []
        if (
            (group in groups or "*" in groups)
            and (resource in resources or "*" in resources)
            and (verb in verbs or "*" in verbs)
        ):
            return True
    return False


def plural_of(crds: Path, api_version: str, kind: str) -> str | None:
    """The resource name of a custom kind, from the CRD files of a chart."""
    group = api_version.rpartition("/")[0]
    for path in sorted(crds.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        names = crd["spec"]["names"]
        if crd["spec"]["group"] == group and names["kind"] == kind:
            return str(names["plural"])
    return None


def owner_reference_needs(reference: Mapping[str, Any], crds: Path) -> list[tuple[str, str, str]]:
    """(group, resource, verb) the creator of an object with this owner reference needs.

    With blockOwnerDeletion, the OwnerReferencesPermissionEnforcement admission plugin
    (on in OpenShift) requires `update` on the owner's finalizers subresource.
    """
    if not reference.get("blockOwnerDeletion"):
        return []
    api_version = str(reference["apiVersion"])
    group = api_version.rpartition("/")[0]
    plural = plural_of(crds, api_version, str(reference["kind"]))
    if plural is None:
        raise ValueError(f"no CRD in {crds} for {api_version} {reference['kind']}")
    return [(group, f"{plural}/finalizers", "update")]
