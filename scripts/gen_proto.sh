#!/usr/bin/env bash
# Regenerate the protobuf/gRPC Python code and its .pyi stubs from proto/.
# With --check, fail when the committed code differs from a fresh generation.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=services/core/src/greenlane
PY=${PYTHON:-.venv/bin/python}
gen() {
  local out=$1
  mkdir -p "$out/greenlane/v1"
  "$PY" -m grpc_tools.protoc -Iproto \
    --python_out="$out" --grpc_python_out="$out" \
    --plugin=protoc-gen-mypy=.venv/bin/protoc-gen-mypy --mypy_out="$out" \
    --plugin=protoc-gen-mypy_grpc=.venv/bin/protoc-gen-mypy_grpc --mypy_grpc_out="$out" \
    proto/greenlane/v1/*.proto
  touch "$out/greenlane/v1/__init__.py" "$out/greenlane/v1/py.typed"
}
if [[ "${1:-}" == "--check" ]]; then
  tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
  gen "$tmp"
  if ! diff -r "$tmp/greenlane/v1" "$OUT/v1" >/dev/null; then
    diff -r "$tmp/greenlane/v1" "$OUT/v1" | head -20 >&2
    echo "generated protobuf code is stale: run 'make proto' and commit the result" >&2
    exit 1
  fi
  echo "generated protobuf code is up to date"
else
  tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
  gen "$tmp"
  rm -rf "$OUT/v1"; cp -r "$tmp/greenlane/v1" "$OUT/v1"
  echo "regenerated $OUT/v1"
fi
