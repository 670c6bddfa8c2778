#!/usr/bin/env bash
# Writes the seed corpora of fuzz/corpus/ from real files: what `nextn` itself writes for a small
# run (a dataset of Python's json package tokenized with fuzz/tokenizer.json, a 2-step run of the
# tiny preset, its checkpoint and draft_vocab.json), the presets, and small hand-written inputs.
# Usage: fuzz/make_corpus.sh [NEXTN_BINARY]   (default build/nextn). Rerun when a format changes.
set -euo pipefail
cd "$(dirname "$0")/.."
nextn=${1:-build/nextn}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
corpus=fuzz/corpus
# crash-* files are inputs that once failed a target: regression seeds, kept.
[ -d "$corpus" ] && find "$corpus" -type f ! -name 'crash-*' -delete
for target in safetensors checkpoint_index model_config tokenizer_json tokenizer_encode dataset_manifest token_shard \
  draft_vocab run_state request_body; do
  mkdir -p "$corpus/${target}_fuzzer"
done

stdlib_json=$(python3 -c 'import json, os; print(os.path.dirname(json.__file__))')
"$nextn" data prepare --input "$stdlib_json" --tokenizer fuzz/tokenizer.json --output "$work/data" \
  --validation-fraction 0.3 >/dev/null
python3 - "$work" <<'EOF'
import json, sys
config = json.load(open("configs/tiny.json"))
config["vocab_size"] = 512
json.dump(config, open(sys.argv[1] + "/tiny512.json", "w"), indent=2)
EOF
"$nextn" train --config "$work/tiny512.json" --data "$work/data" --run "$work/run" --steps 2 --batch-size 2 \
  --seq-len 32 --eval-batches 1 --threads 1 >/dev/null
checkpoint="$work/run/checkpoints/step-00000002"
"$nextn" draft-vocab --model "$work/run" --data "$work/data" >/dev/null

cp configs/*.json "$corpus/model_config_fuzzer/"
cp "$checkpoint/config.json" "$corpus/model_config_fuzzer/checkpoint-config.json"
cp fuzz/tokenizer.json "$corpus/tokenizer_json_fuzzer/"
cp "$work/data/manifest.json" "$corpus/dataset_manifest_fuzzer/"
cp "$checkpoint/draft_vocab.json" "$corpus/draft_vocab_fuzzer/"
# run_state_fuzzer: the first byte picks the file kind (0 trainer_state, 1 run.json, 2 checksums).
{ printf '\x00'; cat "$checkpoint/trainer_state.json"; } >"$corpus/run_state_fuzzer/trainer_state"
{ printf '\x01'; cat "$work/run/run.json"; } >"$corpus/run_state_fuzzer/run"
{ printf '\x02'; printf '{"format": "nextn-checksums", "version": 1, "algorithm": "sha256", "files": {"config.json": {"bytes": 3, "sha256": "%s"}}}' \
  "$(printf '{}\n' | sha256sum | cut -d' ' -f1)"; } >"$corpus/run_state_fuzzer/checksums"
# token_shard_fuzzer: the first byte picks dtype and vocabulary (byte 2: uint16, vocabulary 519).
{ printf '\x02'; cat "$work/data/validation-00000.bin"; } >"$corpus/token_shard_fuzzer/validation"
{ printf '\x02'; head -c 400 "$work/data/train-00000.bin"; } >"$corpus/token_shard_fuzzer/train-head"

python3 - "$corpus" "$checkpoint" <<'EOF'
import json, struct, sys
corpus, checkpoint = sys.argv[1], sys.argv[2]

def safetensors(tensors, metadata=None):
    header, data = {}, b""
    for name, (dtype, shape, payload) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(payload)]}
        data += payload
    if metadata is not None:
        header["__metadata__"] = metadata
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data

seeds = {
    "f32": safetensors({"w": ("F32", [2, 3], struct.pack("<6f", *range(6)))}),
    "mixed": safetensors({"a": ("BF16", [2], b"\x80\x3f\x00\x40"), "b": ("I64", [1], struct.pack("<q", -7)),
                          "c": ("BOOL", [3], b"\x00\x01\x00"), "d": ("F16", [0], b"")},
                         {"format": "pt", "optimizer_steps": "2"}),
    "empty": safetensors({}),
    "u8": safetensors({"x": ("U8", [2, 2], b"\x01\x02\x03\x04"), "y": ("I32", [1, 1], struct.pack("<i", 5))}),
}
for name, blob in seeds.items():
    open(f"{corpus}/safetensors_fuzzer/{name}.safetensors", "wb").write(blob)

index = {"metadata": {"total_size": 68}, "weight_map": {"a": "model-00001-of-00002.safetensors",
         "b": "model-00002-of-00002.safetensors", "c": "model-00002-of-00002.safetensors"}}
json.dump(index, open(f"{corpus}/checkpoint_index_fuzzer/index.json", "w"), indent=2)
json.dump({"weight_map": {"a": "model-00001-of-00002.safetensors"}},
          open(f"{corpus}/checkpoint_index_fuzzer/partial.json", "w"))

texts = {
    "code.py": "import os\n\n\ndef main(argv):\n    for name in argv[1:]:\n        print(name, 0x1F, 3.25e-4)\n",
    "scripts.txt": "caf\u00e9 na\u00efve \u65e5\u672c\u8a9e \u0639\u0631\u0628\u064a \U0001F468\u200D\U0001F469\u200D\U0001F467 12345678 \t\t  x",
    "special.txt": "a<\uff5cend\u2581of\u2581sentence\uff5c>b<\uff5cbegin\u2581of\u2581sentence\uff5c>",
}
for name, text in texts.items():
    open(f"{corpus}/tokenizer_encode_fuzzer/{name}", "w", encoding="utf-8").write(text)
open(f"{corpus}/tokenizer_encode_fuzzer/invalid.bin", "wb").write(b"ok \xff\xfe \xc3 \xe2\x82 \xed\xa0\x80 \xf4\x90\x80\x80")

bodies = {
    "completion": (0, {"model": "m", "prompt": "def f(", "max_tokens": 8, "temperature": 0.7, "top_p": 0.9, "top_k": 5,
                       "seed": 3, "stop": ["\n\n", "#"], "logprobs": 2, "echo": True}),
    "ids": (0, {"model": "m", "prompt": [1, 2, 3], "max_tokens": 1, "stream": True,
                "stream_options": {"include_usage": True}}),
    "chat": (1, {"model": "m", "messages": [{"role": "system", "content": "be brief"},
                                           {"role": "user", "content": "hi"}], "logprobs": True, "top_logprobs": 2,
                 "max_tokens": 4, "stop": "x", "n": 1}),
}
for name, (endpoint, body) in bodies.items():
    open(f"{corpus}/request_body_fuzzer/{name}", "wb").write(bytes([endpoint]) + json.dumps(body).encode())
EOF
find "$corpus" -type f | wc -l
