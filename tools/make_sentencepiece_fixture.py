#!/usr/bin/env python3
"""Writes tests/fixtures/sentencepiece/tok512_ids.json: reference ids for stretch's SentencePiece tokenizer test.

The reference is SentencePiece's own Python package encoding with llama2.c's tok512.model (the stories260K
tokenizer, found at ../shared/data/llama2c/tok512.model beside the repository). To regenerate:

    python3 -m pip install sentencepiece        # PyPI's package, for the python3 first on PATH
    python3 tools/make_sentencepiece_fixture.py [--model ../shared/data/llama2c/tok512.model] \\
        [--out tests/fixtures/sentencepiece/tok512_ids.json]

The C++ tokenizer (src/io/tokenizer_sentencepiece.cpp) wraps Debian's libsentencepiece, so it must reproduce
these ids exactly; the fixture records the Python package's version so a mismatch can be traced to a version
difference. Each case holds:

  "text"     the input (UTF-8);
  "ids"      sp.encode(text): the pieces' ids, no BOS/EOS;
  "pieces"   sp.id_to_piece(ids), for humans reading the file;
  "decoded"  sp.decode(ids): equal to "text" for "sentences"; for "normalized" (texts that tok512.model's
             normalizer changes: remove_extra_whitespaces=true strips leading/trailing spaces and collapses runs
             of spaces, and a literal U+2581 reads as a space) it is the normalized text.

The script refuses to write a "sentences" case whose decode differs from its text.
"""
from __future__ import annotations

import argparse
import json
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent

# decode(encode(s)) == s for these.
SENTENCES = [
    "Once upon a time, there was a little girl named Lily.",
    "She loved to play outside in the park with her friends.",
    'One day, Tom said, "Look at the big red ball!" and they all laughed.',
    "Hello world",
    "a",
    "",
    "line one\nline two\n\nline four",
    "123 4567 89, 3.14159 and 1,000,000.",
    "café naïve résumé",
    "日本語のテキスト",
    "emoji 😀👍🏽 and more",
    "<s> </s> <unk> <0x41> are plain text",
]

# SentencePiece's normalizer changes these (decode gives the normalized text).
NORMALIZED = [
    " ",
    "  leading spaces",
    "trailing spaces   ",
    "multiple   spaces    here",
    " \n spaces around newline \n ",
    "\u2581 is SentencePiece's space mark",
]


def case(sp, text: str) -> dict:
    ids = sp.encode(text)
    return {"text": text, "ids": ids, "pieces": [sp.id_to_piece(i) for i in ids], "decoded": sp.decode(ids)}


def dump(out: dict) -> str:
    """JSON with one case per line (readable diffs when the fixture is regenerated)."""
    lines = []
    for k, v in out.items():
        if isinstance(v, list):
            items = ",\n".join("  " + json.dumps(c, ensure_ascii=False) for c in v)
            lines.append(f" {json.dumps(k)}: [\n{items}\n ]")
        else:
            lines.append(f" {json.dumps(k)}: {json.dumps(v, ensure_ascii=False)}")
    text = "{\n" + ",\n".join(lines) + "\n}\n"
    assert json.loads(text) == out
    return text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=pathlib.Path, default=ROOT.parent / "shared" / "data" / "llama2c" / "tok512.model")
    ap.add_argument("--out", type=pathlib.Path,
                    default=ROOT / "tests" / "fixtures" / "sentencepiece" / "tok512_ids.json")
    args = ap.parse_args()

    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(args.model))
    sentences = [case(sp, s) for s in SENTENCES]
    for c in sentences:
        if c["decoded"] != c["text"]:
            raise SystemExit(f"decode(encode(s)) != s for {c['text']!r}: {c['decoded']!r}; move it to NORMALIZED")
    normalized = [case(sp, s) for s in NORMALIZED]
    for c in normalized:
        if c["decoded"] == c["text"]:
            raise SystemExit(f"{c['text']!r} is not changed by normalization; move it to SENTENCES")
    out = {
        "source": "tools/make_sentencepiece_fixture.py: PyPI sentencepiece " + spm.__version__ + " with "
                  + args.model.name,
        "vocab_size": sp.vocab_size(),
        "bos_id": sp.bos_id(),
        "eos_id": sp.eos_id(),
        "unk_id": sp.unk_id(),
        # what <unk> decodes to (the model's trainer_spec.unk_surface): for tok512.model the 14 characters
        # space, backslash, 3, 4, 2, ..., space, an octal escape of SentencePiece's default " ⁇ " stored literally
        "unk_decoded": sp.decode([sp.unk_id()]),
        "sentences": sentences,
        "normalized": normalized,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(dump(out), encoding="utf-8")
    print(f"wrote {args.out}: {len(sentences)} sentences, {len(normalized)} normalized texts")


if __name__ == "__main__":
    main()
