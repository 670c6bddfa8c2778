#!/usr/bin/env bash
# Experiment 1, load balancing (arXiv 2408.15664 Table 2; DeepSeek-V3 §2.1.2): one model (16 routed
# experts, top-4 of 4 groups keeping 2, 3 MoE layers, no MTP), one data order, equal steps, under
#   aux-free        the expert bias (gamma 1e-3, 0 for the last 3.4% of steps, as V3) + the
#                   sequence-wise loss (alpha 1e-4)
#   aux-free-g1e-2  the same with gamma 1e-2 (the paper's "oscillates" setting)
#   aux-loss-1e-2   the classic batch-level auxiliary loss, alpha 0.01
#   aux-loss-1e-3   ... alpha 0.001
#   none            no balancing at all
# Raw metrics: experiments/results/balancing/<name>/{metrics.jsonl,eval.json}; summary:
# experiments/summarize.py balancing.
# Usage: experiments/balancing.sh [--steps N] [--seed S] [--only "NAME ..."]
#   --seed S: another seed of weights and data order (runs named NAME-seedS; default 1, no suffix)
#   --only:   these runs only (e.g. --only "aux-free aux-loss-1e-2")
source "$(dirname "$0")/lib.sh"
steps=800 seed=1 only=""
while [ $# -gt 0 ]; do
  case "$1" in
    --steps) steps="$2"; shift 2 ;;
    --seed) seed="$2"; shift 2 ;;
    --only) only="$2"; shift 2 ;;
    *) echo "balancing.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
ensure_ready
out="$root/experiments/results/balancing"
suffix=""
[ "$seed" = 1 ] || suffix="-seed$seed"
common=(--config "$configs/moe16-d0.json" --steps "$steps" --batch-size 16 --seq-len 128 --lr 2e-3 --warmup 50
        --eval-every 200 --eval-batches 8 --log-every 50 --log-experts-every 50 --checkpoint-every 0 --seed "$seed")
variant() {  # NAME FLAGS...
  local name="$1"; shift
  [ -z "$only" ] || [[ " $only " == *" $name "* ]] || return 0
  queue train_and_eval "$out/$name$suffix" "${common[@]}" "$@"
}
variant aux-free --balance aux-free
variant aux-loss-1e-2 --balance aux-loss --aux-alpha 0.01
variant aux-loss-1e-3 --balance aux-loss --aux-alpha 0.001
variant none --balance none
variant aux-free-g1e-2 --balance aux-free --bias-gamma 0.01
run_queue
python3 "$root/experiments/summarize.py" balancing
