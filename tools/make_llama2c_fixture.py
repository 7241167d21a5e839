#!/usr/bin/env python3
"""Writes tests/io/data/stories260K_probe.json: an independent (numpy) read of llama2.c's stories260K.bin
for stretch's llama2.c reader test (tests/io/test_llama2c.cpp).

    /usr/bin/python3 tools/make_llama2c_fixture.py [--bin ../shared/data/llama2c/stories260K.bin]
                                                   [--out tests/io/data/stories260K_probe.json]

Records the 7-int header, whether the classifier is shared, and for each tensor its element count, its sum
(float64 accumulation) and its first 4 values, read with numpy straight from the file in run.c's legacy order.
"""
from __future__ import annotations

import argparse
import json
import pathlib

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=str(ROOT.parent / "shared/data/llama2c/stories260K.bin"))
    ap.add_argument("--out", default=str(ROOT / "tests/io/data/stories260K_probe.json"))
    args = ap.parse_args()

    raw = pathlib.Path(args.bin).read_bytes()
    header = np.frombuffer(raw, dtype="<i4", count=7)
    dim, hidden, n_layers, n_heads, n_kv_heads, vocab, seq_len = (int(x) for x in header)
    shared = vocab > 0
    vocab = abs(vocab)
    hs = dim // n_heads
    kv_dim = n_kv_heads * hs
    shapes = [
        ("tok_embeddings", (vocab, dim)),
        ("rms_att", (n_layers, dim)),
        ("wq", (n_layers, n_heads * hs, dim)),
        ("wk", (n_layers, kv_dim, dim)),
        ("wv", (n_layers, kv_dim, dim)),
        ("wo", (n_layers, dim, n_heads * hs)),
        ("rms_ffn", (n_layers, dim)),
        ("w1", (n_layers, hidden, dim)),
        ("w2", (n_layers, dim, hidden)),
        ("w3", (n_layers, hidden, dim)),
        ("rms_final", (dim,)),
        ("freq_cis_real", (seq_len, hs // 2)),
        ("freq_cis_imag", (seq_len, hs // 2)),
    ]
    if not shared:
        shapes.append(("wcls", (vocab, dim)))
    data = np.frombuffer(raw, dtype="<f4", offset=28)
    total = sum(int(np.prod(s)) for _, s in shapes)
    assert data.size == total, f"file holds {data.size} floats, expected {total}"
    tensors = {}
    off = 0
    for name, shape in shapes:
        n = int(np.prod(shape))
        t = data[off:off + n]
        tensors[name] = {
            "shape": list(shape),
            "numel": n,
            "offset_bytes": 28 + 4 * off,
            "sum": float(t.astype(np.float64).sum()),
            "first": [float(x) for x in t[:4]],
        }
        off += n
    out = {
        "note": "written by tools/make_llama2c_fixture.py (numpy " + np.__version__ + ") from stories260K.bin",
        "file_bytes": len(raw),
        "header": [int(x) for x in header],
        "shared_classifier": shared,
        "tensors": tensors,
    }
    pathlib.Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.out}: shared_classifier={shared}, {total} floats")


if __name__ == "__main__":
    main()
