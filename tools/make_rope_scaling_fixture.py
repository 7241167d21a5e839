#!/usr/bin/env python3
"""Write tests/fixtures/rope_scaling/hf_rope.json: RoPE scaling tables from Hugging Face transformers.

The C++ test tests/position/test_rope_scaling.cpp (RopeScalingFixture.*) reads the file and requires
stretch::rope_tables (and, for the whole-config cases, stretch::rope_from_hf_config) to agree with every case
within 1e-6 relative.

Three groups of cases:
  "cases" (the first set, kept as it was): one HF init function per case, described by hf_type / factor / betas.
  "cases" with a "stretch" object (appended after the first set): the newer types and parameters (llama3,
      longrope below and above the original length, yarn with mscale / mscale_all_dim / truncate=false / an
      explicit attention_factor / original_max_position_embeddings != max_position_embeddings, dynamic at several
      lengths). "stretch" is the same scaling written in stretch's RopeScaling JSON form (the input, spelled
      for the C++ side); L_train is max_position_embeddings.
  "config_cases": whole config.json dicts (4.x rope_scaling with "type" and with "rope_type", 5.x
      rope_parameters, Phi-3's top-level original_max_position_embeddings, null / absent scaling), loaded with
      the model's own config class (LlamaConfig / Phi3Config .from_dict) and run through the model's rotary
      embedding module (LlamaRotaryEmbedding / Phi3RotaryEmbedding, a fresh one per length, called with position
      ids whose maximum is seq_len - 1, so dynamic and longrope pick their tables as in generation); the inv_freq
      buffer and attention_scaling are recorded per seq_len.

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
import copy
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


# ---- newer types and parameters, one HF init function per case ----
# (name, head_dim, base, max_position_embeddings, HF rope parameters (without rope_theta), seq_lens,
#  stretch's RopeScaling JSON for the same scaling)


def dyadic_factors(n, step, power=1.0):
    """n factors 1 + step * i^power rounded to multiples of 1/1024 (exact in float32, so HF's float32 copy is
    the same number)."""
    return [round((1.0 + step * i ** power) * 1024) / 1024 for i in range(n)]


def longrope_case(name, head_dim, base, M, orig, seq_lens, factor=None, attention_factor=None):
    short = dyadic_factors(head_dim // 2, 0.02)
    long = dyadic_factors(head_dim // 2, 0.5, 1.25)
    hf = {"rope_type": "longrope", "short_factor": short, "long_factor": long,
          "original_max_position_embeddings": orig}
    st = {"type": "longrope", "factor": factor if factor is not None else M / orig,
          "original_context": orig if orig != M else 0, "short_factor": short, "long_factor": long}
    if factor is not None:
        hf["factor"] = factor
    if attention_factor is not None:
        hf["attention_factor"] = attention_factor
        st["attention_factor"] = attention_factor
    return (name, head_dim, base, M, hf, seq_lens, st)


def yarn_case(name, head_dim, base, M, orig, factor, seq_lens, **extra):
    hf = {"rope_type": "yarn", "factor": factor, "original_max_position_embeddings": orig, **extra}
    st = {"type": "yarn", "factor": factor, "original_context": orig if orig != M else 0,
          "beta_fast": extra.get("beta_fast", 32.0), "beta_slow": extra.get("beta_slow", 1.0)}
    for k in ("attention_factor", "mscale", "mscale_all_dim", "truncate"):
        if k in extra:
            st[k] = extra[k]
    return (name, head_dim, base, M, hf, seq_lens, st)


def llama3_case(name, head_dim, base, M, orig, factor, low, high, seq_lens):
    hf = {"rope_type": "llama3", "factor": factor, "low_freq_factor": low, "high_freq_factor": high,
          "original_max_position_embeddings": orig}
    st = {"type": "llama3", "factor": factor, "original_context": orig if orig != M else 0,
          "low_freq_factor": low, "high_freq_factor": high}
    return (name, head_dim, base, M, hf, seq_lens, st)


def dynamic_case(name, head_dim, base, M, factor, seq_lens):
    return (name, head_dim, base, M, {"rope_type": "dynamic", "factor": factor}, seq_lens,
            {"type": "dynamic-ntk", "factor": factor})


NEW_CASES = [
    llama3_case("llama3 Llama-3.1", 128, 500000.0, 131072, 8192, 8.0, 1.0, 4.0, [8192]),
    llama3_case("llama3 small", 64, 10000.0, 2048, 512, 4.0, 1.0, 4.0, [2048]),
    llama3_case("llama3 low 2 high 8", 64, 10000.0, 2048, 512, 4.0, 2.0, 8.0, [2048]),
    llama3_case("llama3 orig = max", 16, 10000.0, 512, 512, 8.0, 1.0, 32.0, [512]),
    longrope_case("longrope derived factor", 8, 10000.0, 2048, 512, [1, 512, 513, 2048]),
    longrope_case("longrope d96", 96, 10000.0, 131072, 4096, [4096, 4097, 131072]),
    longrope_case("longrope explicit", 16, 10000.0, 4096, 256, [256, 257], factor=16.0, attention_factor=1.1),
    longrope_case("longrope factor 1", 8, 10000.0, 512, 512, [512, 513]),
    yarn_case("yarn orig < max", 64, 10000.0, 8192, 2048, 4.0, [8192]),
    yarn_case("yarn explicit factor != max/orig", 64, 10000.0, 8192, 2048, 2.5, [8192]),
    yarn_case("yarn mscale equal", 64, 10000.0, 16384, 4096, 4.0, [16384], mscale=0.707, mscale_all_dim=0.707),
    yarn_case("yarn mscale DeepSeek", 64, 10000.0, 163840, 4096, 40.0, [163840], mscale=1.0, mscale_all_dim=0.8),
    yarn_case("yarn truncate false", 64, 150000.0, 131072, 4096, 32.0, [131072], truncate=False),
    yarn_case("yarn truncate false small", 8, 10000.0, 2048, 512, 4.0, [2048], truncate=False),
    yarn_case("yarn attention_factor", 32, 10000.0, 4096, 1024, 4.0, [4096], attention_factor=1.25),
    yarn_case("yarn betas", 64, 10000.0, 8192, 2048, 4.0, [8192], beta_fast=16.0, beta_slow=2.0),
    dynamic_case("dynamic d64", 64, 10000.0, 2048, 4.0, [1, 2048, 2049, 3000, 16384]),
    dynamic_case("dynamic d16 factor 1", 16, 10000.0, 256, 1.0, [256, 1000]),
]


def run_new_case(name, head_dim, base, M, params, seq_len, stretch):
    config = make_config(head_dim, base, M, copy.deepcopy(params))
    fn = ROPE_INIT_FUNCTIONS[params["rope_type"]]
    inv_freq, attn = fn(config, "cpu", seq_len)
    assert inv_freq.dtype == torch.float32 and inv_freq.shape == (head_dim // 2,), (inv_freq.dtype, inv_freq.shape)
    case = {
        "name": name,
        "hf_type": params["rope_type"],
        "hf_params": params,
        "stretch": stretch,
        "type": stretch["type"],
        "head_dim": head_dim,
        "base": base,
        "L_train": M,
        "factor": stretch["factor"],
        "seq_len": seq_len,
        "inv_freq": [float(x) for x in inv_freq.tolist()],
        "attention_factor": float(attn if attn is not None else 1.0),
    }
    for x in case["inv_freq"] + [case["attention_factor"]]:
        assert math.isfinite(x)
    return case


# ---- whole config.json dicts through the model's config class and rotary embedding ----


def arch(hidden, heads, M):
    return {"hidden_size": hidden, "num_attention_heads": heads, "num_key_value_heads": heads,
            "num_hidden_layers": 1, "intermediate_size": 4, "vocab_size": 8, "max_position_embeddings": M}


PHI3_SHORT = dyadic_factors(48, 0.01)
PHI3_LONG = dyadic_factors(48, 0.25, 1.5)
LR_SHORT = dyadic_factors(8, 0.03)
LR_LONG = dyadic_factors(8, 1.0, 1.1)

# (name, model class, config.json dict, seq_lens, the stretch type it must map to)
CONFIG_CASES = [
    ("4.x type linear", "llama",
     {**arch(256, 4, 2048), "rope_theta": 10000.0, "rope_scaling": {"type": "linear", "factor": 4.0}},
     [2048], "linear"),
    ("4.x type dynamic", "llama",
     {**arch(64, 2, 512), "rope_theta": 10000.0, "rope_scaling": {"type": "dynamic", "factor": 2.0}},
     [256, 512, 513, 1024, 3000], "dynamic-ntk"),
    ("4.x rope_type yarn, Qwen-style orig = max", "llama",
     {**arch(256, 4, 32768), "rope_theta": 1000000.0,
      "rope_scaling": {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768}},
     [32768], "yarn"),
    ("4.x rope_type yarn, orig < max", "llama",
     {**arch(256, 4, 16384), "rope_theta": 1000000.0,
      "rope_scaling": {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 4096}},
     [16384], "yarn"),
    ("4.x type yarn, no orig, attention_factor and betas", "llama",
     {**arch(128, 4, 1024), "rope_theta": 10000.0,
      "rope_scaling": {"type": "yarn", "factor": 8.0, "attention_factor": 1.25, "beta_fast": 16, "beta_slow": 2}},
     [1024], "yarn"),
    ("4.x yarn factor null", "llama",
     {**arch(128, 4, 4096), "rope_theta": 10000.0,
      "rope_scaling": {"rope_type": "yarn", "factor": None, "original_max_position_embeddings": 1024}},
     [4096], "yarn"),
    ("4.x yarn, top-level original_max_position_embeddings wins", "llama",
     {**arch(128, 4, 4096), "rope_theta": 10000.0, "original_max_position_embeddings": 1024,
      "rope_scaling": {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 2048}},
     [4096], "yarn"),
    ("4.x llama3, Llama-3.1", "llama",
     {**arch(512, 4, 131072), "rope_theta": 500000.0,
      "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                       "original_max_position_embeddings": 8192}},
     [8192, 131072], "llama3"),
    ("5.x rope_parameters llama3", "llama",
     {**arch(256, 4, 8192),
      "rope_parameters": {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 4.0, "low_freq_factor": 1.0,
                          "high_freq_factor": 4.0, "original_max_position_embeddings": 2048}},
     [8192], "llama3"),
    ("5.x rope_parameters yarn mscale DeepSeek", "llama",
     {**arch(256, 4, 163840),
      "rope_parameters": {"rope_type": "yarn", "rope_theta": 10000.0, "factor": 40.0, "beta_fast": 32,
                          "beta_slow": 1, "mscale": 1.0, "mscale_all_dim": 0.8,
                          "original_max_position_embeddings": 4096}},
     [163840], "yarn"),
    ("5.x rope_parameters yarn truncate false, gpt-oss-style", "llama",
     {**arch(256, 4, 131072),
      "rope_parameters": {"rope_type": "yarn", "rope_theta": 150000.0, "factor": 32.0, "beta_fast": 32.0,
                          "beta_slow": 1.0, "truncate": False, "original_max_position_embeddings": 4096}},
     [131072], "yarn"),
    ("5.x rope_parameters longrope explicit factor and attention_factor", "llama",
     {**arch(64, 4, 4096),
      "rope_parameters": {"rope_type": "longrope", "rope_theta": 10000.0, "factor": 16.0, "attention_factor": 1.1,
                          "short_factor": LR_SHORT, "long_factor": LR_LONG, "original_max_position_embeddings": 256}},
     [1, 256, 257, 4096], "longrope"),
    ("5.x rope_parameters default", "llama",
     {**arch(128, 2, 2048), "rope_parameters": {"rope_type": "default", "rope_theta": 500000.0}},
     [2048], "none"),
    ("5.x rope_parameters proportional", "llama",
     {**arch(64, 2, 512), "rope_parameters": {"rope_type": "proportional", "factor": 2.0}},
     [512], "linear"),
    ("Phi-3 longrope, top-level original_max_position_embeddings", "phi3",
     {**arch(384, 4, 131072), "rope_theta": 10000.0, "original_max_position_embeddings": 4096,
      "rope_scaling": {"type": "longrope", "short_factor": PHI3_SHORT, "long_factor": PHI3_LONG}},
     [4096, 4097, 131072], "longrope"),
    ("rope_scaling null", "llama",
     {**arch(256, 4, 2048), "rope_theta": 500000.0, "rope_scaling": None}, [2048], "none"),
    ("no rope keys", "llama", {**arch(64, 2, 512)}, [512], "none"),
]


def run_config_case(name, model, cfg, seq_lens, stretch_type):
    if model == "llama":
        from transformers import LlamaConfig as Config
        from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding as Rotary
    else:
        from transformers import Phi3Config as Config
        from transformers.models.phi3.modeling_phi3 import Phi3RotaryEmbedding as Rotary
    config = Config.from_dict(copy.deepcopy(cfg))
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    tables = []
    for T in seq_lens:
        rotary = Rotary(config)  # fresh: dynamic keeps the largest length it has seen
        x = torch.zeros(1, 1, config.hidden_size)
        rotary(x, torch.tensor([[T - 1]]))
        inv_freq = rotary.inv_freq
        assert inv_freq.dtype == torch.float32 and inv_freq.shape == (head_dim // 2,), (name, inv_freq.shape)
        tables.append({"seq_len": T, "inv_freq": [float(v) for v in inv_freq.tolist()],
                       "attention_factor": float(rotary.attention_scaling)})
    return {"name": name, "model": model, "config": cfg, "max_position_embeddings": config.max_position_embeddings,
            "head_dim": head_dim, "stretch_type": stretch_type, "tables": tables}


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
        "cases": [run_case(*c) for c in CASES] +
                 [run_new_case(n, d, b, M, p, T, st) for (n, d, b, M, p, Ts, st) in NEW_CASES for T in Ts],
        "config_cases": [run_config_case(*c) for c in CONFIG_CASES],
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    tmp = args.out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(doc, f, indent=1, sort_keys=True)
        f.write("\n")
    os.replace(tmp, args.out)
    print(f"wrote {len(doc['cases'])} cases and {len(doc['config_cases'])} config cases to {os.path.relpath(args.out)} (transformers {transformers.__version__})",
          file=sys.stderr)


if __name__ == "__main__":
    main()
