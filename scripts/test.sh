#!/usr/bin/env bash
# Builds nextn and runs the whole test suite: the C++ tests (ctest), then the end-to-end tests in
# Node that drive `nextn serve` with the official OpenAI client (node's built-in test runner).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh "$@"
ctest --test-dir "${BUILD_DIR:-build}" --output-on-failure -j "$(nproc)"
BUILD_DIR="${BUILD_DIR:-build}" node --test tests/server/
