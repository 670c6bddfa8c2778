#!/usr/bin/env bash
# Experiment 4, the demo's model: three widths of the same family (16 routed experts, top-4, two
# sequential MTP modules), each trained exactly as scripts/demo.sh trains (the same flags, both
# cores, a --minutes budget, default 10), alone on the machine, one after the other; then each is
# evaluated on the whole validation split and continues the demo's first prompt greedily.
#   small        configs/small.json: hidden 256, 4 layers (14.1M parameters)
#   demo-h192-l4 hidden 192, 4 layers (8.8M)
#   demo-h128-l4 hidden 128, 4 layers (4.6M)
# Checkpoints every 200 steps are kept, for experiments/acceptance.sh. Summary:
# experiments/summarize.py sweep. Usage: experiments/demo_sweep.sh [--minutes M]
source "$(dirname "$0")/lib.sh"
minutes=10
[ "${1:-}" = --minutes ] && minutes="$2"
ensure_ready
out="$root/experiments/results/sweep"
prompt=$'import os\n\n\ndef list_python_files(directory):\n    '
for name in small demo-h192-l4 demo-h128-l4; do
  config="$configs/$name.json"
  [ "$name" = small ] && config="$root/configs/small.json"
  dir="$out/$name"
  if [ -f "$dir/eval.json" ]; then echo "kept $dir (eval.json exists)"; continue; fi
  rm -rf "$dir"; mkdir -p "$dir"
  echo "train $name for $minutes minutes"
  # The flags of scripts/demo.sh's training step, with every checkpoint kept.
  "$nextn" train --config "$config" --data "$data" --run "$dir" --minutes "$minutes" \
    --lr 2e-3 --warmup 30 --log-every 10 --eval-every 200 --checkpoint-every 200 --keep-checkpoints 100 \
    >"$dir/train.log" 2>&1
  "$nextn" eval --model "$dir" --data "$data" --max-batches 0 >"$dir/eval.log" 2>&1
  tail -n 1 "$dir/eval.log" >"$dir/eval.json"
  "$nextn" generate --model "$dir" --prompt "$prompt" --greedy --max-new-tokens 96 >"$dir/sample.txt" 2>"$dir/sample.log"
  echo "done $name: $(grep 'main loss' "$dir/eval.log" | head -n 1)"
done
python3 "$root/experiments/summarize.py" sweep
