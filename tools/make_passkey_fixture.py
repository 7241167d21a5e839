#!/usr/bin/env python3
"""Write tests/fixtures/passkey/prompts.json: passkey prompts of the landmark-attention protocol (Mohtashami &
Jaggi), written here from the protocol's text, not from stretch's C++ (src/run/passkey.hpp states the same rules).

    python3 tools/make_passkey_fixture.py        (PyPI's sentencepiece; ../shared/data/llama2c/tok512.model)

The prompt with key k, n fillers and the needle at depth d is the five lines
    [instruction, F^a, "The pass key is {k}. Remember it. {k} is the pass key.", F^(n-a), question]
joined by "\\n" (the landmark code's "\\n".join), F^m = m copies of the filler sentence joined by spaces, a =
floor(d n + 1/2). Its tokens: BOS (when the tokenizer has one) + the tokenizer's encoding of the text; n is the
largest count whose prompt has at most `length` tokens, found here by counting up from 0 (the C++ steps from an
estimate). Tokenizers: "byte" (one token per UTF-8 byte, no BOS) and "sentencepiece" (tok512.model, BOS = 1).

The key of trial t of cell (L, d) under seed s: h = sm(sm(sm(sm(s) ^ L) ^ round(d 10^6)) ^ t) with sm splitmix64's
finalizer, then k = 1 + below(50000) of xoshiro256** seeded from h through splitmix64 (Lemire's multiply-shift),
written here from the algorithms' definitions.

Each case: tokenizer, seed, length, depth, trial, key, fillers, fillers_before, tokens (prompt length), text.

Needle in a haystack ("haystack": {"text", "cases"}): the fillers replaced by the words of HAYSTACK (split at
whitespace) joined by single spaces, taken cyclically from word s = below(number of words) of xoshiro256** seeded
from sm(h ^ 0x4861797374616b), h as for the key; the largest word count w whose prompt fits, a = floor(d w + 1/2)
words before the needle. Byte tokenizer; each case also gives start and words (w).
"""
import json
import math
import os

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
OUT = os.path.join(REPO, "tests", "fixtures", "passkey", "prompts.json")
TOK512 = os.path.join(os.path.dirname(REPO), "shared", "data", "llama2c", "tok512.model")

INSTRUCTION = ("There is an important info hidden inside a lot of irrelevant text. Find it and memorize them. "
               "I will quiz you about the important information there.")
FILLER = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."
QUESTION = "What is the pass key? The pass key is"
M64 = (1 << 64) - 1
HAYSTACK = ("Mary had 3 red apples and 12 green pears.\nShe gave 2 to Tom, who\tlived at 41 Oak Street since 1999. "
            "The   market opened at 7 and closed at 19; prices rose by 5 percent.  Later that year the town built "
            "a new bridge of 240 meters, and 1,500 people came to see it. Nobody remembered the old one.")


def sm(z):
    z = (z + 0x9E3779B97F4A7C15) & M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


class Xoshiro:
    def __init__(self, seed):
        self.s = []
        for _ in range(4):
            seed = (seed + 0x9E3779B97F4A7C15) & M64
            z = seed
            z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
            z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
            self.s.append(z ^ (z >> 31))

    @staticmethod
    def rotl(x, k):
        return ((x << k) | (x >> (64 - k))) & M64

    def next(self):
        s = self.s
        result = (self.rotl((s[1] * 5) & M64, 7) * 9) & M64
        t = (s[1] << 17) & M64
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = self.rotl(s[3], 45)
        return result

    def below(self, n):
        return (self.next() * n) >> 64


def key_of(seed, length, depth, trial):
    h = sm(seed)
    h = sm(h ^ length)
    h = sm(h ^ round(depth * 1e6))
    h = sm(h ^ trial)
    return 1 + Xoshiro(h).below(50000)


def hash_of(seed, length, depth, trial):
    h = sm(seed)
    h = sm(h ^ length)
    h = sm(h ^ round(depth * 1e6))
    return sm(h ^ trial)


def haystack_case(seed, length, depth, trial):
    words = HAYSTACK.split()
    key = key_of(seed, length, depth, trial)
    start = Xoshiro(sm(hash_of(seed, length, depth, trial) ^ 0x4861797374616B)).below(len(words))

    def text(w):
        a = min(max(math.floor(depth * w + 0.5), 0), w)
        ws = [words[(start + i) % len(words)] for i in range(w)]
        needle = f"The pass key is {key}. Remember it. {key} is the pass key."
        return "\n".join([INSTRUCTION, " ".join(ws[:a]), needle, " ".join(ws[a:]), QUESTION]), a

    w = 0
    while len(text(w + 1)[0].encode("utf-8")) <= length:
        w += 1
    t, a = text(w)
    return dict(seed=seed, length=length, depth=depth, trial=trial, key=key, start=start, words=w,
                fillers_before=a, tokens=len(t.encode("utf-8")), text=t)


def text_of(key, n, depth):
    a = min(max(math.floor(depth * n + 0.5), 0), n)
    needle = f"The pass key is {key}. Remember it. {key} is the pass key."
    return "\n".join([INSTRUCTION, " ".join([FILLER] * a), needle, " ".join([FILLER] * (n - a)), QUESTION]), a


def main():
    tokenizers = {"byte": lambda s: len(s.encode("utf-8"))}
    if os.path.exists(TOK512):
        import sentencepiece as spm
        sp = spm.SentencePieceProcessor(model_file=TOK512)
        tokenizers["sentencepiece"] = lambda s: 1 + len(sp.encode(s))
    grid = [("byte", 1, 300, 0.5, 0), ("byte", 1, 700, 0.0, 3), ("byte", 7, 1000, 1.0, 1),
            ("byte", 123456789, 2048, 0.25, 2), ("byte", 2, 450, 0.75, 0),
            ("sentencepiece", 1, 256, 0.25, 0), ("sentencepiece", 5, 600, 0.5, 4), ("sentencepiece", 9, 1024, 1.0, 0)]
    cases = []
    for tok, seed, length, depth, trial in grid:
        if tok not in tokenizers:
            continue
        count = tokenizers[tok]
        key = key_of(seed, length, depth, trial)
        n = 0
        while count(text_of(key, n + 1, depth)[0]) <= length:
            n += 1
        text, a = text_of(key, n, depth)
        cases.append(dict(tokenizer=tok, seed=seed, length=length, depth=depth, trial=trial, key=key, fillers=n,
                          fillers_before=a, tokens=count(text), text=text))
    keys = [dict(seed=s, length=L, depth=d, trial=t, key=key_of(s, L, d, t))
            for s in (1, 42) for L in (512, 4096) for d in (0.0, 0.5, 1.0) for t in range(3)]
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        hay = [haystack_case(*c) for c in ((1, 300, 0.5, 0), (3, 700, 0.25, 2), (11, 1500, 1.0, 1), (2, 260, 0.0, 0))]
        json.dump({"generator": "tools/make_passkey_fixture.py", "cases": cases, "keys": keys,
                   "haystack": {"text": HAYSTACK, "cases": hay}}, f, indent=1)
        f.write("\n")
    print(f"wrote {OUT}: {len(cases)} prompts, {len(keys)} keys")


if __name__ == "__main__":
    main()
