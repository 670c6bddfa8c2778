#!/usr/bin/env bash
# The main job: builds nextn and runs a forward/backward smoke run of the `small` preset on random
# tokens, printing the loss of the main model and of each MTP depth.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
./build/nextn smoke --config configs/small.json "$@"
