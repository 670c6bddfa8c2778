# Shared by the experiment scripts (sourced): the binary, the data, and training runs two at a
# time, one core each, so that a pair of runs shares this 2-core machine evenly.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
nextn="${NEXTN:-$root/build/nextn}"  # NEXTN: another binary (e.g. a frozen copy while developing)
data="$root/data/python-stdlib"
configs="$root/experiments/configs"

ensure_ready() {
  [ -x "$nextn" ] || bash "$root/scripts/build.sh"
  [ -f "$data/manifest.json" ] || "$nextn" data prepare
}

# train_and_eval DIR ARGS...: trains DIR from scratch with ARGS (one thread), then evaluates its
# final model on the whole validation split into DIR/eval.json. A run whose eval.json exists is
# kept (delete the directory to train it again). Output goes to DIR/train.log.
train_and_eval() {
  local dir="$1"; shift
  if [ -f "$dir/eval.json" ]; then echo "kept $dir (eval.json exists)"; return 0; fi
  rm -rf "$dir"; mkdir -p "$dir"
  echo "train $dir: $*"
  "$nextn" train --run "$dir" --data "$data" --threads 1 --keep-checkpoints 1 "$@" >"$dir/train.log" 2>&1
  "$nextn" eval --model "$dir" --data "$data" --max-batches 0 --threads 1 >"$dir/eval.log" 2>&1
  tail -n 1 "$dir/eval.log" >"$dir/eval.json"
  echo "done $dir: $(grep '^main loss\|main loss' "$dir/eval.log" | head -n 1)"
}

# Runs the queued commands ("in_parallel CMD..." lines) two at a time; fails if any failed.
pending=()
queue() { pending+=("$*"); }
run_queue() {
  local failed=0 cmd
  for cmd in "${pending[@]}"; do
    while [ "$(jobs -rp | wc -l)" -ge 2 ]; do wait -n || failed=1; done
    eval "$cmd" &
  done
  while [ "$(jobs -rp | wc -l)" -gt 0 ]; do wait -n || failed=1; done
  pending=()
  return "$failed"
}
