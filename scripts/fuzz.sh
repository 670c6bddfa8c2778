#!/usr/bin/env bash
# Builds the libFuzzer targets of fuzz/ with clang-14, AddressSanitizer and UndefinedBehaviorSanitizer
# into build-fuzz/, then runs each for a while from its committed seed corpus (fuzz/corpus/<target>/;
# what it finds goes to build-fuzz/corpus/<target>/, crashes to build-fuzz/crashes/).
# Needs `scripts/setup.sh --fuzz` (clang-14, libfuzzer-14-dev). Exits non-zero on any crash,
# sanitizer report, timeout or out-of-memory, and prints a line per target: runs and coverage.
#
#   scripts/fuzz.sh                          every target, 20 s each (what CI runs)
#   scripts/fuzz.sh --seconds 600 safetensors_fuzzer tokenizer_encode_fuzzer
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=20
targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds=$2; shift 2 ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) targets+=("$1"); shift ;;
  esac
done

build_dir=${FUZZ_BUILD_DIR:-build-fuzz}
if [ ! -f "$build_dir/build.ninja" ]; then
  CC=clang-14 CXX=clang++-14 cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_CXX_FLAGS_RELEASE="-O1 -g" -DNEXTN_FUZZ=ON -DNEXTN_BUILD_TESTS=OFF >/dev/null
fi
if [ ${#targets[@]} -eq 0 ]; then
  for source in fuzz/*_fuzzer.cpp; do targets+=("$(basename "$source" .cpp)"); done
fi
cmake --build "$build_dir" -j "$(nproc)" --target "${targets[@]}"

# Leak checks off: libtorch and the parsers' function-local statics keep memory until exit.
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:symbolize=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
mkdir -p "$build_dir/crashes"
failed=()
printf '%-26s %12s %8s %8s %s\n' target runs cov ft result
for target in "${targets[@]}"; do
  corpus="$build_dir/corpus/$target"
  log="$build_dir/$target.log"
  mkdir -p "$corpus"
  status=0
  "$build_dir/fuzz/$target" "$corpus" "fuzz/corpus/$target" -max_total_time="$seconds" -timeout=10 \
    -rss_limit_mb=4096 -max_len=65536 -detect_leaks=0 -print_final_stats=1 \
    -artifact_prefix="$build_dir/crashes/$target-" >"$log" 2>&1 || status=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  coverage=$(grep -oE 'cov: [0-9]+ ft: [0-9]+' "$log" | tail -1)
  result=ok
  if [ "$status" -ne 0 ]; then
    result="FAILED (exit $status; see $log)"
    failed+=("$target")
  fi
  printf '%-26s %12s %8s %8s %s\n' "$target" "${runs:-?}" "$(echo "$coverage" | awk '{print $2}')" \
    "$(echo "$coverage" | awk '{print $4}')" "$result"
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: ${failed[*]} failed"
  exit 1
fi
