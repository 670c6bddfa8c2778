#!/usr/bin/env python3
"""nextn against the plain-PyTorch reference on this machine, in one run (bench/compare.sh).

Each benchmark runs as its own process (so that each side's peak RSS is its own), nextn and the
reference alternating round by round with the order swapped every round, with the same threads:
libtorch's intra-op pool at 1 and OpenBLAS at --threads (nextn's defaults: set_cpu_threads in
src/nextn/util/runtime_info.cpp). Writes the table between the markers of docs/BENCHMARKS.md.
"""
import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time

BEGIN, END = "<!-- compare:begin -->", "<!-- compare:end -->"
HERE = os.path.dirname(os.path.abspath(__file__))
REFERENCE = os.path.join(HERE, "nextn_reference.py")


def measure(cmd, env):
    """Runs cmd; returns (stdout, max RSS in MiB of that process alone). wait4 on the child's pid
    gives its own rusage (RUSAGE_CHILDREN would be the maximum over every child so far)."""
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, env=env)
        out = proc.stdout.read()
        proc.stdout.close()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = status  # reaped here; keep Popen from waiting again
        code = (status >> 8) & 0xFF if os.WIFEXITED(status) else -1
        if code != 0:
            err.seek(0)
            raise RuntimeError("command failed (status %d): %s\n%s" % (
                code, " ".join(map(shlex.quote, cmd)), err.read().decode(errors="replace")[-3000:]))
    return out.decode(), usage.ru_maxrss / 1024.0  # KiB -> MiB


NEXTN_MALLOC_CONF = "dirty_decay_ms:-1,muzzy_decay_ms:-1"  # src/runtime/jemalloc_conf.cpp
# glibc malloc tunables (mallopt(3)): serve every block from the heap, never trim it.
GLIBC_KEEP_MEMORY = {"MALLOC_MMAP_THRESHOLD_": "4294967296", "MALLOC_TRIM_THRESHOLD_": "4294967296",
                     "MALLOC_TOP_PAD_": "536870912"}


def find_jemalloc(explicit):
    if explicit:
        return explicit if explicit != "none" else None
    for path in ("/usr/lib/x86_64-linux-gnu/libjemalloc.so.2", "/usr/lib/aarch64-linux-gnu/libjemalloc.so.2",
                 "/usr/lib64/libjemalloc.so.2", "/usr/lib/libjemalloc.so.2"):
        if os.path.exists(path):
            return path
    return None


def json_lines(text):
    rows = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            rows.append(json.loads(line))
    return rows


def lscpu_model():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def median_of(rows, key):
    return statistics.median(r[key] for r in rows)


def fmt_ms(seconds):
    return "%.1f ms" % (seconds * 1e3)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--nextn", default="build/nextn")
    ap.add_argument("--python", default=sys.executable, help="a python with torch for the reference")
    ap.add_argument("--config", default="configs/small.json")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--steps", type=int, default=5, help="timed training steps per variant and process")
    ap.add_argument("--rounds", type=int, default=2, help="processes per side, alternating")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="OpenBLAS threads (nextn: --threads)")
    ap.add_argument("--jemalloc", default="", help="libjemalloc.so.2 to preload into the reference's second run "
                    "(default: found in the usual places; 'none': no such run)")
    ap.add_argument("--doc", default="docs/BENCHMARKS.md")
    ap.add_argument("--no-write", action="store_true", help="print the table only")
    args = ap.parse_args()

    nextn = os.path.abspath(args.nextn)
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(args.threads), OMP_NUM_THREADS="1")
    py = [args.python, REFERENCE]
    threads = ["--threads", str(args.threads)]
    shape = ["--config", args.config]
    train_shape = shape + ["--batch-size", str(args.batch_size), "--seq-len", str(args.seq_len),
                           "--steps", str(args.steps), "--warmup", "2"]
    decode_shape = shape + ["--prompt-tokens", "32", "--new-tokens", "128", "--repeats", "3"]
    moe_shape = shape + ["--tokens", "2048", "--experts", "16,32,64", "--steps", "7", "--warmup", "2"]

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    # `nextn bench decode --help` exits 0 even without the subcommand (CLI11 shows bench's help),
    # so look for it in the list of bench's subcommands.
    bench_help = subprocess.run([nextn, "bench", "--help"], capture_output=True, text=True).stdout
    have_decode = any(line.split()[:1] == ["decode"] for line in bench_help.splitlines())

    # The reference three times: as a user runs it (Python's glibc malloc, which returns large
    # freed blocks to the system, so every step faults its activations in afresh), with glibc told
    # to keep freed memory, and with the allocator nextn links (jemalloc keeping freed pages,
    # src/runtime/jemalloc_conf.cpp): what the implementation gains and what the allocator gains
    # can then be told apart.
    jemalloc = find_jemalloc(args.jemalloc)
    sides = ["nextn", "reference", "reference_glibc"] + (["reference_je"] if jemalloc else [])
    labels = {"reference": "reference", "reference_glibc": "reference, glibc keeping memory",
              "reference_je": "reference + jemalloc"}
    envs = {"nextn": env, "reference": env, "reference_glibc": dict(env, **GLIBC_KEEP_MEMORY)}
    if jemalloc:
        envs["reference_je"] = dict(env, LD_PRELOAD=jemalloc, MALLOC_CONF=NEXTN_MALLOC_CONF)
    results = {side: {"train": [], "train_bf16": [], "decode": [], "moe": [], "rss_train": [], "rss_decode": []}
               for side in sides}
    py_train = py + ["bench-train", "--json"] + train_shape
    py_decode = py + ["bench-decode", "--json"] + decode_shape
    py_moe = py + ["bench-moe", "--json"] + moe_shape
    # bf16 mixed precision on both sides: nextn --precision bf16, the reference under
    # torch.autocast("cpu", dtype=torch.bfloat16); each gives libtorch's pool the cores.
    commands = {
        "train": dict({"nextn": [nextn, "bench", "train", "--json", "--precision", "fp32"] + train_shape + threads},
                      **{side: py_train for side in sides[1:]}),
        "train_bf16": dict({"nextn": [nextn, "bench", "train", "--json", "--precision", "bf16"] + train_shape + threads},
                           **{side: py_train + ["--precision", "bf16"] for side in sides[1:]}),
        "decode": dict({"nextn": [nextn, "bench", "decode", "--json", "--max-draft", "1"] + decode_shape + threads},
                       **{side: py_decode for side in sides[1:]}),
        "moe": dict({"nextn": [nextn, "bench", "moe", "--json"] + moe_shape + threads},
                    **{side: py_moe for side in sides[1:]}),
    }
    for r in range(args.rounds):
        order = sides if r % 2 == 0 else sides[::-1]  # alternate who goes first
        for bench in ("train", "train_bf16", "decode", "moe"):
            if bench == "decode" and not have_decode:
                continue
            for side in order:
                log("round %d/%d: %s %s" % (r + 1, args.rounds, side, bench))
                env_ = dict(envs[side], OPENBLAS_NUM_THREADS="1") if bench == "train_bf16" else envs[side]
                out, rss = measure(commands[bench][side], env_)
                rows = json_lines(out)
                if not rows:
                    raise RuntimeError("%s %s printed no JSON lines:\n%s" % (side, bench, out[-2000:]))
                results[side][bench].append(rows)
                if bench in ("train", "decode"):
                    results[side]["rss_" + bench].append(rss)

    def per_variant(side, bench, variant_key, variant, key):
        values = [row[key] for rows in results[side][bench] for row in rows if row[variant_key] == variant]
        return statistics.median(values) if values else None

    lines = []
    lines.append("| measure | nextn | " + " | ".join("%s | nextn / (%s)" % (labels[x], labels[x]) for x in sides[1:]) + " |")
    lines.append("| --- | ---: |" + " ---: | ---: |" * (len(sides) - 1))

    def row(label, bench, variant_key, variant, key, fmt, time_like=True, bold=False):
        a = per_variant("nextn", bench, variant_key, variant, key)
        cells = ["| " + label, fmt(a)]
        for side in sides[1:]:
            b = per_variant(side, bench, variant_key, variant, key)
            ratio = a / b if time_like else b / a  # always nextn's time over the other's
            cells += [fmt(b), ("**%.2fx**" if bold else "%.2fx") % ratio]
        lines.append(" | ".join(cells) + " |")

    mtp_variant = None
    for rows in results["nextn"]["train"]:
        for r_ in rows:
            if r_["variant"].startswith("MTP") and mtp_variant is None:
                mtp_variant = r_["variant"]  # the first: "MTP D=2" (then "MTP D=2 unfused")
    for variant in ([mtp_variant] if mtp_variant else []) + ["no MTP"]:
        row("training step, %s" % variant, "train", "variant", variant, "step_seconds", fmt_ms, bold=True)
        row("forward (+ loss) of the step, %s" % variant, "train", "variant", variant, "forward_seconds", fmt_ms)
    for variant in ([mtp_variant] if mtp_variant else []) + ["no MTP"]:
        row("training step, %s bf16" % variant, "train_bf16", "variant", variant + " bf16", "step_seconds", fmt_ms,
            bold=True)
    if have_decode:
        fmt_rate = lambda v: "%.1f tok/s" % v
        row("decode, batch 1, plain (time ratio)", "decode", "variant", "plain", "tokens_per_second", fmt_rate,
            time_like=False, bold=True)
        if per_variant("nextn", "decode", "variant", "mtp N=1", "tokens_per_second") is not None:
            a = per_variant("nextn", "decode", "variant", "mtp N=1", "tokens_per_second")
            cells = ["| decode, batch 1: nextn MTP N=1 (random weights: drafts rarely accepted) against plain",
                     fmt_rate(a)]
            for side in sides[1:]:
                b = per_variant(side, "decode", "variant", "plain", "tokens_per_second")
                cells += [fmt_rate(b), "%.2fx" % (b / a)]
            lines.append(" | ".join(cells) + " |")
    else:
        lines.append("| decode, batch 1 | (skipped: this nextn has no `bench decode` yet) |" + " |" * (2 * len(sides) - 2))

    def rss_row(label, key):
        a = statistics.median(results["nextn"][key])
        cells = ["| " + label, "%.0f MiB" % a]
        for side in sides[1:]:
            b = statistics.median(results[side][key])
            cells += ["%.0f MiB" % b, "%.2fx" % (a / b)]
        lines.append(" | ".join(cells) + " |")

    rss_row("peak RSS of the training benchmark process (both variants' models)", "rss_train")
    if have_decode:
        rss_row("peak RSS of the decoding benchmark process", "rss_decode")
    experts = sorted({r_["experts"] for rows in results["nextn"]["moe"] for r_ in rows})
    top_k = next((r_["top_k"] for rows in results["nextn"]["moe"] for r_ in rows), "?")
    for e in experts:
        row("MoE layer fwd+bwd, 2048 tokens, top-%s, %d experts" % (top_k, e), "moe", "experts", e, "fwd_bwd_seconds", fmt_ms)
    if len(experts) >= 2:
        lo, hi = experts[0], experts[-1]
        for key, label in (("fwd_bwd_seconds", "fwd+bwd"), ("fwd_seconds", "fwd")):
            cells = ["| MoE %s time, %d / %d experts (target <= 1.25x)" % (label, hi, lo)]
            for side in sides:
                growth = per_variant(side, "moe", "experts", hi, key) / per_variant(side, "moe", "experts", lo, key)
                cells += ["%.2fx" % growth] + ([""] if side != "nextn" else [])
            lines.append(" | ".join(cells) + " |")

    ref_runtime = results["reference"]["train"][0][0].get("runtime", {})
    info = subprocess.run([nextn, "info"], capture_output=True, text=True).stdout.strip().splitlines()
    libtorch = next((part.strip() for line in info for part in line.split("|") if "libtorch" in part), "libtorch ?")
    command = "bench/compare.sh --nextn %s" % args.nextn
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    header = [
        "Measured %s on: %s, %d cores; nextn %s (%s), %d OpenBLAS threads + 1 intra-op thread on both sides "
        "(bf16 rows: 1 OpenBLAS thread + all cores for libtorch's pool on both sides); "
        "reference: python torch %s (Python %s, BLAS %s) with glibc malloc as is, with glibc keeping freed memory "
        "(%s), and with %s preloaded (MALLOC_CONF=%s)." % (
            time.strftime("%Y-%m-%d"), lscpu_model(), os.cpu_count(), commit or "?", libtorch, args.threads,
            ref_runtime.get("python_torch", "?"), platform.python_version(), ref_runtime.get("blas", "?"),
            " ".join("%s=%s" % kv for kv in sorted(GLIBC_KEEP_MEMORY.items())),
            jemalloc or "(no jemalloc found: not run)", NEXTN_MALLOC_CONF),
        "Command: `%s` (%d round(s) of alternating processes; medians). Config `%s`, training batch %d x %d, "
        "AdamW + clipping + expert-bias update in the step; bf16 rows: nextn `--precision bf16` against the "
        "reference under `torch.autocast(\"cpu\", dtype=torch.bfloat16)`; decode: random weights, prompt 32, 128 new tokens, "
        "greedy. Time ratios below 1 mean nextn is faster." % (
            command, args.rounds, args.config, args.batch_size, args.seq_len),
        "",
    ]
    table = "\n".join(header + lines)
    print(table)
    if args.no_write:
        return
    doc = args.doc
    if os.path.exists(doc):
        with open(doc) as f:
            text = f.read()
    else:
        text = ("# Benchmarks\n\nFigures measured on the machines named with them. Regenerate the comparison "
                "with `bench/compare.sh`.\n\n## nextn against a plain-PyTorch implementation\n\n")
    block = BEGIN + "\n" + table + "\n" + END
    if BEGIN in text and END in text:
        text = text[:text.index(BEGIN)] + block + text[text.index(END) + len(END):]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    with open(doc, "w") as f:
        f.write(text)
    log("wrote the table into %s" % doc)


if __name__ == "__main__":
    main()
