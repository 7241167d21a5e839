#!/usr/bin/env python3
"""Does llama.cpp itself load a GGUF written by `stretch export gguf` and give the same perplexity as stretch?

Outside CI (needs PyPI's llama-cpp-python, which builds llama.cpp from source: `python3 -m pip install
llama-cpp-python`). Usage, a llama-architecture model (stories260K, documents split at blank lines, BOS each):

    build/stretch export gguf runs/ctx/stories260K --out /tmp/s.gguf
    python3 tools/check_llamacpp.py /tmp/s.gguf --run runs/ctx/stories260K \
        --text ../shared/data/tinystories/valid.txt --doc-sep --lengths 256,512

and a GPT ALiBi model (the "mpt" architecture, byte tokenizer), at its training length and past it:

    build/stretch export gguf runs/study/alibi --out /tmp/alibi.gguf
    python3 tools/check_llamacpp.py /tmp/alibi.gguf --run runs/study/alibi \
        --text ../shared/data/wikitext/wikitext-103/wiki.valid.tokens --max-chars 200000 --lengths 256,1024,4096

A LoRA fine-tune, as llama.cpp's base + adapter pair (`lora extract --format gguf`; the base written with the
fine-tune's context settings and the tensors it trained besides the adapter), against the fine-tune itself:

    build/stretch lora extract runs/lora/yarn4-r8 --format gguf --out /tmp/a.gguf --base-out /tmp/base.gguf
    python3 tools/check_llamacpp.py /tmp/base.gguf --lora /tmp/a.gguf --run runs/lora/yarn4-r8 \
        --text ../shared/data/tinystories/valid.txt --doc-sep --lengths 512,2048

Protocol (stretch's `--protocol chunked`): the text (its first --max-chars characters) is tokenized by
llama.cpp's own tokenizer (with --doc-sep: split at blank lines, each document stripped and tokenized alone),
BOS first where the model's vocabulary asks for one; the stream is cut into windows of each length; each window
is evaluated from an empty KV cache and every position but the last predicts the next token of the window.
stretch evaluates the same text (written to a temporary file) with `stretch eval --protocol chunked`
[--doc-sep '\\n\\n']. Prints, per length, both token counts and mean NLLs and their difference. A token-count
difference means the tokenizers disagree, not the models.
"""
import argparse
import json
import math
import subprocess
import sys
import tempfile

import numpy as np


def llamacpp_nll(llm, stream, T):
    total, count = 0.0, 0
    for s in range(0, len(stream) - 1, T):
        w = stream[s : s + T]
        if len(w) < 2:
            break
        llm.reset()
        llm.eval(w)
        logits = np.array(llm.scores[: len(w)], dtype=np.float64)
        m = logits.max(axis=1, keepdims=True)
        lse = (m[:, 0] + np.log(np.exp(logits - m).sum(axis=1)))[:-1]
        total += float((lse - logits[np.arange(len(w) - 1), w[1:]]).sum())
        count += len(w) - 1
    return total / count, count


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("gguf")
    ap.add_argument("--text", required=True)
    ap.add_argument("--lengths", default="256", help="comma-separated window lengths")
    ap.add_argument("--doc-sep", action="store_true", help="documents split at blank lines (llama2.c's stories)")
    ap.add_argument("--max-chars", type=int, default=0, help="only the text's first N characters (0: all)")
    ap.add_argument("--lora", help="a GGUF LoRA adapter for llama.cpp to apply to the model (scale 1)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--stretch", default="build/stretch")
    ap.add_argument("--run", help="the stretch checkpoint the GGUF was exported from (for its figures)")
    args = ap.parse_args()
    try:
        from llama_cpp import Llama
    except ImportError:
        sys.exit("llama-cpp-python is not installed: python3 -m pip install llama-cpp-python")

    lengths = [int(x) for x in args.lengths.split(",")]
    text = open(args.text, encoding="utf-8").read()
    if args.max_chars:
        text = text[: args.max_chars]
    if args.doc_sep:
        docs = [d.strip() for d in text.split("\n\n")]
        text = "\n\n".join(docs)
    else:
        docs = [text]
    llm = Llama(model_path=args.gguf, n_ctx=max(lengths), n_batch=max(lengths), n_ubatch=max(lengths),
                logits_all=True, verbose=False, n_threads=args.threads, lora_path=args.lora)
    stream = []
    for d in docs:
        stream += llm.tokenize(d.encode("utf-8"), add_bos=True)  # BOS only where the vocabulary adds one
    print(f"{args.gguf}{' + ' + args.lora if args.lora else ''}: llama.cpp tokenized {len(stream)} tokens")
    ours = {}
    if args.run:
        with tempfile.NamedTemporaryFile(suffix=".json") as f, tempfile.NamedTemporaryFile("w", suffix=".txt") as t:
            t.write(text)
            t.flush()
            cmd = [args.stretch, "eval", args.run, "--text", t.name, "--protocol", "chunked", "--lengths",
                   ",".join(map(str, lengths)), "--json", f.name, "--threads", str(args.threads)]
            if args.doc_sep:
                cmd += ["--doc-sep", "\\n\\n"]
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
            for r in json.load(open(f.name))["models"][0]["results"]:
                ours[r["length"]] = r
    print(f"{'length':>7} {'llama.cpp scored':>16} {'NLL':>8} {'stretch scored':>14} {'NLL':>8} {'difference':>10}")
    for T in lengths:
        nll, count = llamacpp_nll(llm, stream, T)
        r = ours.get(T)
        if r:
            print(f"{T:>7} {count:>16} {nll:>8.4f} {r['tokens']:>14} {r['nll']:>8.4f} {nll - r['nll']:>+10.6f}")
        else:
            print(f"{T:>7} {count:>16} {nll:>8.4f}")


if __name__ == "__main__":
    main()
