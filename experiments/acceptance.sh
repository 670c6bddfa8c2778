#!/usr/bin/env bash
# Experiment 3, draft acceptance (DeepSeek-V3 §5.4.3: 85-90% for the second token): every kept
# checkpoint of a run drafts for itself on 64 held-out prompts of 64 tokens (64 new tokens each,
# greedy and temperature 1, all MTP depths), so acceptance is seen growing with training.
# Default run: the demo sweep's model with the lowest validation loss (experiments/demo_sweep.sh
# first); any run directory with kept checkpoints works. Results in
# experiments/results/acceptance/<run name>/; summary: experiments/summarize.py acceptance.
# Usage: experiments/acceptance.sh [RUN_DIR]
source "$(dirname "$0")/lib.sh"
ensure_ready
run="${1:-}"
if [ -z "$run" ]; then
  run=$(python3 -c 'import json,sys
s=json.load(open(sys.argv[1]))
print(min(s, key=lambda n: s[n]["validation_loss"]))' "$root/experiments/results/sweep/summary.json")
  run="$root/experiments/results/sweep/$run"
fi
out="$root/experiments/results/acceptance/$(basename "$run")"
mkdir -p "$out"
echo "$(realpath "$run")" >"$out/run.txt"
for checkpoint in "$run"/checkpoints/step-*; do
  step=$(basename "$checkpoint")
  [ -f "$out/$step.json" ] && continue
  "$nextn" eval --model "$checkpoint" --data "$data" --max-batches 16 \
    --acceptance 64 --prompt-tokens 64 --new-tokens 64 --temperature 0 1 --seed 1 >"$out/$step.log" 2>&1
  tail -n 1 "$out/$step.log" >"$out/$step.json"
  grep '^acceptance' "$out/$step.log" | sed "s/^/$step: /"
done
python3 "$root/experiments/summarize.py" acceptance
