#!/usr/bin/env python3
"""Write tests/fixtures/rope_scaling/hf_rope.json: RoPE scaling tables from Hugging Face transformers.

The C++ test tests/position/test_rope_scaling.cpp (RopeScalingFixture.*) reads the file and requires
stretch::rope_tables to agree with every case within 1e-6 relative.

Each case runs one of HF's RoPE init functions (modeling_rope_utils.ROPE_INIT_FUNCTIONS: "linear", "dynamic",
"yarn"; and the model's default init for "default") on a minimal LlamaConfig with
max_position_embeddings = L_train, and records the inputs, the inverse frequencies and the attention factor.
HF has no static NTK-aware type: the "ntk" cases are HF's default init at base' = base * s^(d/(d-2)), the
formula stretch uses. Cases map to stretch types as: default -> none, linear -> linear, dynamic -> dynamic-ntk,
yarn -> yarn, ntk -> ntk.

Regenerate (from the repository root; needs torch and transformers, CPU is enough):

    pip install torch transformers
    python3 tools/make_rope_scaling_fixture.py            # writes tests/fixtures/rope_scaling/hf_rope.json
    python3 tools/make_rope_scaling_fixture.py --out PATH

The output is deterministic for a given transformers / torch version (no randomness, sorted keys, floats
printed with repr, i.e. the shortest text that reads back as the same double). HF computes the
frequencies in float32; the values written are those float32 numbers widened to double.
"""

import argparse
import json
import math
import os
import sys

import torch
import transformers
from transformers import LlamaConfig
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

# (hf_type, head_dim, base, L_train, factor, seq_len); seq_len only matters for "dynamic".
CASES = [
    *[("default", 8, 10000.0, 512, 1.0, None)],
    *[(t, 8, 10000.0, 512, s, None) for t in ("linear", "yarn", "ntk") for s in (2.0, 4.0, 8.0)],
    ("default", 64, 10000.0, 2048, 1.0, None),
    *[(t, 64, 10000.0, 2048, 4.0, None) for t in ("linear", "yarn", "ntk")],
    *[("dynamic", 8, 10000.0, 512, s, n) for s in (2.0, 4.0) for n in (512, 1024, 4096)],
    ("dynamic", 64, 10000.0, 2048, 4.0, 8192),
    ("yarn", 128, 10000.0, 4096, 4.0, None),
    ("yarn", 128, 500000.0, 8192, 8.0, None),
]

STRETCH_TYPE = {"default": "none", "linear": "linear", "dynamic": "dynamic-ntk", "yarn": "yarn", "ntk": "ntk"}


def make_config(head_dim, base, L_train, rope_parameters):
    n_heads = 2
    params = {"rope_theta": base, **rope_parameters}
    kwargs = dict(
        hidden_size=head_dim * n_heads,
        num_attention_heads=n_heads,
        num_key_value_heads=n_heads,
        head_dim=head_dim,
        max_position_embeddings=L_train,
        num_hidden_layers=1,
        intermediate_size=4,
        vocab_size=8,
    )
    try:  # transformers >= 5: rope_parameters holds the base and the scaling
        return LlamaConfig(rope_parameters=params, **kwargs)
    except TypeError:  # older: rope_theta + rope_scaling
        scaling = dict(rope_parameters)
        return LlamaConfig(rope_theta=base, rope_scaling=scaling if scaling.get("rope_type") != "default" else None,
                           **kwargs)


def default_init(config):
    if "default" in ROPE_INIT_FUNCTIONS:  # transformers < 5
        return ROPE_INIT_FUNCTIONS["default"](config, "cpu")
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding
    return LlamaRotaryEmbedding.compute_default_rope_parameters(config)


def run_case(hf_type, head_dim, base, L_train, factor, seq_len):
    if hf_type in ("default", "ntk"):
        b = base if hf_type == "default" else base * factor ** (head_dim / (head_dim - 2))
        inv_freq, attn = default_init(make_config(head_dim, b, L_train, {"rope_type": "default"}))
    else:
        params = {"rope_type": hf_type, "factor": factor}
        if hf_type == "yarn":
            params.update({"beta_fast": 32.0, "beta_slow": 1.0, "original_max_position_embeddings": L_train})
        config = make_config(head_dim, base, L_train, params)
        fn = ROPE_INIT_FUNCTIONS[hf_type]
        inv_freq, attn = fn(config, "cpu", seq_len) if seq_len is not None else fn(config, "cpu")
    assert inv_freq.dtype == torch.float32 and inv_freq.shape == (head_dim // 2,), (inv_freq.dtype, inv_freq.shape)
    case = {
        "hf_type": hf_type,
        "type": STRETCH_TYPE[hf_type],
        "head_dim": head_dim,
        "base": base,
        "L_train": L_train,
        "factor": factor,
        "seq_len": seq_len if seq_len is not None else L_train,
        "inv_freq": [float(x) for x in inv_freq.tolist()],
        "attention_factor": float(attn if attn is not None else 1.0),
    }
    if hf_type == "yarn":
        case.update({"beta_fast": 32.0, "beta_slow": 1.0})
    for x in case["inv_freq"] + [case["attention_factor"]]:
        assert math.isfinite(x)
    return case


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    default_out = os.path.join(here, "..", "tests", "fixtures", "rope_scaling", "hf_rope.json")
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=default_out, help="output path (default: %(default)s)")
    args = ap.parse_args()

    doc = {
        "generator": "tools/make_rope_scaling_fixture.py",
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__.split("+")[0],
        "note": "inv_freq and attention_factor from HF modeling_rope_utils (float32 tables widened to double); "
                "ntk = HF default init at base * factor^(d/(d-2))",
        "cases": [run_case(*c) for c in CASES],
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    tmp = args.out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(doc, f, indent=1, sort_keys=True)
        f.write("\n")
    os.replace(tmp, args.out)
    print(f"wrote {len(doc['cases'])} cases to {os.path.relpath(args.out)} (transformers {transformers.__version__})",
          file=sys.stderr)


if __name__ == "__main__":
    main()
