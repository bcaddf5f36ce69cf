#!/usr/bin/env bash
# Runs every test tier. Ray's tests run in a private network namespace with only loopback,
# because Ray Serve's gRPC proxy and Ray's own services bind every interface and tests may
# only listen on 127.0.0.1. Extra arguments go to both pytest runs.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
status=0

# pytest exits 5 when it collected no test: that is a failure here, never a silent pass.
$PY -m pytest -p no:cacheprovider -rs -m "not ray" "$@" || status=$?

if unshare --net -- true 2>/dev/null; then
  unshare --net -- bash -c 'ip link set lo up && exec "$0" -m pytest -p no:cacheprovider -rs -m ray "$@"' \
    "$PY" "$@" || status=$?
else
  echo "error: the Ray tests need a private network namespace (run as root, or with unshare rights)" >&2
  status=1
fi
exit $status
