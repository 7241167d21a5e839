#!/usr/bin/env python3
"""Check that tokenizers written by stretch's write_hf_tokenizer load in transformers and give stretch's ids.

Run by hand (not in CI; needs transformers and tokenizers, works offline). First let the C++ test leave its
exports (byte, gpt2, llama2c, llama2c_all, sentencepiece; gpt2 and llama2c need ../shared/data):

    STRETCH_KEEP_HF_EXPORT=/tmp/hf-export build/test_io --gtest_filter='HfTokenizerExport*'
    python3 tools/check_hf_tokenizer_export.py /tmp/hf-export

Each folder holds tokenizer.json, tokenizer_config.json and expected.json ({"strings": [...], "ids": [...],
"bos_id": id or -1}: the source tokenizer's encode() with its BOS first when it has one). For every string this script compares
AutoTokenizer.from_pretrained(folder, local_files_only=True)(string)["input_ids"] (special tokens added as the
tokenizer's config says) with the expected ids, and also tokenizers.Tokenizer.from_file(tokenizer.json)'s ids
without special tokens. It prints the agreement per folder and exits non-zero when any string differs
(llama2c_all is expected to differ where the text contains "<s>", "</s>", "<unk>" or U+2581, which the export
treats as special tokens / a space; it is reported, not failed).
"""

import argparse
import json
import pathlib
import sys

from tokenizers import Tokenizer
from transformers import AutoTokenizer


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("folder", help="the STRETCH_KEEP_HF_EXPORT folder")
    args = ap.parse_args()
    root = pathlib.Path(args.folder)
    failed = False
    folders = sorted(p.parent for p in root.glob("*/expected.json"))
    if not folders:
        sys.exit(f"no */expected.json under {root}")
    for d in folders:
        exp = json.loads((d / "expected.json").read_text(encoding="utf-8"))
        auto = AutoTokenizer.from_pretrained(str(d), local_files_only=True)
        raw = Tokenizer.from_file(str(d / "tokenizer.json"))
        bos = exp["bos_id"]
        bad_auto = bad_raw = 0
        shown = 0
        for s, want in zip(exp["strings"], exp["ids"]):
            got = auto(s)["input_ids"]
            body = raw.encode(s, add_special_tokens=False).ids
            want_body = want[1:] if bos >= 0 else want
            if got != want:
                bad_auto += 1
                if shown < 3 and d.name != "llama2c_all":
                    print(f"  {d.name}: {s!r}\n    transformers: {got}\n    stretch:      {want}")
                    shown += 1
            if body != want_body:
                bad_raw += 1
        n = len(exp["strings"])
        print(f"{d.name}: {type(auto).__name__}; AutoTokenizer agrees on {n - bad_auto}/{n} strings, "
              f"tokenizers (no special tokens) on {n - bad_raw}/{n}")
        if (bad_auto or bad_raw) and d.name != "llama2c_all":
            failed = True
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
