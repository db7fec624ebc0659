#!/usr/bin/env bash
# Create the kind cluster (k8s/kind-config.yaml), build every greenlane-* image and
# load it into the cluster's nodes, tagged with the chart's appVersion.
# Needs docker and kind on PATH. Safe to run again: an existing cluster is reused
# and the images are rebuilt (Docker's layer cache makes that quick).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
CLUSTER=${KIND_CLUSTER_NAME:-greenlane}

for tool in docker kind; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "error: $tool is not on PATH (see docs/kubernetes.md, 'What you need')" >&2
        exit 1
    fi
done

# The chart deploys greenlane-<name>:<appVersion>; build exactly those tags.
TAG=$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\} *$/\1/p' charts/greenlane/Chart.yaml)
if [[ -z $TAG ]]; then
    echo "error: no appVersion in charts/greenlane/Chart.yaml" >&2
    exit 1
fi

if kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
    echo "kind cluster $CLUSTER exists: reusing it"
else
    kind create cluster --name "$CLUSTER" --config k8s/kind-config.yaml --wait 180s
fi

# Every image from the one Dockerfile, as `make images` builds them (kind loads from docker).
CONTAINER_ENGINE=docker python3 scripts/container_images.py build --tag "$TAG"
images=()
while read -r service; do
    images+=("greenlane-${service//_/-}:$TAG")
done < <(python3 scripts/container_images.py services)

kind load docker-image --name "$CLUSTER" "${images[@]}"

cat <<DONE

kind cluster "$CLUSTER" is up with ${#images[@]} images loaded (${images[*]}).
Next:
  helm install greenlane charts/greenlane --namespace greenlane --create-namespace --wait --timeout 10m
  helm test greenlane --namespace greenlane --logs
DONE
