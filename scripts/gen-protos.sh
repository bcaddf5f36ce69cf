#!/usr/bin/env bash
# Regenerates the Python stubs (messages, gRPC stubs and .pyi type stubs) next to the
# .proto files, with the tools pinned in requirements/lock.txt (grpcio-tools, mypy-protobuf).
# `--check` regenerates into a scratch folder and fails when the committed stubs differ.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
mode=${1:-write}

out=proto
if [[ $mode == --check ]]; then
  out=$(mktemp -d)
  trap 'rm -rf "$out"' EXIT
fi

mapfile -t protos < <(cd proto && find aigc -name '*.proto' | sort)
# protoc-gen-mypy and protoc-gen-mypy_grpc live beside the interpreter in the venv.
bindir=$(dirname "$PY")
(cd proto && "$OLDPWD/$PY" -m grpc_tools.protoc -I. \
  --plugin=protoc-gen-mypy="$OLDPWD/$bindir/protoc-gen-mypy" \
  --plugin=protoc-gen-mypy_grpc="$OLDPWD/$bindir/protoc-gen-mypy_grpc" \
  --python_out="$( [[ $out == proto ]] && echo . || echo "$out")" \
  --grpc_python_out="$( [[ $out == proto ]] && echo . || echo "$out")" \
  --mypy_out="$( [[ $out == proto ]] && echo . || echo "$out")" \
  --mypy_grpc_out="$( [[ $out == proto ]] && echo . || echo "$out")" \
  "${protos[@]}")

# Every generated folder is a regular package, so imports need no path tricks.
while IFS= read -r d; do
  touch "$out/$d/__init__.py"
done < <(cd proto && find aigc -type d)

if [[ $mode == --check ]]; then
  if ! diff -r -q -x '*.proto' -x '__pycache__' proto/aigc "$out/aigc"; then
    echo "proto stubs are stale: run 'make proto' and commit the result" >&2
    exit 1
  fi
  echo "proto stubs are up to date"
fi
