#!/usr/bin/env python3
"""Tables of studies/stories260k_retrieval.sh (docs/RESULTS.md): NLL and passkey accuracy by method and length,
and the answers within the trained length. Reads runs/retrieval/ or the folder given (docs/results/...)."""
import json
import os
import sys

DIR = sys.argv[1] if len(sys.argv) > 1 else "runs/retrieval"
METHODS = ["none", "linear", "ntk", "yarn", "self-extend", "rerope", "leaky-rerope"]
LENGTHS = [512, 1024, 2048, 4096, 8192]


def load(name):
    p = os.path.join(DIR, name)
    return json.load(open(p)) if os.path.exists(p) else None


def main():
    print("| method | " + " | ".join(str(T) for T in LENGTHS) + " |")
    print("|---|" + "---|" * len(LENGTHS))
    for m in METHODS:
        row = []
        for T in LENGTHS:
            j = load(f"ppl-{m}-{T}.json")
            row.append(f"{j['models'][0]['results'][0]['nll']:.4f}" if j else "")
        print(f"| {m} | " + " | ".join(row) + " |")
    print()
    print("| method | " + " | ".join(str(T) for T in LENGTHS) + " | answers with a digit |")
    print("|---|" + "---|" * (len(LENGTHS) + 1))
    for m in METHODS:
        row, digits, n = [], 0, 0
        for T in LENGTHS:
            j = load(f"passkey-{m}-{T}.json")
            if not j:
                row.append("")
                continue
            trials = [t for c in j["models"][0]["cells"] for t in c["trials"]]
            ok = sum(t["correct"] for t in trials)
            digits += sum(any(ch.isdigit() for ch in t["output"]) for t in trials)
            n += len(trials)
            row.append(f"{ok}/{len(trials)}")
        print(f"| {m} | " + " | ".join(row) + f" | {digits}/{n} |")
    j = load("passkey-within-512.json")
    if j:
        print()
        outputs = {}
        for c in j["models"][0]["cells"]:
            for t in c["trials"]:
                outputs[t["output"]] = outputs.get(t["output"], 0) + 1
        for c in j["models"][0]["cells"]:
            pass
        by_len = {}
        for c in j["models"][0]["cells"]:
            a = by_len.setdefault(c["length"], [0, 0, 0, 0])
            a[0] += c["correct"]
            a[1] += len(c["trials"])
            a[2] += sum(any(ch.isdigit() for ch in t["output"]) for t in c["trials"])
            a[3] += sum(t["prompt_tokens"] for t in c["trials"])
        print("| length | mean prompt tokens | correct | answers with a digit |")
        print("|---|---|---|---|")
        for L, (ok, n, d, tok) in sorted(by_len.items()):
            print(f"| {L} | {tok / n:.0f} | {ok}/{n} | {d}/{n} |")
        print()
        print("most frequent answers:", ", ".join(f"{o!r} x{k}" for o, k in
                                                  sorted(outputs.items(), key=lambda x: -x[1])[:6]))


if __name__ == "__main__":
    main()
