#!/usr/bin/env bash
# Delete the kind cluster made by scripts/kind-up.sh (and everything in it).
set -euo pipefail

CLUSTER=${KIND_CLUSTER_NAME:-greenlane}
if ! command -v kind >/dev/null 2>&1; then
    echo "error: kind is not on PATH" >&2
    exit 1
fi
if kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
    kind delete cluster --name "$CLUSTER"
else
    echo "no kind cluster named $CLUSTER: nothing to delete"
fi
