#!/usr/bin/env python3
"""Writes tests/fixtures/gguf/small.gguf with gguf-py (llama.cpp's reference Python GGUF package, PyPI `gguf`) and
tests/fixtures/gguf/small.json, the values stretch's GGUF reader must find in it (tests/io/test_gguf.cpp).

    python3 -m pip install gguf numpy
    python3 tools/make_gguf_fixture.py [--out-dir tests/fixtures/gguf]

The .gguf holds a few metadata values of several types (integers of each width, floats, bool, string, a string
array, a nested array) and small tensors stored as F32, F16, Q8_0 and BF16 (gguf-py's own quantizers for Q8_0 and
BF16, numpy's float16 cast for F16). The sidecar records, as read back by gguf-py's GGUFReader from the written
file: the version, the alignment, the data section's offset, every metadata key in file order with its GGUF type
and value, and per tensor its ggml type number, its row-major shape (PyTorch order) and GGUF ne order, its data
offset, its stored bytes (hex), the fp32 values it was made from, and its values dequantized by gguf-py
(gguf.quants.dequantize). Inputs are seeded, so reruns give identical files.
"""
from __future__ import annotations

import argparse
import importlib.metadata
import json
import pathlib

import gguf
import numpy as np
from gguf.constants import GGMLQuantizationType as Q
from gguf.constants import GGUFValueType as V

ROOT = pathlib.Path(__file__).resolve().parent.parent


def inputs() -> dict[str, tuple[np.ndarray, Q]]:
    rng = np.random.default_rng(20240607)
    f32 = rng.standard_normal((3, 5)).astype(np.float32)
    f32_3d = (rng.standard_normal((2, 3, 4)) * 10).astype(np.float32)
    # F16: ties (1 + 2^-11 -> 1, 1 + 3 * 2^-11 -> 1 + 2^-9), the largest finite value's rounding, subnormals.
    f16 = np.array([[1.0 + 2.0**-11, 1.0 + 3 * 2.0**-11, 65519.0, -65504.0, 1e-7, -3.0e-6, 0.1],
                    [0.0, -0.0, 2.5, -1.0 / 3.0, 1234.567, 6.1e-5, -7.0]], dtype=np.float32)
    # BF16: ties (1 + 2^-8 -> 1, 1 + 3 * 2^-8 -> 1 + 2^-6), ordinary values.
    bf16 = np.array([[1.0 + 2.0**-8, 1.0 + 3 * 2.0**-8, 3.14159265],
                     [-123.456, 1e-30, 0.0],
                     [1e30, -2.0, 0.33333334],
                     [7.0, -0.0078125, 65536.5]], dtype=np.float32)
    # Q8_0: 3 rows of 64 (2 blocks each), one block all zeros, one with a large outlier.
    q8 = rng.standard_normal((3, 64)).astype(np.float32)
    q8[1, :32] = 0.0
    q8[2, 40] = 25.0
    return {
        "f32.weight": (f32, Q.F32),
        "f32.cube": (f32_3d, Q.F32),
        "f16.weight": (f16, Q.F16),
        "q8.weight": (q8, Q.Q8_0),
        "bf16.weight": (bf16, Q.BF16),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out-dir", default=str(ROOT / "tests/fixtures/gguf"))
    args = ap.parse_args()
    out_dir = pathlib.Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "small.gguf"

    w = gguf.GGUFWriter(str(path), arch="stretchtest")  # writes general.architecture first
    w.add_name("stretch gguf fixture")
    w.add_uint8("test.u8", 200)
    w.add_int8("test.i8", -100)
    w.add_uint16("test.u16", 60000)
    w.add_int16("test.i16", -30000)
    w.add_uint32("test.u32", 4000000000)
    w.add_int32("test.i32", -2000000000)
    w.add_uint64("test.u64", 2**63 + 5)
    w.add_int64("test.i64", -(2**62))
    w.add_float32("test.f32", 0.1)
    w.add_float64("test.f64", -2.5e-300)
    w.add_bool("test.bool", True)
    w.add_string("test.string", "h\u00e9llo, gguf")
    w.add_array("test.strings", ["alpha", "", "\u03b3amma", "<s>"])
    w.add_array("test.floats", [0.5, -1.25, 3.0])
    w.add_array("test.nested", [[1, 2, 3], [-4], [5, 6]])
    w.add_uint32("stretchtest.context_length", 256)

    tensors = inputs()
    for name, (x, qtype) in tensors.items():
        if qtype == Q.F32:
            w.add_tensor(name, x)
        elif qtype == Q.F16:
            w.add_tensor(name, x.astype(np.float16))
        else:
            w.add_tensor(name, gguf.quantize(x, qtype), raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    # Read it back with gguf-py: the sidecar holds what the reference reader sees.
    r = gguf.GGUFReader(str(path))

    def decode_array(parts, i: int):
        """Decodes an ARRAY payload from gguf-py's raw field parts (its contents() flattens nested arrays)."""
        etype = V(int(parts[i][0]))
        n = int(parts[i + 1][0])
        i += 2
        items, inner_types = [], []
        for _ in range(n):
            if etype == V.ARRAY:
                inner_types.append(V(int(parts[i][0])).name)
                v, _, i = decode_array(parts, i)
            elif etype == V.STRING:
                v = bytes(parts[i + 1]).decode("utf-8")
                i += 2
            else:
                v = parts[i][0].item()
                i += 1
            items.append(v)
        return items, inner_types, i

    def field_json(f) -> dict:
        t = f.types[0]
        entry: dict = {"key": f.name, "type": t.name}
        if t == V.ARRAY:
            entry["elem_type"] = f.types[1].name
            items, inner_types, _ = decode_array(f.parts, 3)  # parts: key length, key, type, then the payload
            entry["value"] = items
            if inner_types:
                entry["inner_elem_types"] = inner_types
        else:
            entry["value"] = f.contents()
        return entry

    meta = [field_json(f) for f in r.fields.values()]
    align = r.alignment
    data_offset = r.data_offset
    out_tensors = []
    for t in r.tensors:
        x, qtype = tensors[t.name]
        raw = np.asarray(t.data).tobytes()
        deq = gguf.quants.dequantize(np.frombuffer(raw, dtype=np.uint8).reshape(t.data.shape) if qtype not in (Q.F32, Q.F16)
                                     else np.asarray(t.data), qtype)
        assert int(t.tensor_type) == int(qtype), (t.name, t.tensor_type, qtype)
        out_tensors.append({
            "name": t.name,
            "type": int(t.tensor_type),
            "type_name": Q(t.tensor_type).name,
            "ne": [int(d) for d in t.shape],
            "shape": [int(d) for d in x.shape],
            "offset": int(t.data_offset) - data_offset,
            "bytes": len(raw),
            "raw_hex": raw.hex(),
            "source": [float(v) for v in x.reshape(-1)],
            "dequantized": [float(v) for v in np.asarray(deq, dtype=np.float32).reshape(-1)],
        })
    sidecar = {
        "file": "small.gguf",
        "made_by": f"tools/make_gguf_fixture.py with gguf-py {importlib.metadata.version('gguf')}",
        "version": int(r.fields["GGUF.version"].contents()),
        "alignment": int(align),
        "data_offset": int(data_offset),
        "file_bytes": path.stat().st_size,
        "metadata": [m for m in meta if not m["key"].startswith("GGUF.")],
        "tensors": out_tensors,
    }
    (out_dir / "small.json").write_text(json.dumps(sidecar, indent=1) + "\n")
    print(f"wrote {path} ({path.stat().st_size} bytes) and {out_dir / 'small.json'}")


if __name__ == "__main__":
    main()
