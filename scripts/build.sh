#!/usr/bin/env bash
# Configures and builds nextn into build/ (Release). Extra arguments go to cmake's configure step,
# e.g. scripts/build.sh -DNEXTN_TORCH_FROM_PYTHON=ON. BUILD_DIR overrides the folder.
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${BUILD_DIR:-build}
if [ ! -f "$build_dir/build.ninja" ] || [ $# -gt 0 ]; then
  cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE="${BUILD_TYPE:-Release}" "$@" >/dev/null
fi
cmake --build "$build_dir" -j "$(nproc)"
