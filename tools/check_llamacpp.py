#!/usr/bin/env python3
"""Does llama.cpp itself load a GGUF written by `stretch export gguf` and give the same perplexity as stretch?

Outside CI (needs PyPI's llama-cpp-python, which builds llama.cpp from source: `python3 -m pip install
llama-cpp-python`). Usage:

    build/stretch export gguf runs/ctx/stories260K --out /tmp/s.gguf
    python3 tools/check_llamacpp.py /tmp/s.gguf --text ../shared/data/tinystories/valid.txt --length 256 \
        --stretch build/stretch --run runs/ctx/stories260K

Protocol (stretch's `--doc-sep '\\n\\n' --protocol chunked`): the text is split at blank lines, each document
stripped and tokenized by llama.cpp's own tokenizer with BOS; the stream is cut into windows of --length tokens;
each window is evaluated from an empty KV cache and every position but the last predicts the next token of the
window. Prints llama.cpp's token count and mean NLL, stretch's (from `stretch eval --json` on the same text), and
their difference. A token-count difference means the two tokenizers disagree (llama.cpp's SentencePiece-style
tokenizer against llama2.c's run.c encoder), not the models.
"""
import argparse
import json
import math
import subprocess
import sys
import tempfile

import numpy as np


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("gguf")
    ap.add_argument("--text", required=True)
    ap.add_argument("--length", type=int, default=256)
    ap.add_argument("--max-docs", type=int, default=0, help="only the first N documents (0: all)")
    ap.add_argument("--stretch", default="build/stretch")
    ap.add_argument("--run", help="the stretch checkpoint the GGUF was exported from (for its figure)")
    args = ap.parse_args()
    try:
        from llama_cpp import Llama
    except ImportError:
        sys.exit("llama-cpp-python is not installed: python3 -m pip install llama-cpp-python")

    T = args.length
    llm = Llama(model_path=args.gguf, n_ctx=T, logits_all=True, verbose=False, n_threads=2)
    docs = [d.strip() for d in open(args.text, encoding="utf-8").read().split("\n\n")]
    if args.max_docs:
        docs = docs[: args.max_docs]
    stream = []
    for d in docs:
        stream += llm.tokenize(d.encode("utf-8"), add_bos=True)
    total, count = 0.0, 0
    for s in range(0, len(stream) - 1, T):
        w = stream[s : s + T]
        if len(w) < 2:
            break
        llm.reset()
        llm.eval(w)
        logits = np.array(llm.scores[: len(w)], dtype=np.float64)
        for j in range(len(w) - 1):
            row = logits[j]
            m = row.max()
            lse = m + math.log(np.exp(row - m).sum())
            total += lse - row[w[j + 1]]
            count += 1
    print(f"llama.cpp: {len(stream)} tokens, {count} scored, mean NLL {total / count:.4f}")
    if args.run:
        with tempfile.NamedTemporaryFile(suffix=".json") as f, tempfile.NamedTemporaryFile("w", suffix=".txt") as t:
            t.write("\n\n".join(docs))
            t.flush()
            subprocess.run([args.stretch, "eval", args.run, "--text", t.name, "--doc-sep", "\\n\\n", "--protocol",
                            "chunked", "--lengths", str(T), "--json", f.name], check=True, stdout=subprocess.DEVNULL)
            r = json.load(open(f.name))["models"][0]["results"][0]
        print(f"stretch:   {r['tokens']} scored, mean NLL {r['nll']:.4f}; difference {total / count - r['nll']:+.4f}")


if __name__ == "__main__":
    main()
