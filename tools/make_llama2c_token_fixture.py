#!/usr/bin/env python3
"""Writes tests/io/data/llama2c_ids.json: reference token ids for stretch's llama2.c tokenizer test.

The reference is SentencePiece itself, encoding with tok512.model (the model llama2.c exported to tok512.bin):

    python3 -m pip install sentencepiece
    python3 tools/make_llama2c_token_fixture.py [--data ../shared/data] [--out tests/io/data/llama2c_ids.json]

llama2.c's run.c does not run SentencePiece: it re-implements BPE over tokenizer.bin (dummy prefix " ", code
point lookup with byte fallback, then highest-score merges). The two agree except on whitespace: tok512.model was
trained with SentencePiece's default remove_extra_whitespaces=true, so SentencePiece strips leading/trailing
spaces and collapses runs of spaces before encoding, while run.c encodes every space as written. So:

  "strings"/"ids":  texts on which run.c's algorithm and SentencePiece agree; ids are sp.encode(s) and the C++
                    tokenizer must reproduce them exactly. Includes the first story of TinyStories' valid.txt.
  "differs":        texts where they disagree (whitespace; a literal U+2581), each with "text", "sentencepiece" (sp.encode) and
                    "llama2c" (this script's line-by-line port of run.c's encode(), BOS/EOS off); the C++
                    tokenizer must give the "llama2c" ids.

The script checks every text with both encoders and refuses to put a text in "strings" unless they agree.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import struct

ROOT = pathlib.Path(__file__).resolve().parent.parent

# Texts on which run.c and SentencePiece must agree.
AGREE = [
    "Once upon a time, there was a little girl named Lily.",
    "She loved to play outside in the park with her friends.",
    'One day, Tom said, "Look at the big red ball!" and they all laughed.',
    "The cat was very happy. It jumped, ran and played all day long.",
    "Hello world",
    "a",
    "I'm sure you're right, they've said we'll go; she'd and he's don't know.",
    "line one\nline two\n\nline four",
    "tabs\tand\tmore",
    "123 4567 89, 2024-01-31, 3.14159 and 1,000,000.",
    "Punctuation: !?.,;:'\"()[]{}<>@#$%^&*-_=+/\\|`~",
    "café naïve résumé",
    "日本語のテキスト",
    "emoji 😀👍🏽 and more",
    "Ünïcödé ŧëxŧ — ٣٤٥ e\u0301",
    "UPPER CASE WORDS and MiXeD cAsE",
    "<s> </s> <unk> <0x41> are plain text",
]

# Texts on which they disagree (SentencePiece removes extra whitespace, run.c does not).
DIFFER = [
    "",  # SentencePiece gives []; so does run.c (no dummy prefix for empty text): kept here only if they differ
    " ",
    "  leading spaces",
    "trailing spaces   ",
    "multiple   spaces    here",
    "\n",
    " \n spaces around newline \n ",
    # SentencePiece reads a literal U+2581 (its whitespace mark) in the input as a space; run.c looks the
    # code point up as a string, finds no token and falls back to its 3 bytes.
    "\u2581 is SentencePiece's space mark",
]


def first_story(valid_txt: pathlib.Path) -> str:
    """The first story of valid.txt: stories are separated by blank lines like paragraphs are, so a story ends
    before the first paragraph that opens a new one. The first story's sixth paragraph is its last ("Peter was
    excited" starts the second); keep it simple and robust: the first six paragraphs."""
    paras = valid_txt.read_text(encoding="utf-8").split("\n\n")
    return "\n\n".join(p.strip("\n") for p in paras[:6])


def load_bin(path: pathlib.Path, vocab_size: int):
    b = path.read_bytes()
    (max_len,) = struct.unpack_from("<i", b, 0)
    off = 4
    vocab, scores = [], []
    for _ in range(vocab_size):
        score, n = struct.unpack_from("<fi", b, off)
        off += 8
        vocab.append(b[off : off + n])
        scores.append(score)
        off += n
    assert off == len(b), "trailing bytes"
    return vocab, scores


def runc_encode(text: str, vocab, scores) -> list[int]:
    """run.c's encode(t, text, bos=0, eos=0), transcribed (quadratic merge loop and all)."""
    lookup = {}
    for i, s in enumerate(vocab):
        lookup.setdefault(s, i)
    data = text.encode("utf-8")
    tokens = []
    if data:
        tokens.append(lookup[b" "])
    buf = b""
    for i, c in enumerate(data):
        if (c & 0xC0) != 0x80:
            buf = b""
        buf += bytes([c])
        if i + 1 < len(data) and (data[i + 1] & 0xC0) == 0x80 and len(buf) < 4:
            continue
        if buf in lookup:
            tokens.append(lookup[buf])
        else:
            tokens.extend(x + 3 for x in buf)
        buf = b""
    while True:
        best_score, best_id, best_idx = -1e10, -1, -1
        for i in range(len(tokens) - 1):
            j = lookup.get(vocab[tokens[i]] + vocab[tokens[i + 1]], -1)
            if j != -1 and scores[j] > best_score:
                best_score, best_id, best_idx = scores[j], j, i
        if best_idx == -1:
            break
        tokens[best_idx : best_idx + 2] = [best_id]
    return tokens


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=pathlib.Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--out", type=pathlib.Path, default=ROOT / "tests" / "io" / "data" / "llama2c_ids.json")
    args = ap.parse_args()

    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(args.data / "llama2c" / "tok512.model"))
    vocab, scores = load_bin(args.data / "llama2c" / "tok512.bin", sp.vocab_size())

    agree = AGREE + [first_story(args.data / "tinystories" / "valid.txt")]
    strings, ids, differs = [], [], []
    for s in agree:
        want, got = sp.encode(s), runc_encode(s, vocab, scores)
        if want != got:
            raise SystemExit(f"run.c port and SentencePiece disagree on {s!r}:\n  sp   {want}\n  run.c {got}")
        strings.append(s)
        ids.append(want)
    for s in DIFFER:
        want, got = sp.encode(s), runc_encode(s, vocab, scores)
        if want == got:
            strings.append(s)
            ids.append(want)
        else:
            differs.append({"text": s, "sentencepiece": want, "llama2c": got})
    out = {
        "source": "tools/make_llama2c_token_fixture.py: SentencePiece " + spm.__version__ + " with tok512.model",
        "strings": strings,
        "ids": ids,
        "differs": differs,
    }
    args.out.write_text(json.dumps(out, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.out}: {len(strings)} agreeing strings, {len(differs)} differing (whitespace, U+2581)")


if __name__ == "__main__":
    main()
