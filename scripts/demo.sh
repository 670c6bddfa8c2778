#!/usr/bin/env bash
# The main job, from nothing to a model that writes Python and drafts for itself:
#   1. build nextn;
#   2. prepare the default corpus (this machine's Python standard library sources): train a
#      byte-level BPE tokenizer and write token shards to data/python-stdlib (kept if present);
#   3. train the `demo` preset (4.6M parameters, 2 sequential MTP modules; chosen by measurement
#      among three widths, docs/FIDELITY.md section 4) for a bounded time, in bfloat16 mixed
#      precision (more steps in the same time than fp32 on this CPU, docs/BENCHMARKS.md);
#   4. rank the tokens by their frequency in the training data (draft_vocab.json beside the model),
#      for drafting from the 2048 most frequent with a bfloat16 copy of the head (a cheaper drafter,
#      the same output);
#   5. generate Python from a few prompts, plain and with MTP speculative decoding, printing each
#      depth's acceptance and the speedup measured in the same run, then the decode benchmark;
#   6. write the run's report (charts and final figures, one HTML file) and print its path.
# Watch the training live from another terminal: ./build/nextn dashboard runs/
#
# Usage: scripts/demo.sh [--minutes M] [--run DIR] [--skip-training]
#   --minutes M       training time budget (default 10)
#   --run DIR         run directory (default runs/demo); an existing run is replaced
#   --skip-training   reuse the model already in --run
set -euo pipefail
cd "$(dirname "$0")/.."

minutes=10
run=runs/demo
train=1
while [ $# -gt 0 ]; do
  case "$1" in
    --minutes) minutes="$2"; shift 2 ;;
    --run) run="$2"; shift 2 ;;
    --skip-training) train=0; shift ;;
    *) echo "demo: unknown argument '$1' (see the usage at the top of scripts/demo.sh)" >&2; exit 2 ;;
  esac
done

section() { printf '\n=== %s\n' "$*"; }

section "build"
bash scripts/build.sh
nextn=./build/nextn
"$nextn" info

section "data: the Python standard library sources as token shards"
if [ -f data/python-stdlib/manifest.json ]; then
  echo "data/python-stdlib exists (delete it to prepare it again)"
else
  "$nextn" data prepare
fi

if [ "$train" = 1 ]; then
  section "train: configs/demo.json for $minutes minutes"
  echo "watch it live: run '$nextn dashboard $(dirname "$run")/' in another terminal and open http://127.0.0.1:8080/"
  rm -rf "$run"
  "$nextn" train --config configs/demo.json --data data/python-stdlib --run "$run" --minutes "$minutes" \
    --precision bf16 --lr 2e-3 --warmup 30 --log-every 10 --eval-every 200 --checkpoint-every 200
fi

section "draft vocabulary: the model's tokens ranked by frequency in the training data"
"$nextn" draft-vocab --model "$run" --data data/python-stdlib

section "generate: plain decoding against MTP speculative decoding (greedy, 2 drafts per step)"
prompts=(
  $'import os\n\n\ndef list_python_files(directory):\n    '
  $'class Stack:\n    """A last-in, first-out stack."""\n\n    def __init__(self):\n        '
  $'    def __repr__(self):\n        return '
  $'if __name__ == "__main__":\n    '
)
for prompt in "${prompts[@]}"; do
  printf '\n--- prompt:\n%s\n--- continuation:\n' "$prompt"
  "$nextn" generate --model "$run" --prompt "$prompt" --greedy --max-new-tokens 96 \
    --speculative mtp --draft auto --draft-vocab 2048 --draft-head bf16 --compare
done

section "bench decode: plain against N = 1..3 drafts per step and --draft auto, with the whole head and the cheaper one, side by side"
"$nextn" bench decode --model "$run" --new-tokens 128 --repeats 3 --draft-vocab 2048 --draft-head bf16

section "report: the run's charts and final figures in one HTML file"
"$nextn" report "$run" -o "$run/report.html"
echo "open $(realpath "$run/report.html") in a browser (it needs no network)"
