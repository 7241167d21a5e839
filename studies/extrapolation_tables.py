#!/usr/bin/env python3
"""Tables and plot of studies/extrapolation.sh's results, for docs/RESULTS.md.

    python3 studies/extrapolation_tables.py [runs/study] [--plot docs/extrapolation.png]

Prints one perplexity table per protocol (rows: methods, columns: L .. 16L), the efficiency comparison (ALiBi
trained at L against sinusoidal trained at 2L on the same tokens) and each run's time and peak memory; with
--plot, draws perplexity against evaluation length (log-log, gnuplot) for the nonoverlapping protocol.
"""
import json
import os
import subprocess
import sys

args = [a for a in sys.argv[1:] if not a.startswith("--")]
OUT = args[0] if args else "runs/study"
PLOT = sys.argv[sys.argv.index("--plot") + 1] if "--plot" in sys.argv else None
METHODS = ["alibi", "sinusoidal", "rope", "t5", "learned", "none"]


def load(name, protocol):
    path = os.path.join(OUT, f"eval-{name}-{protocol}.json")
    if not os.path.exists(path):
        return None
    m = json.load(open(path))["models"][0]
    return m["train_length"], {r["length"]: r for r in m["results"]}


def run_stats(name):
    stats = {}
    path = os.path.join(OUT, name + ".time")
    if os.path.exists(path):
        for line in open(path):
            if "Maximum resident set size" in line:
                stats["rss_mb"] = int(line.rsplit(": ", 1)[1]) / 1024
    metrics = os.path.join(OUT, name, "metrics.jsonl")
    if os.path.exists(metrics):
        for line in open(metrics):
            j = json.loads(line)
            if "elapsed_s" in j:  # the trainer's clock, summed over resumed sessions
                stats["wall"] = f"{j['elapsed_s'] / 60:.1f} min"
            if j.get("final"):
                stats["val_loss"] = j["val_loss"]
                stats["steps"] = j["step"]
    return stats


for protocol in ["nonoverlapping", "sliding"]:
    rows = [(m, load(m, protocol)) for m in METHODS]
    rows = [(m, r) for m, r in rows if r]
    if not rows:
        continue
    L = rows[0][1][0]
    lengths = sorted(rows[0][1][1])
    print(f"### Perplexity, {protocol} (trained at L = {L} bytes; columns: evaluation length)\n")
    print("| method | " + " | ".join(f"{T} ({T // L}L)" for T in lengths) + " |")
    print("|---|" + "---|" * len(lengths))
    for m, (_, res) in rows:
        print(f"| {m} | " + " | ".join(f"{res[T]['ppl']:.3f}" if T in res else "" for T in lengths) + " |")
    print()

a, s2 = load("alibi", "nonoverlapping"), load("sinusoidal-2L", "nonoverlapping")
if a and s2:
    L = a[0]
    asl, ssl = load("alibi", "sliding"), load("sinusoidal-2L", "sliding")
    sa, ss = run_stats("alibi"), run_stats("sinusoidal-2L")
    # wall clock is left out: the runs' clocks include whatever else the machine ran; bench/train_efficiency.sh
    # measures the speed and memory ratio with the two alternating in one invocation
    print("### Efficiency: ALiBi trained at L against sinusoidal trained at 2L, same tokens\n")
    print("| model | perplexity at 2L, nonoverlapping | at 2L, sliding | peak memory of the training run |")
    print("|---|---|---|---|")
    for name, (_, r), rs, st in [(f"ALiBi, L = {L}", a, asl, sa), (f"sinusoidal, L = {2 * L}", s2, ssl, ss)]:
        sl = f"{rs[1][2 * L]['ppl']:.3f}" if rs and 2 * L in rs[1] else ""
        print(f"| {name} | {r[2 * L]['ppl']:.3f} | {sl} | {st.get('rss_mb', 0):.0f} MB |")
    print()

print("### Runs\n")
print("| run | steps | final validation loss (nats/token = nats/byte) | training time | peak memory (last session) |")
print("|---|---|---|---|---|")
for name in METHODS + ["sinusoidal-2L"]:
    st = run_stats(name)
    if st:
        print(f"| {name} | {st.get('steps', '')} | {st.get('val_loss', float('nan')):.4f} | {st.get('wall', '')} | "
              f"{st.get('rss_mb', 0):.0f} MB |")

if PLOT:
    series = [(m, load(m, "nonoverlapping")) for m in METHODS + ["sinusoidal-2L"]]
    series = [(m, r) for m, r in series if r]
    data = os.path.join(OUT, "plot.dat")
    with open(data, "w") as f:
        for m, (_, res) in series:
            f.write(f"# {m}\n")
            for T in sorted(res):
                f.write(f"{T} {res[T]['ppl']}\n")
            f.write("\n\n")
    plots = ", ".join(f"'{data}' index {i} with linespoints title '{m}'" for i, (m, _) in enumerate(series))
    script = (f"set terminal pngcairo size 900,600; set output '{PLOT}'; set logscale xy; "
              f"set xlabel 'evaluation length (bytes)'; set ylabel 'perplexity (per byte)'; set key outside; "
              f"set title 'Trained at L = {series[0][1][0]}, evaluated at L .. 16L (WikiText-103 valid)'; plot {plots}")
    subprocess.run(["gnuplot", "-e", script], check=True)
    print(f"\nplot: {PLOT}")
