#!/usr/bin/env bash
# Runs the safety service's C helpers under AddressSanitizer and UndefinedBehaviorSanitizer: builds
# instrumented copies of native/*.c into .cache/native-asan/ and drives them through the service's
# Python code with training lines (when ../shared is beside the repo), random and adversarial text.
# Any memory error or undefined behaviour aborts with the sanitizer's report. About a minute.
set -euo pipefail
cd "$(dirname "$0")/.."
CC=${CC:-cc}
out=.cache/native-asan
mkdir -p "$out"
for name in ngram scan fold; do
  "$CC" -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer \
    -fPIC -shared -std=c99 -o "$out/libaigc_$name.so" "services/safety/src/aigc_safety/native/$name.c"
done
runtime="$("$CC" -print-file-name=libasan.so) $("$CC" -print-file-name=libubsan.so)"
LD_PRELOAD="$runtime" ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  .venv/bin/python scripts/native_sanitizer_run.py "$out"
