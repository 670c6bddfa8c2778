#!/usr/bin/env bash
# Builds nextn and runs the whole test suite: the C++ tests (ctest), then the end-to-end tests in
# Node (node's built-in test runner): `nextn serve` driven by the official OpenAI client, and
# `nextn dashboard` / `nextn report` in headless chromium (screenshots: build/test-artifacts/),
# and the tokenizer against Hugging Face tokenizers (tests/tokenizer/conformance.test.mjs).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh "$@"
ctest --test-dir "${BUILD_DIR:-build}" --output-on-failure -j "$(nproc)"
BUILD_DIR="${BUILD_DIR:-build}" node --test tests/server/ tests/dashboard/ tests/tokenizer/
