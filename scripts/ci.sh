#!/usr/bin/env bash
# What CI runs after setup: lint, format check, typecheck, proto drift, then every test tier
# against the real broker, Redis, Prometheus and CPU model. Ends with one summary line.
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
results=()
failed=0

step() {
  local name=$1
  shift
  local start=$SECONDS
  echo "::: $name"
  if "$@"; then
    results+=("$name ok ($((SECONDS - start))s)")
  else
    results+=("$name FAILED ($((SECONDS - start))s)")
    failed=1
  fi
}

step lint $BIN/ruff check services tests loadtests scripts
step format $BIN/ruff format --check services tests loadtests scripts
step typecheck $BIN/mypy
step proto-drift env PYTHON=$BIN/python bash scripts/gen-protos.sh --check
# The safety service's C helpers under AddressSanitizer and UBSan, compared with the Python paths.
step native-sanitizers bash scripts/check-native.sh
# scripts/run-tests.sh treats pytest exit 5 (no tests collected) as the failure it is.
step tests bash scripts/run-tests.sh

echo "ci summary: ${results[*]}"
exit $failed
