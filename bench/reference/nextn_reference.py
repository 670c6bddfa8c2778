#!/usr/bin/env python3
"""The plain-PyTorch DeepSeek-V3 + MTP reference (model.py) as a command-line tool.

  parity       load a nextn model directory and a batch, write the losses and every gradient
               (HF names) to a safetensors file: tests/reference/reference_parity_test.cpp
  bench-train  training step time with and without MTP (the peer of `nextn bench train`)
  bench-decode greedy decoding tokens/s at batch 1 with a KV cache (peer of `nextn bench decode`)
  bench-moe    one MoE layer's forward+backward time against the number of routed experts
               (peer of `nextn bench moe`)

Run with a Python that has torch (Debian's /usr/bin/python3 here; any PyTorch >= 1.13). The
benchmarks print one JSON object per line with --json. Threads: torch's intra-op pool is set to 1
and OpenBLAS reads OPENBLAS_NUM_THREADS from the environment, as nextn runs (bench/compare.sh).
Exit status 77 when torch cannot be imported (the parity test is then skipped).
"""
import argparse
import json
import os
import resource
import statistics
import sys
import time

try:
    import torch
except ImportError:
    print("nextn_reference: this python (%s) has no torch" % sys.executable, file=sys.stderr)
    sys.exit(77)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from model import Config, DeepseekV3MTP, MoE, load_state, objective, own_tensor_names, parameter_by_name  # noqa: E402
from safetensors_io import read_model_dir, read_safetensors, write_safetensors  # noqa: E402


def load_config(path):
    with open(path) as f:
        return json.load(f)


def max_rss_mib():
    # ru_maxrss is in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def runtime_description():
    # Which BLAS library the process really loaded (torch's build info says only "generic" for
    # Debian's build, which calls whatever libblas.so.3 the alternatives system points to).
    torch.mm(torch.ones(2, 2), torch.ones(2, 2))
    blas = "?"
    try:
        with open("/proc/self/maps") as f:
            libs = {line.split()[-1] for line in f if "blas" in line.lower()}
        blas = ", ".join(sorted(os.path.basename(l) for l in libs if "/" in l)) or "?"
    except OSError:  # not Linux: informative only
        pass
    return {"python_torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "openblas_threads_env": os.environ.get("OPENBLAS_NUM_THREADS", ""), "blas": blas}


# ------------------------------------------------------------------------------------------------
# parity

def cmd_parity(args):
    with open(os.path.join(args.model, "config.json")) as f:
        cfg = Config(json.load(f))
    model = DeepseekV3MTP(cfg)
    load_state(model, read_model_dir(args.model), warn=lambda m: print(m, file=sys.stderr))
    batch, _ = read_safetensors(args.batch)
    window = batch["window"].long()
    segment_ids = batch["segment_ids"].long() if "segment_ids" in batch else None
    inputs, labels = window[:, :-1], window[:, 1:]
    logits, mtp_logits = model(inputs, run_mtp=not args.no_mtp)
    loss = objective(model, logits, mtp_logits, labels, segment_ids, mtp_lambda=args.mtp_lambda,
                     sequence_alpha=args.sequence_alpha)
    loss["total"].backward()

    out = {"loss.total": loss["total"].detach(), "loss.main": loss["main"].detach(),
           "loss.balance": loss["balance"].detach()}
    for k, l in enumerate(loss["mtp"], start=1):
        out["loss.mtp.%d" % k] = l.detach()
    for name in own_tensor_names(model):
        p = parameter_by_name(model, name)
        if not isinstance(p, torch.nn.Parameter):
            continue  # the expert bias: a buffer, not trained by gradients
        # An expert no token reached has no gradient; nextn reports zeros for it.
        out["grad." + name] = p.grad.detach() if p.grad is not None else torch.zeros_like(p)
    write_safetensors(args.out, out, {"writer": "nextn_reference.py"})


# ------------------------------------------------------------------------------------------------
# bench-train

def build_variant(config_dict, seed):
    torch.manual_seed(seed)
    model = DeepseekV3MTP(Config(config_dict))
    model.init_weights()
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (decay if p.dim() >= 2 and "embed_tokens" not in name else no_decay).append(p)
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                                   {"params": no_decay, "weight_decay": 0.0}],
                                  lr=1e-4, betas=(0.9, 0.95), eps=1e-8)
    return model, optimizer


def train_step(model, optimizer, window, seq_len, bf16=False):
    """One step as nextn's train bench times it: forward + objective, backward, clipping,
    AdamW, expert-bias update; bf16: the forward and objective under torch.autocast("cpu",
    dtype=torch.bfloat16), as PyTorch users train in mixed precision on CPU. Returns (step,
    forward, backward, optimizer) seconds."""
    inputs, labels = window[:, :seq_len], window[:, 1:seq_len + 1]
    t0 = time.perf_counter()
    optimizer.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        logits, mtp_logits = model(inputs, run_mtp=model.cfg.num_nextn_predict_layers > 0)
        loss = objective(model, logits, mtp_logits, labels, mtp_lambda=0.3, sequence_alpha=1e-4)
    t1 = time.perf_counter()
    loss["total"].backward()
    t2 = time.perf_counter()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    with torch.no_grad():  # aux-loss-free balancing: b_i += gamma * sign(mean load - load_i)
        for moe in model.moe_layers():
            load = torch.bincount(moe.last_routing[0].flatten(), minlength=len(moe.experts)).double()
            moe.gate.e_score_correction_bias.add_(torch.sign(load.mean() - load).float() * 1e-3)
    t3 = time.perf_counter()
    return t3 - t0, t1 - t0, t2 - t1, t3 - t2


def cmd_bench_train(args):
    bf16 = args.precision == "bf16"
    # bf16 products run on libtorch's intra-op pool (oneDNN), fp32 ones on OpenBLAS's threads.
    torch.set_num_threads(os.cpu_count() if bf16 else 1)
    suffix = " bf16" if bf16 else ""
    config = load_config(args.config)
    variants = []
    if config.get("num_nextn_predict_layers", 0) > 0:
        variants.append(("MTP D=%d%s" % (config["num_nextn_predict_layers"], suffix), config))
    variants.append(("no MTP" + suffix, dict(config, num_nextn_predict_layers=0)))
    built = [(name,) + build_variant(c, args.seed) for name, c in variants]
    torch.manual_seed(args.seed + 1)
    window = torch.randint(config["vocab_size"], (args.batch_size, args.seq_len + 1))
    samples = {name: [] for name, _ in variants}
    for i in range(args.warmup + args.steps):
        for name, model, optimizer in built:  # variants alternate, as in nextn's bench
            t = train_step(model, optimizer, window, args.seq_len, bf16)
            if i >= args.warmup:
                samples[name].append(t)
    rows = []
    for name, _ in variants:
        s = samples[name]
        rows.append({"variant": name, "tokens_per_step": args.batch_size * args.seq_len,
                     "step_seconds": statistics.median(x[0] for x in s),
                     "forward_seconds": statistics.median(x[1] for x in s),
                     "backward_seconds": statistics.median(x[2] for x in s),
                     "optimizer_seconds": statistics.median(x[3] for x in s),
                     "max_rss_mib": max_rss_mib()})
    emit(args, rows, "reference bench train: %s, batch %d x %d, %d steps" %
         (args.config, args.batch_size, args.seq_len, args.steps))


# ------------------------------------------------------------------------------------------------
# bench-decode

def generate_greedy(model, prompt, new_tokens):
    """Plain greedy decoding with a per-layer KV cache. Returns (tokens, prefill s, decode s)."""
    caches = [{} for _ in range(model.cfg.num_hidden_layers)]
    t0 = time.perf_counter()
    logits, _ = model(prompt.unsqueeze(0), run_mtp=False, caches=caches, start=0)
    token = int(logits[0, -1].argmax())
    out = [token]
    t1 = time.perf_counter()
    position = prompt.numel()
    for _ in range(new_tokens - 1):
        logits, _ = model(torch.tensor([[token]]), run_mtp=False, caches=caches, start=position)
        position += 1
        token = int(logits[0, -1].argmax())
        out.append(token)
    t2 = time.perf_counter()
    return out, t1 - t0, t2 - t1


def cmd_bench_decode(args):
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    model = DeepseekV3MTP(Config(load_config(args.config)))
    model.init_weights()
    model.eval()
    prompt = torch.randint(model.cfg.vocab_size, (args.prompt_tokens,))
    rates, prefills = [], []
    with torch.no_grad():
        generate_greedy(model, prompt, args.new_tokens)  # warm-up, untimed
        for _ in range(args.repeats):
            _, prefill, decode = generate_greedy(model, prompt, args.new_tokens)
            rates.append((args.new_tokens - 1) / decode)
            prefills.append(prefill)
    emit(args, [{"variant": "plain", "tokens_per_second": statistics.median(rates),
                 "prefill_seconds": statistics.median(prefills), "max_rss_mib": max_rss_mib()}],
         "reference bench decode: %s, batch 1, prompt %d, %d new tokens, greedy" %
         (args.config, args.prompt_tokens, args.new_tokens))


# ------------------------------------------------------------------------------------------------
# bench-moe

def cmd_bench_moe(args):
    torch.set_num_threads(1)
    base = load_config(args.config)
    experts = [int(e) for e in args.experts.split(",")]
    layers = {}
    for e in experts:
        torch.manual_seed(args.seed)
        cfg = Config(dict(base, n_routed_experts=e))
        moe = MoE(cfg)
        with torch.no_grad():
            for p in moe.parameters():
                p.normal_(0.0, cfg.initializer_range) if p.dim() >= 2 else p.fill_(1.0)
        layers[e] = moe
    torch.manual_seed(args.seed + 1)
    x = torch.randn(1, args.tokens, base["hidden_size"])
    grad_out = torch.randn(1, args.tokens, base["hidden_size"])
    samples = {e: [] for e in experts}
    for i in range(args.warmup + args.steps):
        for e in experts:  # interleaved, so that noise hits every size alike
            moe = layers[e]
            moe.zero_grad()
            xi = x.clone().requires_grad_(True)
            t0 = time.perf_counter()
            y = moe(xi)
            t1 = time.perf_counter()
            y.backward(grad_out)
            t2 = time.perf_counter()
            if i >= args.warmup:
                samples[e].append((t2 - t0, t1 - t0))
    rows = [{"experts": e, "tokens": args.tokens, "top_k": base["num_experts_per_tok"],
             "fwd_bwd_seconds": statistics.median(s[0] for s in samples[e]),
             "fwd_seconds": statistics.median(s[1] for s in samples[e])} for e in experts]
    emit(args, rows, "reference bench moe: %s, %d tokens, top-%d" %
         (args.config, args.tokens, base["num_experts_per_tok"]))


# ------------------------------------------------------------------------------------------------

def emit(args, rows, title):
    if args.json:
        for row in rows:
            print(json.dumps(dict(row, runtime=runtime_description())))
        return
    print(title)
    print(json.dumps(runtime_description()))
    for row in rows:
        print("  " + ", ".join("%s=%s" % (k, ("%.4g" % v) if isinstance(v, float) else v) for k, v in row.items()))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command")
    sub.required = True

    p = sub.add_parser("parity", help="losses and gradients of one batch, for the parity test")
    p.add_argument("--model", required=True, help="nextn model directory (config.json + safetensors)")
    p.add_argument("--batch", required=True, help="safetensors with 'window' [B, T+1] and optional 'segment_ids'")
    p.add_argument("--out", required=True, help="safetensors to write: loss.* and grad.<HF name>")
    p.add_argument("--mtp-lambda", type=float, default=0.3)
    p.add_argument("--sequence-alpha", type=float, default=0.0)
    p.add_argument("--no-mtp", action="store_true")
    p.set_defaults(fn=cmd_parity)

    for name, fn in (("bench-train", cmd_bench_train), ("bench-decode", cmd_bench_decode),
                     ("bench-moe", cmd_bench_moe)):
        p = sub.add_parser(name)
        p.add_argument("--config", default="configs/small.json")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--json", action="store_true", help="one JSON object per line")
        p.set_defaults(fn=fn)
        if name == "bench-train":
            p.add_argument("--batch-size", type=int, default=8)
            p.add_argument("--seq-len", type=int, default=256)
            p.add_argument("--steps", type=int, default=6)
            p.add_argument("--warmup", type=int, default=2)
            p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
        elif name == "bench-decode":
            p.add_argument("--prompt-tokens", type=int, default=32)
            p.add_argument("--new-tokens", type=int, default=128)
            p.add_argument("--repeats", type=int, default=3)
        else:
            p.add_argument("--tokens", type=int, default=2048)
            p.add_argument("--experts", default="16,32,64")
            p.add_argument("--steps", type=int, default=7)
            p.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()
    try:
        args.fn(args)
    except (ValueError, OSError, KeyError) as e:
        print("nextn_reference: %s" % e, file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
