#!/usr/bin/env python3
"""Tables of an experiment's runs, from their raw metrics (metrics.jsonl, eval.json, acceptance.json).

Usage: experiments/summarize.py balancing|mtp|acceptance|sweep
Prints Markdown tables and writes them to experiments/results/<experiment>/summary.md, with the
figures behind them in summary.json.
"""
import json
import math
import os
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def read_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def train_records(run):
    return [r for r in read_jsonl(os.path.join(run, "metrics.jsonl")) if r.get("type") == "train"]


def final_eval(run):
    with open(os.path.join(run, "eval.json")) as f:
        return json.loads(f.read())


def mean(values):
    values = list(values)
    return sum(values) / len(values) if values else float("nan")


def table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def runs_in(folder, order):
    return [(name, os.path.join(folder, name)) for name in order if os.path.isfile(os.path.join(folder, name, "eval.json"))]


def balancing():
    folder = os.path.join(ROOT, "balancing")
    names = ["aux-free", "aux-free-g1e-2", "aux-loss-1e-2", "aux-loss-1e-3", "none"]
    seeds = sorted({d.rsplit("-seed", 1)[1] for d in os.listdir(folder) if "-seed" in d})
    order = names + [f"{n}-seed{s}" for s in seeds for n in names]
    rows, layer_rows, figures = [], [], {}
    for name, run in runs_in(folder, order):
        train, ev = train_records(run), final_eval(run)
        steps = train[-1]["step"]
        last = [r for r in train if r["step"] > 0.75 * steps]
        vio_global = ev["max_vio_global"]
        loads = ev["expert_load"]
        figures[name] = {"steps": steps, "validation_loss": ev["main_loss"], "validation_tokens": ev["tokens"],
                         "max_vio_global_layers": vio_global,
                         "max_vio_batch_mean": mean(r["max_vio_batch"] for r in train),
                         "max_vio_batch_last_quarter": mean(r["max_vio_batch"] for r in last), "expert_load": loads}
        rows.append([name, steps, f"{ev['main_loss']:.4f}", f"{math.exp(ev['main_loss']):.2f}",
                     f"{mean(vio_global):.3f}", f"{max(vio_global):.3f}",
                     f"{figures[name]['max_vio_batch_mean']:.3f}", f"{figures[name]['max_vio_batch_last_quarter']:.3f}"])
        for layer, load in enumerate(loads):
            m = mean(load)
            ordered = sorted(load, reverse=True)
            layer_rows.append([name, layer, f"{vio_global[layer]:.3f}", f"{ordered[0] / m:.2f}", f"{ordered[-1] / m:.2f}",
                               " ".join(f"{v / m:.2f}" for v in ordered)])
    text = ("### Balancing: validation loss and MaxVio\n\n"
            + table(["run", "steps", "val. loss", "val. ppl", "MaxVio_global mean", "MaxVio_global max",
                     "MaxVio_batch mean", "MaxVio_batch last 25%"], rows)
            + "\n\n### Balancing: each MoE layer's load over the validation split (load / mean, largest first)\n\n"
            + table(["run", "layer", "MaxVio_global", "max", "min", "loads, sorted"], layer_rows))
    return folder, text, figures


def acceptance_cells(run):
    path = os.path.join(run, "acceptance.json")
    if not os.path.isfile(path):
        return {}
    with open(path) as f:
        return {a["temperature"]: a for a in json.loads(f.read()).get("acceptance", [])}


def mtp():
    folder = os.path.join(ROOT, "mtp")
    order = ["d0", "d1", "d2", "d2-parallel"]
    sections, figures = [], {}
    alone = {}
    if os.path.isfile(os.path.join(folder, "time", "budget.json")):
        with open(os.path.join(folder, "time", "budget.json")) as f:
            alone = json.load(f)["seconds_per_step"]
    for budget in ["steps", "time"]:
        rows = []
        for name, run in runs_in(os.path.join(folder, budget), order):
            train, ev = train_records(run), final_eval(run)
            acc = acceptance_cells(run)
            depth_loss = " / ".join(f"{v:.3f}" for v in ev.get("mtp_loss", [])) or "-"

            def cell(temperature):
                a = acc.get(temperature)
                if not a:
                    return "-"
                return " / ".join(f"{100 * d['acceptance']:.1f}%" for d in a["depths"]) + f" ({a['tokens_per_step']:.2f} tok/step)"

            figures[f"{budget}/{name}"] = {"steps": train[-1]["step"], "seconds_per_step_alone": alone.get(name),
                                          "validation_loss": ev["main_loss"], "validation_accuracy": ev["main_accuracy"],
                                          "depth_loss": ev.get("mtp_loss", []), "depth_accuracy": ev.get("mtp_accuracy", []),
                                          "acceptance": list(acc.values())}
            per_step = f"{alone[name]:.3f}" if name in alone else "-"
            rows.append([name, train[-1]["step"], per_step, f"{ev['main_loss']:.4f}",
                         f"{100 * ev['main_accuracy']:.2f}%", depth_loss,
                         " / ".join(f"{100 * v:.1f}%" for v in ev.get("mtp_accuracy", [])) or "-", cell(0), cell(1)])
        title = "equal steps" if budget == "steps" else "equal wall-clock time (d2's)"
        sections.append(f"### MTP, {title}\n\n" + table(
            ["run", "steps", "s/step alone", "val. loss (main)", "top-1 (main)", "depth losses", "depth top-1 (teacher-forced)",
             "acceptance per depth, greedy (tokens/step)", "acceptance, temperature 1"], rows))
    return folder, "\n\n".join(sections), figures


def parameters(run):
    with open(os.path.join(run, "train.log")) as f:
        for line in f:
            if line.startswith("model: "):
                return float(line.split()[1].rstrip("M"))
    return float("nan")


DEMO_PROMPT = "import os\n\n\ndef list_python_files(directory):\n    "  # experiments/demo_sweep.sh's


def sweep():
    folder = os.path.join(ROOT, "sweep")
    order = ["small", "demo-h192-l4", "demo-h128-l4"]
    rows, figures = [], {}
    for name, run in runs_in(folder, order):
        train, ev = train_records(run), final_eval(run)
        with open(os.path.join(run, "sample.txt")) as f:
            sample = DEMO_PROMPT + f.read()  # generate prints the continuation only
        figures[name] = {"parameters_millions": parameters(run), "steps": train[-1]["step"],
                         "tokens": train[-1]["tokens_seen"], "seconds": train[-1]["elapsed_seconds"],
                         "validation_loss": ev["main_loss"], "validation_accuracy": ev["main_accuracy"],
                         "depth_accuracy": ev.get("mtp_accuracy", []), "sample": sample}
        rows.append([name, f"{parameters(run):.1f}M", train[-1]["step"], f"{train[-1]['tokens_seen'] / 1e6:.2f}M",
                     f"{train[-1]['elapsed_seconds'] / 60:.1f}", f"{ev['main_loss']:.4f}", f"{100 * ev['main_accuracy']:.1f}%",
                     " / ".join(f"{100 * v:.1f}%" for v in ev.get("mtp_accuracy", []))])
    text = "### The demo's model: equal time (--minutes), both cores\n\n" + table(
        ["config", "parameters", "steps", "tokens", "minutes", "val. loss", "top-1", "depth top-1"], rows)
    for name, f in figures.items():
        text += f"\n\n{name}, greedy continuation of the demo's first prompt:\n\n```python\n{f['sample'].rstrip()}\n```"
    return folder, text, figures


def line_chart_svg(path, title, x_label, y_label, series, y_range=(0.0, 1.0)):
    """A small SVG line chart: series is [(name, [(x, y), ...]), ...], y as a fraction."""
    width, height, left, right, top, bottom = 640, 340, 56, 200, 34, 44
    xs = [x for _, points in series for x, _ in points]
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    y0, y1 = y_range
    px = lambda x: left + (x - x0) / (x1 - x0) * (width - left - right)
    py = lambda y: height - bottom - (y - y0) / (y1 - y0) * (height - top - bottom)
    colors = ["#3b5bdb", "#e8590c", "#2f9e44", "#c2255c", "#7048e8", "#1098ad"]
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{left}" y="20" font-weight="bold" font-size="14">{title}</text>']
    for i in range(6):
        y = y0 + (y1 - y0) * i / 5
        out.append(f'<line x1="{left}" x2="{width - right}" y1="{py(y):.1f}" y2="{py(y):.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{left - 6}" y="{py(y) + 4:.1f}" text-anchor="end">{100 * y:.0f}%</text>')
    for x in sorted(set(xs)):
        out.append(f'<text x="{px(x):.1f}" y="{height - bottom + 16}" text-anchor="middle">{x}</text>')
    out.append(f'<text x="{(left + width - right) / 2}" y="{height - 8}" text-anchor="middle">{x_label}</text>')
    out.append(f'<text x="14" y="{(top + height - bottom) / 2}" text-anchor="middle" '
               f'transform="rotate(-90 14 {(top + height - bottom) / 2})">{y_label}</text>')
    for i, (name, points) in enumerate(series):
        color = colors[i % len(colors)]
        dash = "" if i % 2 == 0 else ' stroke-dasharray="6 4"'
        line = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in points)
        out.append(f'<polyline points="{line}" fill="none" stroke="{color}" stroke-width="2"{dash}/>')
        for x, y in points:
            out.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3" fill="{color}"/>')
        ly = top + 10 + 20 * i
        out.append(f'<line x1="{width - right + 12}" x2="{width - right + 36}" y1="{ly}" y2="{ly}" stroke="{color}" stroke-width="2"{dash}/>')
        out.append(f'<text x="{width - right + 42}" y="{ly + 4}">{name}</text>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def acceptance():
    folder = os.path.join(ROOT, "acceptance")
    sections, figures = [], {}
    for name in sorted(d for d in os.listdir(folder) if os.path.isdir(os.path.join(folder, d))):
        out = os.path.join(folder, name)
        with open(os.path.join(out, "run.txt")) as f:
            run = f.read().strip()
        seen = {r["step"]: r["tokens_seen"] for r in train_records(run)}
        rows = []
        for file in sorted(x for x in os.listdir(out) if x.startswith("step-") and x.endswith(".json")):
            with open(os.path.join(out, file)) as f:
                ev = json.loads(f.read())
            step = int(file[len("step-"):-len(".json")])
            by_temperature = {a["temperature"]: a for a in ev["acceptance"]}
            figures[f"{name}/{step}"] = {"tokens_seen": seen.get(step), "validation_loss": ev["main_loss"],
                                        "depth_accuracy": ev.get("mtp_accuracy", []), "acceptance": ev["acceptance"]}

            def cell(temperature):
                a = by_temperature[temperature]
                return " / ".join(f"{100 * d['acceptance']:.1f}%" for d in a["depths"]) + f" ({a['tokens_per_step']:.2f})"

            rows.append([step, f"{seen.get(step, 0) / 1e6:.2f}M", f"{ev['main_loss']:.3f}",
                         " / ".join(f"{100 * v:.1f}%" for v in ev.get("mtp_accuracy", [])), cell(0.0), cell(1.0)])
        series = []
        for temperature, label in [(0.0, "greedy"), (1.0, "temperature 1")]:
            for depth in range(len(figures[next(iter(figures))]["acceptance"][0]["depths"])):
                points = [(int(key.split("/")[1]), next(a for a in f["acceptance"] if a["temperature"] == temperature)["depths"][depth]["acceptance"])
                          for key, f in figures.items() if key.startswith(name + "/")]
                series.append((f"depth {depth + 1}, {label}", sorted(points)))
        line_chart_svg(os.path.join(out, "acceptance.svg"), f"Draft acceptance while {name} trains", "step",
                       "acceptance", series)
        sections.append(f"### Acceptance while {name} trains\n\n" + table(
            ["step", "tokens seen", "val. loss (16 batches)", "depth top-1 (teacher-forced)",
             "acceptance per depth, greedy (tokens/step)", "acceptance, temperature 1 (tokens/step)"], rows))
    return folder, "\n\n".join(sections), figures


def main():
    experiments = {"balancing": balancing, "mtp": mtp, "sweep": sweep, "acceptance": acceptance}
    if len(sys.argv) != 2 or sys.argv[1] not in experiments:
        sys.exit(f"usage: {sys.argv[0]} {'|'.join(experiments)}")
    folder, text, figures = experiments[sys.argv[1]]()
    with open(os.path.join(folder, "summary.md"), "w") as f:
        f.write(text + "\n")
    with open(os.path.join(folder, "summary.json"), "w") as f:
        json.dump(figures, f, indent=1)
    print(text)


if __name__ == "__main__":
    main()
