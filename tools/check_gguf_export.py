#!/usr/bin/env python3
"""Cross-check a GGUF file written by stretch (model/gguf_convert.hpp) with PyPI's independent `gguf` reader.

Prints every metadata key with its type and (abbreviated) value, then every tensor's name, ggml type and shape
(row-major, PyTorch order, and GGUF's ne order). Exits 1 when the file does not look like a llama GGUF
(missing llama.* keys or the layer tensors the block count promises).

usage: python3 tools/check_gguf_export.py model.gguf
"""
import sys

import gguf


def value_of(field):
    """A readable value of a ReaderField (gguf's parts/data layout)."""
    types = field.types
    if not types:
        return None
    if types[0] == gguf.GGUFValueType.ARRAY:
        sub = types[-1]
        items = []
        for idx in field.data:
            part = field.parts[idx]
            items.append(bytes(part).decode("utf-8", "replace") if sub == gguf.GGUFValueType.STRING else part.tolist()[0])
        return items
    part = field.parts[field.data[0]]
    if types[0] == gguf.GGUFValueType.STRING:
        return bytes(part).decode("utf-8", "replace")
    return part.tolist()[0]


def short(v, n=8):
    if isinstance(v, list):
        head = ", ".join(repr(x) for x in v[:n])
        return f"[{len(v)} items: {head}{', ...' if len(v) > n else ''}]"
    return repr(v)


def main():
    if len(sys.argv) != 2:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    r = gguf.GGUFReader(sys.argv[1])
    meta = {}
    print("metadata:")
    for name, field in r.fields.items():
        if name.startswith("GGUF."):
            continue
        v = value_of(field)
        meta[name] = v
        tname = "/".join(t.name for t in field.types)
        print(f"  {name} ({tname}) = {short(v)}")
    print("tensors:")
    names = set()
    for t in r.tensors:
        names.add(t.name)
        ne = [int(x) for x in t.shape]
        print(f"  {t.name:32s} {t.tensor_type.name:5s} shape {tuple(reversed(ne))} ne {ne}")

    problems = []
    if meta.get("general.architecture") != "llama":
        problems.append("general.architecture is not 'llama'")
    for k in ("llama.context_length", "llama.embedding_length", "llama.block_count", "llama.feed_forward_length",
              "llama.attention.head_count", "llama.attention.head_count_kv", "llama.rope.dimension_count",
              "llama.rope.freq_base", "llama.attention.layer_norm_rms_epsilon"):
        if k not in meta:
            problems.append(f"missing {k}")
    for l in range(int(meta.get("llama.block_count", 0) or 0)):
        for s in ("attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate", "ffn_up",
                  "ffn_down"):
            if f"blk.{l}.{s}.weight" not in names:
                problems.append(f"missing tensor blk.{l}.{s}.weight")
    for s in ("token_embd.weight", "output_norm.weight"):
        if s not in names:
            problems.append(f"missing tensor {s}")
    for p in problems:
        print("PROBLEM:", p)
    print("ok" if not problems else f"{len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
