#!/usr/bin/env bash
# Experiment 2, multi-token prediction (DeepSeek-V3 §2.2 and Table 4; Gloeckle et al. 2024): one
# main model (16 routed experts, top-4, aux-loss-free balancing), one data order, trained with
#   d0             next-token prediction only
#   d1             one sequential MTP module (DeepSeek-V3's D = 1)
#   d2             two sequential MTP modules
#   d2-parallel    two parallel heads (Gloeckle et al.)
# first for equal steps (experiments/results/mtp/steps/), then d0 and d1 for equal wall-clock
# time (results/mtp/time/): the steps that fit in the time d2's steps take, from each variant's
# seconds per step measured alone on this machine (results/mtp/time/budget.json). Every MTP model
# then drafts for itself on 64 held-out prompts (nextn eval --acceptance, greedy and temperature 1).
# Summary: experiments/summarize.py mtp. Usage: experiments/mtp.sh [--steps N]
source "$(dirname "$0")/lib.sh"
steps=800
[ "${1:-}" = --steps ] && steps="$2"
ensure_ready
out="$root/experiments/results/mtp"
variants=(d0 d1 d2 d2-parallel)
common=(--batch-size 16 --seq-len 128 --lr 2e-3 --warmup 50 --eval-every 200 --eval-batches 8
        --log-every 50 --log-experts-every 50 --checkpoint-every 0 --seed 1 --balance aux-free)
acceptance=(--acceptance 64 --prompt-tokens 64 --new-tokens 64 --temperature 0 1 --seed 1)

# Equal steps.
for v in "${variants[@]}"; do
  queue train_and_eval "$out/steps/$v" --config "$configs/moe16-$v.json" --steps "$steps" "${common[@]}"
done
run_queue

# Equal time: each variant's seconds per step, measured by 40 steps of each trained alone on one
# core (the other idle), one after the other: the median over 5-step intervals after the first 10
# steps. (The equal-steps runs' own step times depend on what else ran beside them.)
seconds_per_step() {
  local dir; dir=$(mktemp -d)
  "$nextn" train --run "$dir/run" --data "$data" --threads 1 --config "$configs/moe16-$1.json" --steps 40 \
    --batch-size 16 --seq-len 128 --lr 2e-3 --warmup 50 --eval-every 0 --eval-batches 1 --log-every 5 \
    --checkpoint-every 0 --keep-checkpoints 1 --seed 1 --balance aux-free >"$dir/train.log" 2>&1
  python3 -c 'import json,statistics,sys
rows=[json.loads(l) for l in open(sys.argv[1]) if "\"train\"" in l and json.loads(l)["step"] >= 10]
print(statistics.median((b["elapsed_seconds"] - a["elapsed_seconds"]) / (b["step"] - a["step"]) for a, b in zip(rows, rows[1:])))' \
    "$dir/run/metrics.jsonl"
  rm -rf "$dir"
}
declare -A per_step
for v in d0 d1 d2; do per_step[$v]=$(seconds_per_step "$v"); done
budget=$(python3 -c "print(${per_step[d2]} * $steps)")
echo "seconds per step alone: d0 ${per_step[d0]}, d1 ${per_step[d1]}, d2 ${per_step[d2]}; budget ${budget} s (d2's $steps steps)"
mkdir -p "$out/time"
echo "{\"seconds_per_step\": {\"d0\": ${per_step[d0]}, \"d1\": ${per_step[d1]}, \"d2\": ${per_step[d2]}}, \"budget_seconds\": $budget}" \
  >"$out/time/budget.json"
for v in d0 d1; do
  n=$(python3 -c "print(round($budget / ${per_step[$v]}))")
  queue train_and_eval "$out/time/$v" --config "$configs/moe16-$v.json" --steps "$n" "${common[@]}"
done
run_queue
[ -e "$out/time/d2" ] || ln -s ../steps/d2 "$out/time/d2"

# Acceptance of each depth when the MTP modules draft for their own main model.
for d in "$out"/steps/d1 "$out"/steps/d2 "$out"/steps/d2-parallel "$out"/time/d1; do
  [ -f "$d/acceptance.json" ] && continue
  queue "\"$nextn\" eval --model \"$d\" --data \"$data\" --max-batches 1 --threads 1 ${acceptance[*]} >\"$d/acceptance.log\" 2>&1 && tail -n 1 \"$d/acceptance.log\" >\"$d/acceptance.json\""
done
run_queue
python3 "$root/experiments/summarize.py" mtp
