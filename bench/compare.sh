#!/usr/bin/env bash
# nextn against the plain-PyTorch reference (bench/reference/) on this machine, in one run:
# training step time of a config at batch 8 x 256 with and without MTP, the forward part of that
# step, decode tokens/s at batch 1 (when `nextn bench decode` exists), peak RSS of each side's
# process, and one MoE layer's time at 16/32/64 routed experts. Both sides use the same threads
# (OpenBLAS: all cores; libtorch intra-op: 1, as nextn runs) and run as separate processes,
# alternating. The reference runs as users run it, with glibc keeping freed memory, and with
# jemalloc preloaded (nextn's allocator), to separate implementation from allocator. The table
# goes between the compare markers of docs/BENCHMARKS.md.
#
# Usage: bench/compare.sh [--nextn PATH] [--python PATH] [--rounds N] [--steps N] [--no-write]
# Builds nothing: build nextn first (scripts/build.sh). About 5 minutes on 2 cores; --rounds 1 halves it.
set -euo pipefail
cd "$(dirname "$0")/.."

nextn=build/nextn
python=/usr/bin/python3
passthrough=()
while [ $# -gt 0 ]; do
  case "$1" in
    --nextn) nextn=$2; shift 2 ;;
    --python) python=$2; shift 2 ;;
    -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) passthrough+=("$1"); shift ;;
  esac
done

if [ ! -x "$nextn" ]; then
  echo "compare.sh: '$nextn' is not an executable; build nextn first (scripts/build.sh) or pass --nextn PATH" >&2
  exit 1
fi
if ! "$python" -c 'import torch' 2>/dev/null; then
  echo "compare.sh: '$python' cannot import torch; pass --python PATH of a python with PyTorch" >&2
  exit 1
fi
exec "$python" bench/reference/compare.py --nextn "$nextn" --python "$python" "${passthrough[@]+"${passthrough[@]}"}"
