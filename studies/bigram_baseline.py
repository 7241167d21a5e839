#!/usr/bin/env python3
"""Byte-level count baselines for the extrapolation study (docs/RESULTS.md): a unigram and a bigram model of
the bytes of WikiText-2's training split (its first 99%, as the study trains on), scored on the first 131,072
predicted bytes of WikiText-103's validation split, in nats per byte and perplexity. The bigram model is what a
transformer can reach without locating any earlier byte: it sees only the current byte.

    python3 studies/bigram_baseline.py [DATA]          (default DATA ../shared/data)

Smoothing: add 0.01 to every count (the result moves by less than 0.001 nats between 0.001 and 0.1).
"""
import math
import os
import sys

data = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")
train_path = os.path.join(data, "wikitext", "wikitext-2", "wiki.train.tokens")
valid_path = os.path.join(data, "wikitext", "wikitext-103", "wiki.valid.tokens")
for p in (train_path, valid_path):
    if not os.path.exists(p):
        sys.exit(f"missing {p} (../shared/data beside the repository, or pass DATA)")
train = open(train_path, "rb").read()
train = train[: int(len(train) * 0.99)]
valid = open(valid_path, "rb").read()[: 131072 + 1]

alpha = 0.01
pair = [[0] * 256 for _ in range(256)]
for a, b in zip(train, train[1:]):
    pair[a][b] += 1
row = [sum(r) for r in pair]
uni = [0] * 256
for a in train:
    uni[a] += 1

n = len(valid) - 1
nll_bi = -sum(math.log((pair[a][b] + alpha) / (row[a] + 256 * alpha)) for a, b in zip(valid, valid[1:])) / n
nll_uni = -sum(math.log((uni[b] + alpha) / (len(train) + 256 * alpha)) for b in valid[1:]) / n
print(f"unigram: {nll_uni:.4f} nats/byte, perplexity {math.exp(nll_uni):.3f}")
print(f"bigram:  {nll_bi:.4f} nats/byte, perplexity {math.exp(nll_bi):.3f}  ({n} bytes scored)")
