#!/usr/bin/env bash
# Compiles the project's small C helpers (today: the safety classifier's n-gram look-up) next to
# their sources. Optional at run time: without them the same code runs in numpy, more slowly.
# Called by scripts/setup.sh; safe to run again (rebuilds only when the source is newer).
set -euo pipefail
cd "$(dirname "$0")/.."
CC=${CC:-cc}
src=services/safety/src/aigc_safety/native/ngram.c
lib=services/safety/src/aigc_safety/native/libaigc_ngram.so
if ! command -v "$CC" >/dev/null; then
  echo "build-native: no C compiler ($CC); the safety classifier will use numpy" >&2
  exit 0
fi
if [[ ! -f $lib || $src -nt $lib ]]; then
  "$CC" -O2 -fPIC -shared -std=c99 -Wall -Wextra -o "$lib.tmp" "$src"
  mv "$lib.tmp" "$lib"
  echo "build-native: built $lib"
fi
