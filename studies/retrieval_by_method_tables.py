#!/usr/bin/env python3
"""Print the tables of studies/retrieval_by_method.sh (docs/RESULTS.md) from its JSON reports.

    python3 studies/retrieval_by_method_tables.py [DIR]     (default runs/retrieval-by-method, else the published
                                                             record in docs/results/retrieval-by-method)

Passkey: accuracy by prompt length (all depths and trials), then by the distance (bytes) from the key's first digit
in the needle to the end of the prompt (byte-level models: the prompt text is rebuilt from the protocol), then,
per method, the length x depth table. Needle in a text haystack (needle-<m>.json, when present): by length.
Perplexity: per byte (nonoverlapping windows) by evaluation length.
"""
import json
import os
import sys

METHODS = ["alibi", "rope", "rope-more", "t5", "t5-more", "none", "none-more", "sinusoidal", "sinusoidal-more",
           "alibi-more", "rope-filler", "rope-filler-more", "rope-filler-more2", "none-filler", "none-filler-more",
           "rope-filler-mixed", "none-filler-mixed"]
INSTRUCTION = ("There is an important info hidden inside a lot of irrelevant text. Find it and memorize them. "
               "I will quiz you about the important information there.")
FILLER = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."
QUESTION = "What is the pass key? The pass key is"
BUCKETS = [0, 128, 256, 512, 1024, 2048, 4096, 1 << 30]


def distance(key, n, depth):
    """Bytes from the key's first digit in the needle to the end of the prompt (docs/RETRIEVAL.md's text)."""
    import math
    a = min(max(math.floor(depth * n + 0.5), 0), n)
    needle = f"The pass key is {key}. Remember it. {key} is the pass key."
    text = "\n".join([INSTRUCTION, " ".join([FILLER] * a), needle, " ".join([FILLER] * (n - a)), QUESTION])
    return len(text.encode()) - (text.index(needle) + len("The pass key is "))


def by_length(title, runs):
    first = next(iter(runs.values()))
    L = first["train_length"]
    lengths = [a["length"] for a in first["accuracy_by_length"]]
    print(f"#### {title} (correct / trials, all depths)\n")
    print("| method | " + " | ".join(f"{n // L}L = {n}" if n != L else f"L = {n}" for n in lengths) + " |")
    print("|---" * (len(lengths) + 1) + "|")
    for m, r in runs.items():
        cells = []
        for n in lengths:
            cs = [c for c in r["cells"] if c["length"] == n]
            cells.append(f"{sum(c['correct'] for c in cs)}/{sum(len(c['trials']) for c in cs)}")
        print(f"| {m} | " + " | ".join(cells) + " |")
    print()


def main():
    d = sys.argv[1] if len(sys.argv) > 1 else "runs/retrieval-by-method"
    if not os.path.isdir(d):
        d = "docs/results/retrieval-by-method"
    pk = {m: json.load(open(os.path.join(d, f"passkey-{m}.json")))["models"][0]
          for m in METHODS if os.path.exists(os.path.join(d, f"passkey-{m}.json"))}
    ppl = {m: json.load(open(os.path.join(d, f"ppl-{m}.json")))["models"][0]
           for m in METHODS if os.path.exists(os.path.join(d, f"ppl-{m}.json"))}
    needle = {m: json.load(open(os.path.join(d, f"needle-{m}.json")))["models"][0]
              for m in METHODS if os.path.exists(os.path.join(d, f"needle-{m}.json"))}
    if pk:
        by_length("Passkey accuracy by prompt length", pk)
        print("#### Passkey accuracy by distance from the key to the question's end (bytes; correct / trials)\n")
        names = [f"{lo}-{hi}" if hi < (1 << 30) else f">= {lo}" for lo, hi in zip(BUCKETS, BUCKETS[1:])]
        print("| method | " + " | ".join(names) + " |")
        print("|---" * (len(names) + 1) + "|")
        for m, r in pk.items():
            ok, tot = [0] * len(names), [0] * len(names)
            for c in r["cells"]:
                for t in c["trials"]:
                    dist = distance(t["key"], t["fillers"], c["depth"])
                    b = next(i for i in range(len(names)) if BUCKETS[i] <= dist < BUCKETS[i + 1])
                    ok[b] += t["correct"]
                    tot[b] += 1
            print(f"| {m} | " + " | ".join(f"{o}/{t}" if t else "-" for o, t in zip(ok, tot)) + " |")
        print()
    if needle:
        by_length("Needle in a TinyStories haystack (valid.txt, never trained on): accuracy by prompt length", needle)
    if pk:
        first = next(iter(pk.values()))
        lengths = [a["length"] for a in first["accuracy_by_length"]]
        for m, r in pk.items():
            depths = sorted({c["depth"] for c in r["cells"]})
            print(f"{m}: accuracy (%) by length (rows) and needle depth (columns)\n")
            print("| length | " + " | ".join(f"d = {x:g}" for x in depths) + " |")
            print("|---" * (len(depths) + 1) + "|")
            for n in lengths:
                row = []
                for x in depths:
                    c = next(c for c in r["cells"] if c["length"] == n and c["depth"] == x)
                    row.append(f"{100 * c['accuracy']:.0f}")
                print(f"| {n} | " + " | ".join(row) + " |")
            print()
    exts = {}
    for f in sorted(os.listdir(d)):
        if f.startswith("ext-") and f.endswith(".json"):
            rest, T = f[4:-5].rsplit("-", 1)
            m = next(x for x in ("alibi", "rope-filler", "rope", "t5") if rest.startswith(x + "-"))
            e = rest[len(m) + 1:]
            r = json.load(open(os.path.join(d, f)))["models"][0]
            exts.setdefault((m, e), {})[int(T)] = (sum(c["correct"] for c in r["cells"]),
                                                  sum(len(c["trials"]) for c in r["cells"]))
    if exts:
        lengths = sorted({T for v in exts.values() for T in v})
        print("#### Passkey with fine-tuning-free extensions (correct / trials)\n")
        print("| model | extension | " + " | ".join(str(T) for T in lengths) + " |")
        print("|---" * (len(lengths) + 2) + "|")
        for (m, e), v in sorted(exts.items()):
            print(f"| {m} | {e} | " + " | ".join(f"{v[T][0]}/{v[T][1]}" if T in v else "-" for T in lengths) + " |")
        print()
    if ppl:
        first = next(iter(ppl.values()))
        lengths = [x["length"] for x in first["results"]]
        print("#### Perplexity per byte on TinyStories valid.txt (nonoverlapping)\n")
        print("| method | " + " | ".join(str(n) for n in lengths) + " |")
        print("|---" * (len(lengths) + 1) + "|")
        for m, r in ppl.items():
            print(f"| {m} | " + " | ".join(f"{x['ppl']:.3f}" for x in r["results"]) + " |")
        print()


if __name__ == "__main__":
    main()
