#!/usr/bin/env python3
"""Tables of studies/stories260k_lora.sh (docs/RESULTS.md, "stories260K extended by LoRA"): NLL by length of every
fine-tune (chunked protocol, nats/token), the trainer's validation loss every quarter of the run, the first
validation at or below the model's own NLL at 512 before fine-tuning (1.8205), and time / peak memory. The full
fine-tunes of studies/stories260k_context.sh are read from docs/results/stories260k-context, this study's runs from
runs/lora, or from its record docs/results/stories260k-lora when runs/lora is absent.

    python3 studies/stories260k_lora_tables.py [runs/lora]
"""
import json
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECORD = os.path.join(ROOT, "docs", "results", "stories260k-lora")  # the study's record (no weights)
RUNS = sys.argv[1] if len(sys.argv) > 1 else (os.path.join(ROOT, "runs", "lora")
                                             if os.path.isdir(os.path.join(ROOT, "runs", "lora")) else RECORD)
CTX = os.path.join(ROOT, "docs", "results", "stories260k-context")
OWN_512 = 1.8205  # stories260K at 512 before any fine-tune (docs/RESULTS.md)

RUNS_2048 = [
    ("full, yarn x4 (earlier session)", CTX, "after-yarn-x4", "ft-yarn-x4"),
    ("full, linear x4 (earlier session)", CTX, "after-linear-x4", "ft-linear-x4"),
    ("full, yarn x4 (this host)", RUNS, "after-yarn-full", "yarn-full"),
    ("LoRA r8, yarn x4", RUNS, "after-yarn-r8", "yarn-r8"),
    ("LoRA r8 + embed,norm, yarn x4", RUNS, "after-yarn-r8-en", "yarn-r8-en"),
    ("LoRA r8 + embed,norm + S2, yarn x4", RUNS, "after-yarn-r8-en-s2", "yarn-r8-en-s2"),
    ("LoRA r4 + embed,norm, yarn x4", RUNS, "after-yarn-r4-en", "yarn-r4-en"),
    ("LoRA r16 + embed,norm, yarn x4", RUNS, "after-yarn-r16-en", "yarn-r16-en"),
    ("LoRA r8, linear x4", RUNS, "after-linear-r8", "linear-r8"),
    ("LoRA r8 + embed,norm, linear x4", RUNS, "after-linear-r8-en", "linear-r8-en"),
    ("LoRA r8 + embed,norm + S2, linear x4", RUNS, "after-linear-r8-en-s2", "linear-r8-en-s2"),
]
RUNS_4096 = [
    ("full, yarn x8", RUNS, "after-4096-full", "4096-full"),
    ("LoRA r8 + embed,norm, yarn x8", RUNS, "after-4096-r8-en", "4096-r8-en"),
    ("LoRA r8 + embed,norm + S2, yarn x8", RUNS, "after-4096-r8-en-s2", "4096-r8-en-s2"),
    ("LoRA r8, yarn x8", RUNS, "after-4096-r8", "4096-r8"),
    ("LoRA r16 + embed,norm, yarn x8", RUNS, "after-4096-r16-en", "4096-r16-en"),
    ("full, linear x8", RUNS, "after-4096-linear-full", "4096-linear-full"),
    ("LoRA r8 + embed,norm, linear x8", RUNS, "after-4096-linear-r8-en", "4096-linear-r8-en"),
]


def nll(folder, name):
    p = os.path.join(folder, name + ".json")
    if not os.path.exists(p):
        return None
    return {r["length"]: r["nll"] for r in json.load(open(p))["models"][0]["results"]}


def metrics(folder, run):
    p = os.path.join(folder, run, "metrics.jsonl")
    if not os.path.exists(p):
        return None
    vals, tps = [], []
    for line in open(p):
        j = json.loads(line)
        if "val_loss" in j:
            vals.append((j["step"], j["val_loss"]))
        if "tokens_per_s" in j:
            tps.append(j["tokens_per_s"])
    return vals, tps


def timing(folder, run):
    p = os.path.join(folder, run + ".time")
    if not os.path.exists(p):
        p = os.path.join(folder, run, "time.txt")
    if not os.path.exists(p):
        return ""
    m = re.search(r"wall ([0-9.]+) s, peak RSS ([0-9]+) KB", open(p).read())
    return f"{float(m.group(1)) / 60:.1f} min, {int(m.group(2)) / 1024:.0f} MB" if m else ""


def table(rows, lengths):
    print("| run | " + " | ".join(str(t) for t in lengths) + " | val loss by quarter | first <= 1.8205 | median tok/s | wall, peak RSS |")
    print("|---|" + "---|" * (len(lengths) + 4))
    for label, folder, ev, run in rows:
        n = nll(folder, ev)
        m = metrics(folder, run)
        if n is None and m is None:
            continue
        cells = [f"{n[t]:.4f}" if n and t in n else "" for t in lengths]
        vals, tps = m if m else ([], [])
        quarters = " / ".join(f"{v:.3f}" for _, v in vals)
        first = next((str(s) for s, v in vals if v <= OWN_512), "not reached")
        tp = sorted(tps)[len(tps) // 2] if tps else 0
        print(f"| {label} | " + " | ".join(cells) + f" | {quarters} | {first} | {tp:.0f} | {timing(folder, run)} |")


print("### Extended to 2048 (200 steps of 4 x 2048 tokens)\n")
table(RUNS_2048, [256, 512, 1024, 2048, 4096])
print("\n### Extended to 4096 (100 steps of 4 x 4096 tokens)\n")
table(RUNS_4096, [512, 1024, 2048, 4096, 8192])
