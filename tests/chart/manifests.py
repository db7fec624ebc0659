"""Strict validation of rendered manifests against the Kubernetes schemas of one version."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate

Manifest = dict[str, Any]

SCHEMAS = Path(__file__).parent / "schemas"
# Custom resources the chart renders, validated against the strict subsets in
# schemas/ (the Kubernetes schemas do not know them).
CUSTOM_KINDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor.monitoring.coreos.com-v1.json",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "prometheusrule.monitoring.coreos.com-v1.json",
}


@cache
def _custom_validator(filename: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(json.loads((SCHEMAS / filename).read_text()))


def problems(manifest: Manifest, kubernetes: str) -> list[str]:
    """What is wrong with one manifest for one Kubernetes version ([] when valid).

    Strict: an unknown field is an error. A kind without a schema is an error
    too, so nothing is waved through unchecked.
    """
    name = f"{manifest.get('kind')}/{manifest.get('metadata', {}).get('name')}"
    custom = CUSTOM_KINDS.get((manifest.get("apiVersion", ""), manifest.get("kind", "")))
    if custom is not None:
        return [
            f"{name}: {'.'.join(map(str, e.absolute_path))}: {e.message}"
            for e in _custom_validator(custom).iter_errors(manifest)
        ]
    try:
        kubernetes_validate.validate(manifest, kubernetes, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return [f"{name} (Kubernetes {kubernetes}): {'.'.join(map(str, exc.path))}: {exc.message}"]
    except kubernetes_validate.SchemaNotFoundError:
        return [f"{name}: no schema for {manifest.get('apiVersion')} in Kubernetes {kubernetes}"]
    return []
