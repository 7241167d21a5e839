#!/usr/bin/env python3
"""Writes tests/io/data/gpt2_ids.json: reference GPT-2 token ids for stretch's GPT-2 tokenizer test.

The reference is tiktoken's "gpt2" encoding (OpenAI's own BPE), built from the local encoder.json and vocab.bpe
so it works offline; if tiktoken is missing, transformers' GPT2TokenizerFast on the same files is used.

    pip install tiktoken        # or: pip install transformers
    python3 tools/make_gpt2_token_fixture.py [--data ../shared/data] [--out tests/io/data/gpt2_ids.json]

The fixture holds the texts themselves (including the first 5,000 characters of WikiText-2's validation file),
so the test needs only encoder.json and vocab.bpe.
"""
from __future__ import annotations

import argparse
import json
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent

# GPT-2's pre-tokenization pattern (tiktoken's r50k_pat_str / encoder.py's pat).
GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""

CASES = [
    "Hello world",
    "Hello, world! How are you?",
    "I'm sure you're right, they've said we'll go; she'd and he's don't know.",
    "UPPER CASE DON'T 'S 'Re ''' 'x",
    "multiple   spaces    here     and tabs\t\tand\t end   ",
    "line one\nline two\n\nline four\n  indented\n\n\n",
    "\n\n\n",
    "   leading spaces",
    " ",
    "",
    "numbers 12345 3.14159 1,000,000 2024-01-01 0x1F 42nd ٣٤٥ 一二三",
    "naïve café résumé über Straße façade",
    "日本語のテキスト、中文文本。한국어 텍스트",
    "Ελληνικά και русский текст",
    "emoji 😀👍🏽 family 👨‍👩‍👧 flags 🇫🇷",
    "combining e\u0301 a\u0308 and nbsp\u00a0here and\u3000ideographic space",
    "<|endoftext|> is plain text here",
    "punctuation!!! ??? ... --- *** @@@ #hashtag $100 %50 ^&*()",
    "code: def f(x):\n    return x**2  # comment\n",
    "mixed123abc abc123 123abc ab12cd",
    " @-@ = = Robert Boulter = = \n",
    "ﬁ ligature, ½ fraction, Ⅻ roman, ² superscript",
    "tab\tnewline\r\nwindows line\rcr",
    "a" * 50 + " " + "=" * 300,
]


def encoder(data: pathlib.Path):
    enc_json, vocab = data / "gpt2-bpe" / "encoder.json", data / "gpt2-bpe" / "vocab.bpe"
    try:
        import tiktoken
        import tiktoken.load

        ranks = tiktoken.load.data_gym_to_mergeable_bpe_ranks(str(vocab), str(enc_json))
        enc = tiktoken.Encoding("gpt2-local", pat_str=GPT2_PATTERN, mergeable_ranks=ranks,
                                special_tokens={"<|endoftext|>": 50256}, explicit_n_vocab=50257)
        return enc.encode_ordinary, f"tiktoken {tiktoken.__version__}"
    except ImportError:
        import transformers

        tok = transformers.GPT2TokenizerFast(vocab_file=str(enc_json), merges_file=str(vocab))
        return (lambda s: tok(s, add_special_tokens=False)["input_ids"]), f"transformers {transformers.__version__}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=pathlib.Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--out", type=pathlib.Path, default=ROOT / "tests" / "io" / "data" / "gpt2_ids.json")
    ap.add_argument("--chars", type=int, default=5000)
    args = ap.parse_args()

    encode, source = encoder(args.data)
    valid = (args.data / "wikitext" / "wikitext-2" / "wiki.valid.tokens").read_text(encoding="utf-8")
    texts = CASES + [valid[: args.chars]]
    fixture = {
        "reference": source,
        "note": "written by tools/make_gpt2_token_fixture.py; the last case is the first "
                f"{args.chars} characters of wikitext-2/wiki.valid.tokens",
        "cases": [{"text": t, "ids": encode(t)} for t in texts],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(fixture, ensure_ascii=False, indent=None) + "\n", encoding="utf-8")
    n = sum(len(c["ids"]) for c in fixture["cases"])
    print(f"{args.out}: {len(texts)} texts, {n} ids ({source})")


if __name__ == "__main__":
    main()
