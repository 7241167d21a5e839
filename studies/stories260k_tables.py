#!/usr/bin/env python3
"""Markdown tables of studies/stories260k_context.sh's results (runs/ctx/*.json) for docs/RESULTS.md.

    python3 studies/stories260k_tables.py [runs/ctx]
"""
import json
import os
import sys

OUT = sys.argv[1] if len(sys.argv) > 1 else "runs/ctx"
REF = {  # ../shared/REFERENCE.md, independent float64 implementation
    ("none", 256): 1.8137, ("none", 512): 1.8205, ("none", 1024): 1.8693, ("none", 2048): 2.0785,
    ("none", 4096): 3.7912, ("linear", 1024): 2.9681, ("linear", 2048): 4.0597, ("linear", 4096): 4.6173,
    ("ntk", 1024): 1.8737, ("ntk", 2048): 2.1152, ("ntk", 4096): 2.9032, ("yarn", 1024): 1.9057,
    ("yarn", 2048): 2.3190, ("yarn", 4096): 3.6379, ("yarn-paper", 1024): 1.9284, ("yarn-paper", 2048): 2.2826,
    ("yarn-paper", 4096): 3.0106,
}


def results(name):
    path = os.path.join(OUT, name + ".json")
    if not os.path.exists(path):
        return {}
    j = json.load(open(path))
    return {r["length"]: r for r in j["models"][0]["results"]}


def cell(r, ref=None):
    if r is None:
        return ""
    s = f"{r['nll']:.4f}"
    if ref is not None:
        s += f" ({ref:.4f})"
    return s


lengths = [256, 512, 1024, 2048, 4096]
print("### Without fine-tuning (nats/token; in brackets the reference figure)\n")
print("| T | " + " | ".join(["none", "linear", "ntk", "dynamic-ntk", "yarn", "yarn-paper"]) + " |")
print("|---|" + "---|" * 6)
none = results("before-none")
for T in lengths:
    row = [cell(none.get(T), REF.get(("none", T)))]
    for s in ["linear", "ntk", "dynamic-ntk", "yarn", "yarn-paper"]:
        r = results(f"before-{s}-{T}").get(T) if T >= 1024 else None
        row.append(cell(r, REF.get((s, T))))
    print(f"| {T} | " + " | ".join(row) + " |")
secs = sum(r["seconds"] for r in none.values())
print(f"\nEvaluation time, no scaling, all five lengths: {secs:.1f} s.\n")

print("### After fine-tuning at 2048 (nats/token)\n")
print("| model | " + " | ".join(str(T) for T in lengths) + " | 4096 with s = 8 |")
print("|---|" + "---|" * 6)
print("| stories260K, no scaling (before) | " + " | ".join(cell(none.get(T)) for T in lengths) + " | |")
for s in ["linear", "yarn"]:
    for run, steps in [(f"{s}-x4", 200), (f"{s}-x4-400", 400)]:
        a = results(f"after-{run}")
        b = results(f"after-{run}-4096-s8")
        if not a:
            continue
        print(f"| fine-tuned {steps} steps, {s} x4 | " + " | ".join(cell(a.get(T)) for T in lengths) +
              f" | {cell(b.get(4096))} |")

print("\n### Fine-tuning runs (trainer's validation loss at 2048, nonoverlapping)\n")
print("| run | steps | val loss at 50 / 100 / 150 / 200 ... | final | wall time | peak RSS |")
print("|---|---|---|---|---|---|")
for s in ["linear", "yarn"]:
    for run in [f"ft-{s}-x4", f"ft-{s}-x4-400"]:
        path = os.path.join(OUT, run, "metrics.jsonl")
        if not os.path.exists(path):
            continue
        vals, final, steps = [], None, 0
        for line in open(path):
            j = json.loads(line)
            if j.get("final"):
                final, steps = j["val_loss"], j["step"]
            elif "val_loss" in j:
                vals.append(f"{j['val_loss']:.3f}")
        wall = rss = ""
        log = os.path.join(OUT, run + ".log")
        if os.path.exists(log):
            for line in open(log):
                if "Elapsed (wall clock)" in line:
                    wall = line.rsplit(": ", 1)[1].strip()
                if "Maximum resident set size" in line:
                    rss = f"{int(line.rsplit(': ', 1)[1]) / 1048576:.1f} GB"
                if line.startswith("trained ") and not wall:
                    wall = line.split(" in ")[1].split(" (")[0]
        print(f"| {run} | {steps} | {' / '.join(vals)} | {final:.4f} | {wall} | {rss} |" if final is not None else
              f"| {run} | (running) | {' / '.join(vals)} | | | |")
