#!/usr/bin/env bash
# Experiment 5, bf16 mixed precision against fp32 (issue: training at this CPU's limit): the
# `small` preset trained from the same seed on the same batches for the same number of steps
# (350, about ten minutes in fp32 here), once per precision, one after the other on both cores;
# each is evaluated on the whole validation split, and their curves go into one report and one
# picture (docs/fidelity/precision-loss.png). Usage: experiments/precision.sh [--steps N]
source "$(dirname "$0")/lib.sh"
steps=350
[ "${1:-}" = --steps ] && steps="$2"
ensure_ready
out="$root/experiments/results/precision"
for precision in fp32 bf16; do
  dir="$out/$precision"
  if [ -f "$dir/eval.json" ]; then echo "kept $dir (eval.json exists)"; continue; fi
  rm -rf "$dir"; mkdir -p "$dir"
  echo "train small in $precision for $steps steps"
  "$nextn" train --config "$root/configs/small.json" --data "$data" --run "$dir" --steps "$steps" \
    --precision "$precision" --lr 2e-3 --warmup 30 --log-every 25 --eval-every 50 --eval-batches 16 \
    --checkpoint-every "$steps" >"$dir/train.log" 2>&1
  "$nextn" eval --model "$dir" --data "$data" --max-batches 0 >"$dir/eval.log" 2>&1
  tail -n 1 "$dir/eval.log" >"$dir/eval.json"
  echo "done $precision: $(grep 'main loss' "$dir/eval.log" | head -n 1)"
done
"$nextn" report "$out/fp32" "$out/bf16" -o "$out/report.html"
node "$root/experiments/plot.mjs" "$out/report.html" "$root/docs/fidelity/precision" loss
