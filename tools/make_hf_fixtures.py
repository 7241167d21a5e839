#!/usr/bin/env python3
"""Write tests/fixtures/hf/: tiny random-weight Hugging Face models made by transformers itself, with the logits and
greedy continuations transformers computes for them. tests/model/hf_convert_test.cpp imports each folder with
stretch's `model_from_hf` and requires the same logits (within 1e-4 of the largest logit) and the same greedy tokens.

Regenerate (from the repository root; PyPI's torch and transformers, CPU only, nothing is downloaded):

    python3 -m pip install torch transformers tokenizers safetensors
    python3 tools/make_hf_fixtures.py                 # writes tests/fixtures/hf/

Layout:
    tests/fixtures/hf/<case>/            a save_pretrained folder (config.json, safetensors, tokenizer files)
    tests/fixtures/hf/rope/<name>.json   config.json variants of the `llama_rope` model: every rope_scaling type
    tests/fixtures/hf/expected.safetensors
        <case>.tokens   I32 (T)       the input ids (the same random ids for every case)
        <case>.rows     I32 (R)       the positions whose logits are kept: 3, 7, 11, ... and T - 1
        <case>.logits   F32 (R, V)    transformers' logits at those positions (float32, eager attention)
        <case>.greedy   I32 (G)       greedy continuation of the first P ids (model.generate, do_sample=False)
        rope.<name>.logits / .greedy  the same for the llama_rope weights under rope/<name>.json
    metadata "cases": JSON {case: {"family", "dtype", "T", "prompt", "greedy"}}

Cases: llama_gqa (BF16, sharded, untied, GQA), llama_tied (F16, tied, MHA), mistral (sliding window 16, at
T = 48), qwen2 (q/k/v biases), gpt2 (learned positions, Conv1D), gpt2_gelu_noprefix (exact GELU; tensor names
without "transformer." as older files have them), mpt (6 heads: the non-power-of-two slopes), bloom (6 heads,
embedding LayerNorm, per-head fused qkv). The rope variants run at T = 96 past original_max_position_embeddings
= 32 (max_position_embeddings 128): default, linear, dynamic, yarn (plain; with mscale / mscale_all_dim; with
truncate false and explicit beta_fast / beta_slow / attention_factor), llama3, longrope (short and long factors),
in transformers 5's rope_parameters form and the older rope_scaling / rope_theta form. Greedy continuations are
not recorded for dynamic and longrope (transformers changes their frequencies as the cache grows, while a key/value
cache keeps keys rotated once: docs/HF.md).

Deterministic for a given torch / transformers version (seeded weights and ids).
"""
import argparse
import copy
import json
import os
import shutil
import struct
import sys

import torch
import transformers
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer, models, pre_tokenizers, decoders, trainers

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(REPO, "tests", "fixtures", "hf")
T, PROMPT, GREEDY = 64, 12, 32
V = 288


def tokenizer():
    """A ByteLevel BPE of V tokens trained on a generated text (every model here uses it)."""
    words = ["the", "pass", "key", "is", "remember", "grass", "green", "sky", "blue", "sun", "yellow", "there",
             "and", "back", "again", "long", "context", "train", "short", "test"]
    text = [" ".join(words[(i * 7 + j * 3) % len(words)] for j in range(12)) for i in range(200)]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=V, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(text, trainer)
    assert tok.get_vocab_size() == V, tok.get_vocab_size()
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>",
                                                eos_token="<|endoftext|>")


def configs():
    eos = 0
    common = dict(vocab_size=V, bos_token_id=eos, eos_token_id=eos)
    llama = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                 max_position_embeddings=128, rms_norm_eps=1e-5, **common)
    return {
        "llama_gqa": (transformers.LlamaConfig(num_key_value_heads=2, tie_word_embeddings=False, **llama),
                      torch.bfloat16, "20KB"),
        "llama_tied": (transformers.LlamaConfig(num_key_value_heads=4, tie_word_embeddings=True, rope_theta=500000.0,
                                                **llama), torch.float16, None),
        "mistral": (transformers.MistralConfig(num_key_value_heads=2, sliding_window=16, tie_word_embeddings=False,
                                               **llama), torch.float32, None),
        "qwen2": (transformers.Qwen2Config(num_key_value_heads=2, tie_word_embeddings=False, use_sliding_window=False,
                                           **llama), torch.float32, None),
        "gpt2": (transformers.GPT2Config(n_embd=32, n_layer=2, n_head=4, n_positions=96, **common),
                 torch.float16, None),
        "gpt2_gelu_noprefix": (transformers.GPT2Config(n_embd=32, n_layer=2, n_head=4, n_positions=96, n_inner=48,
                                                       activation_function="gelu", tie_word_embeddings=False, **common),
                               torch.float32, None),
        "mpt": (transformers.MptConfig(d_model=48, n_heads=6, n_layers=2, max_seq_len=96, **common),
                torch.float16, None),
        "bloom": (transformers.BloomConfig(hidden_size=48, n_head=6, n_layer=2, **common), torch.bfloat16, None),
    }


ROPE_BASE_MODEL = dict(hidden_size=64, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                       num_key_value_heads=2, max_position_embeddings=128, rms_norm_eps=1e-5, vocab_size=V,
                       bos_token_id=0, eos_token_id=0, tie_word_embeddings=False)
ORIG = 32
LONG = [1.0 + 0.25 * i for i in range(8)]   # head_dim 16: 8 factors
SHORT = [1.0 + 0.05 * i for i in range(8)]
ROPE_VARIANTS = {
    # name: (rope dict, form) with form "v5" (rope_parameters) or "v4" (rope_theta + rope_scaling)
    "default": ({"rope_type": "default", "rope_theta": 10000.0}, "v5"),
    "linear": ({"rope_type": "linear", "factor": 4.0, "rope_theta": 10000.0}, "v5"),
    "linear_v4": ({"type": "linear", "factor": 4.0}, "v4"),
    # dynamic scales from max_position_embeddings on: this variant sets it to 32, so T = 96 is past it
    "dynamic": ({"rope_type": "dynamic", "factor": 2.0, "rope_theta": 10000.0}, "v5"),
    "yarn": ({"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": ORIG, "rope_theta": 10000.0},
             "v5"),
    "yarn_mscale": ({"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": ORIG,
                     "mscale": 0.707, "mscale_all_dim": 1.0, "rope_theta": 10000.0}, "v5"),
    "yarn_explicit": ({"rope_type": "yarn", "factor": 3.0, "original_max_position_embeddings": ORIG,
                       "beta_fast": 16.0, "beta_slow": 2.0, "attention_factor": 1.2, "truncate": False,
                       "rope_theta": 10000.0}, "v5"),
    "yarn_v4": ({"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": ORIG}, "v4"),
    "llama3": ({"rope_type": "llama3", "factor": 4.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                "original_max_position_embeddings": ORIG, "rope_theta": 10000.0}, "v5"),
    "longrope": ({"rope_type": "longrope", "short_factor": SHORT, "long_factor": LONG,
                  "original_max_position_embeddings": ORIG, "rope_theta": 10000.0}, "v5"),
}
NO_GREEDY = {"dynamic", "longrope"}


def rope_config(name):
    rope, form = ROPE_VARIANTS[name]
    cfg = dict(ROPE_BASE_MODEL)
    if name == "dynamic":
        cfg["max_position_embeddings"] = ORIG
    if form == "v5":
        cfg["rope_parameters"] = copy.deepcopy(rope)
    else:
        cfg["rope_theta"] = 10000.0
        cfg["rope_scaling"] = copy.deepcopy(rope)
    return cfg


def randomize(model, gen):
    """Weights N(0, 0.3) (norm weights 1 + 0.1 N(0,1)) so attention is far from uniform and every tensor matters."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen)
            if "norm" in name or "ln_" in name or name.endswith("layernorm.weight"):
                p.copy_(1.0 + 0.1 * noise if name.endswith("weight") else 0.1 * noise)
            else:
                p.copy_(0.3 * noise)


def rows(n):
    return list(range(3, n, 4)) + ([n - 1] if (n - 1) % 4 != 3 else [])


def run(model, ids, greedy=True):
    model.eval()
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].float()[rows(len(ids))]
        out = None
        if greedy:
            g = model.generate(torch.tensor([ids[:PROMPT]]), max_new_tokens=GREEDY, do_sample=False,
                               pad_token_id=0, eos_token_id=None)
            out = g[0, PROMPT:].to(torch.int32)
    return logits.contiguous(), out


def strip_prefix(folder, prefix="transformer."):
    """Rewrite model.safetensors with names lacking `prefix` (as GPT-2 files saved by older tools are)."""
    path = os.path.join(folder, "model.safetensors")
    sd = load_file(path)
    save_file({k[len(prefix):] if k.startswith(prefix) else k: v for k, v in sd.items()}, path,
              metadata={"format": "pt"})


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=OUT)
    args = ap.parse_args()
    torch.set_num_threads(1)
    shutil.rmtree(args.out, ignore_errors=True)
    os.makedirs(os.path.join(args.out, "rope"))
    tok = tokenizer()
    gen = torch.Generator().manual_seed(2026)
    ids = torch.randint(1, V, (T,), generator=gen).tolist()
    expected, cases = {}, {}
    for i, (name, (cfg, dtype, shard)) in enumerate(configs().items()):
        cfg._attn_implementation = "eager"
        model = transformers.AutoModelForCausalLM.from_config(cfg)
        randomize(model, torch.Generator().manual_seed(100 + i))
        folder = os.path.join(args.out, name)
        model.to(dtype)
        kw = {"max_shard_size": shard} if shard else {}
        model.save_pretrained(folder, **kw)
        tok.save_pretrained(folder)
        if name.endswith("noprefix"):
            strip_prefix(folder)
        # the reference: the model as saved, reloaded by transformers and run in float32
        ref = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32,
                                                                attn_implementation="eager")
        n = 48 if name == "mistral" else T
        logits, greedy = run(ref, ids[:n])
        expected[f"{name}.tokens"] = torch.tensor(ids[:n], dtype=torch.int32)
        expected[f"{name}.rows"] = torch.tensor(rows(n), dtype=torch.int32)
        expected[f"{name}.logits"] = logits
        expected[f"{name}.greedy"] = greedy
        cases[name] = {"family": type(ref).__name__, "dtype": str(dtype).replace("torch.", ""), "T": n,
                       "prompt": PROMPT, "greedy": GREEDY}
        print(f"{name:20s} {type(ref).__name__:20s} {dtype}  max|logit| {logits.abs().max():.3f}")
    # the rope model: one set of weights (saved once, as llama_rope/), one config per scaling type
    base = transformers.LlamaConfig(**ROPE_BASE_MODEL)
    model = transformers.LlamaForCausalLM(base)
    randomize(model, torch.Generator().manual_seed(300))
    model.to(torch.bfloat16)
    folder = os.path.join(args.out, "llama_rope")
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    weights = {k: v.float() for k, v in load_file(os.path.join(folder, "model.safetensors")).items()}
    n = 96
    expected["rope.tokens"] = torch.tensor(ids + ids[:n - T], dtype=torch.int32)
    expected["rope.rows"] = torch.tensor(rows(n), dtype=torch.int32)
    for name in ROPE_VARIANTS:
        cfg_dict = rope_config(name)
        with open(os.path.join(args.out, "rope", f"{name}.json"), "w") as f:
            json.dump({"architectures": ["LlamaForCausalLM"], "model_type": "llama", **cfg_dict}, f, indent=2,
                      sort_keys=True)
        cfg = transformers.LlamaConfig(**cfg_dict)
        cfg._attn_implementation = "eager"
        m = transformers.LlamaForCausalLM(cfg)
        m.load_state_dict(weights, strict=False)
        m.tie_weights()
        logits, greedy = run(m, expected["rope.tokens"].tolist(), greedy=name not in NO_GREEDY)
        expected[f"rope.{name}.logits"] = logits
        if greedy is not None:
            expected[f"rope.{name}.greedy"] = greedy
        print(f"rope {name:16s} max|logit| {logits.abs().max():.3f}")
    meta = {"cases": json.dumps(cases, sort_keys=True), "T_rope": str(n),
            "generator": "tools/make_hf_fixtures.py", "transformers": transformers.__version__,
            "torch": torch.__version__}
    save_file(expected, os.path.join(args.out, "expected.safetensors"), metadata=meta)
    total = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(args.out) for f in fs)
    print(f"wrote {args.out}: {total} bytes")


if __name__ == "__main__":
    main()
