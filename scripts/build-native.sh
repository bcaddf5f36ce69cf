#!/usr/bin/env bash
# Compiles the project's small C helpers next to their sources: the safety classifier's feature
# pass (ngram.c), the rule scanner's automaton (scan.c) and the normaliser's fold (fold.c).
# Optional at run time: without them the same work runs in numpy or Python, more slowly, with the
# same results.
# Called by scripts/setup.sh; safe to run again (rebuilds only what is older than its source).
set -euo pipefail
cd "$(dirname "$0")/.."
CC=${CC:-cc}
dir=services/safety/src/aigc_safety/native
if ! command -v "$CC" >/dev/null; then
  echo "build-native: no C compiler ($CC); the safety service will use numpy and Python" >&2
  exit 0
fi
for name in ngram scan fold; do
  src=$dir/$name.c
  lib=$dir/libaigc_$name.so
  if [[ ! -f $lib || $src -nt $lib ]]; then
    "$CC" -O2 -fPIC -shared -std=c99 -Wall -Wextra -o "$lib.tmp" "$src"
    mv "$lib.tmp" "$lib"
    echo "build-native: built $lib"
  fi
done
