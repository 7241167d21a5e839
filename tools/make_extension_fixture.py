#!/usr/bin/env python3
"""Write tests/fixtures/extension/llama_extension.safetensors: the logits of a tiny LLaMA-family model under
fine-tuning-free context extension, computed in float64 from the papers' formulas (not from stretch's C++):

  self-extend (Jin et al. 2024, "LLM Maybe LongLM", arXiv 2401.01325), group G, neighbour window w:
      attention scores from two sets merged per (query i, key j):
        neighbour  (i - j < w):  q rotated at i,                        k rotated at j
        grouped    (i - j >= w): q rotated at i // G + w - w // G,      k rotated at j // G
  rerope (Su 2023), window w:   beyond the window q rotated at w and k at 0: the relative position min(i - j, w)
  leaky rerope, window w, k:    beyond it q at i / k + w - w / k, k at j / k: relative w + (i - j - w) / k

    python3 tools/make_extension_fixture.py          (PyPI's torch; float64, single thread, seeded)

The model is tools/torch_llama.py's (RMSNorm, SwiGLU, grouped-query attention, RoPE on interleaved pairs); only
the attention is written out here, as the two masked score sets of the formulas above, over the whole T x T
matrix. Config: V 61, L 2, C 32, NH 4, NKV 2 (hd 8), F 40, block_size 48, untied; T 40 tokens at positions
0 .. 39. Parameters drawn in float32 (weights 0.2 N(0,1), RMSNorm weights 1 + 0.1 N(0,1)), all compute in float64
on those values.

Tensors: param.<name> F32 (stretch's names), tokens I32 (T), logits.<setting> F64 (T, V) for the settings
    plain            no extension
    self_extend_4_8  G 4, w 8          self_extend_3_5  G 3, w 5 (w not a multiple of G)
    rerope_8         w 8               leaky_rerope_8_4  w 8, k 4
Metadata: "config" (JSON, the stretch config keys), "settings" (JSON: setting -> {type, group, window, leaky}).

It also writes tests/fixtures/extension/gpt_extension.safetensors: the same settings on the bias methods, a GPT
(tools/torch_gpt.py: LayerNorm, tanh GELU, biases) with ALiBi and one with T5's bucketed bias. Their bias depends on
the relative position alone, so the extension is the bias at the remapped relative position of each far pair:
      rel(i, j) = i - j                     if i - j < w
                = fq(i) - fk(j)             otherwise (fq, fk: the far positions above)
      alibi: -m_h rel(i, j)                 t5: table[bucket(floor(rel(i, j))), h]
Config: V 61, L 2, C 32, NH 4, mlp 40, block_size 48, T 40 as above; weights 0.2 N(0,1), biases 0.1 N(0,1),
LayerNorm weights 1 + 0.1 N(0,1), the T5 table 0.5 N(0,1), float32 values, float64 compute.
Tensors: <method>.param.<name> F32, tokens I32 (T), <method>.logits.<setting> F64 (T, V), method alibi or t5.
Metadata: "config.<method>" (JSON) and "settings".
"""
import json
import math
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from torch_llama import Llama, LlamaConfig, rope_inv_freq  # noqa: E402
from make_parity_fixtures import write_safetensors  # noqa: E402
from torch_gpt import GPT, GPTConfig, t5_bucket_tensor  # noqa: E402

REPO = os.path.dirname(HERE)
OUT = os.path.join(REPO, "tests", "fixtures", "extension", "llama_extension.safetensors")
OUT_GPT = os.path.join(REPO, "tests", "fixtures", "extension", "gpt_extension.safetensors")
CFG = dict(vocab_size=61, n_layer=2, n_head=4, n_kv_head=2, n_embd=32, mlp_hidden=40, block_size=48,
           rope_base=10000.0, norm_eps=1e-5, tie_embeddings=False)
T = 40
SETTINGS = {
    "plain": None,
    "self_extend_4_8": dict(type="self-extend", group=4, window=8),
    "self_extend_3_5": dict(type="self-extend", group=3, window=5),
    "rerope_8": dict(type="rerope", window=8),
    "leaky_rerope_8_4": dict(type="rerope", window=8, leaky=4.0),
}


def far_positions(s, pos):
    """(far query positions, far key positions), float64, for positions pos (T,)."""
    p = pos.to(torch.float64)
    w = s["window"]
    if s["type"] == "self-extend":
        G = s["group"]
        return torch.floor(p / G) + w - (w // G), torch.floor(p / G)
    if s.get("leaky"):
        k = s["leaky"]
        return p / k + w - w / k, p / k
    return torch.full_like(p, float(w)), torch.zeros_like(p)


def rotate(x, positions, inv_freq):
    """x (T, H, hd): interleaved pairs (2i, 2i+1) rotated by positions[t] * inv_freq[i] (float64 angles)."""
    ang = positions[:, None] * inv_freq[None, :]
    c, s = torch.cos(ang)[:, None, :], torch.sin(ang)[:, None, :]
    x0, x1 = x[..., 0::2], x[..., 1::2]
    return torch.stack((x0 * c - x1 * s, x0 * s + x1 * c), dim=-1).flatten(-2)


@torch.no_grad()
def forward(model, tokens, setting):
    cfg = model.cfg
    C, NH, NKV, hd = cfg.n_embd, cfg.n_head, cfg.n_kv_head, cfg.head_dim
    KVD = NKV * hd
    inv = rope_inv_freq(hd, cfg.rope_base)
    pos = torch.arange(T, dtype=torch.float64)
    i = torch.arange(T)[:, None]
    j = torch.arange(T)[None, :]
    causal = j <= i
    x = model.tok_embeddings(tokens)
    for blk in model.layers:
        h = blk.attention_norm(x)
        qkv = blk.attention.wqkv(h)
        q = qkv[:, :C].reshape(T, NH, hd)
        k = qkv[:, C:C + KVD].reshape(T, NKV, hd).repeat_interleave(NH // NKV, dim=1)
        v = qkv[:, C + KVD:].reshape(T, NKV, hd).repeat_interleave(NH // NKV, dim=1)
        qn, kn = rotate(q, pos, inv), rotate(k, pos, inv)
        s = torch.einsum("ihd,jhd->hij", qn, kn) / math.sqrt(hd)
        if setting is not None:
            fq, fk = far_positions(setting, pos)
            sf = torch.einsum("ihd,jhd->hij", rotate(q, fq, inv), rotate(k, fk, inv)) / math.sqrt(hd)
            s = torch.where((i - j) < setting["window"], s, sf)
        s = s.masked_fill(~causal, float("-inf"))
        o = torch.einsum("hij,jhd->ihd", torch.softmax(s, dim=-1), v).reshape(T, C)
        x = x + blk.attention.wo(o)
        x = x + blk.feed_forward(blk.ffn_norm(x))
    return model.norm(x) @ model.output.weight.T


def relative(setting, T):
    """(T, T) float64 relative positions the bias methods see: i - j near, fq(i) - fk(j) far."""
    pos = torch.arange(T, dtype=torch.float64)
    rel = pos[:, None] - pos[None, :]
    if setting is None:
        return rel
    fq, fk = far_positions(setting, pos)
    return torch.where(rel < setting["window"], rel, fq[:, None] - fk[None, :])


@torch.no_grad()
def gpt_forward(model, tokens, setting):
    cfg = model.cfg
    NH = cfg.n_head
    rel = relative(setting, T)
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    if cfg.position == "alibi":
        bias = -model._alibi_slopes[:, None, None] * rel[None]                         # (NH, T, T)
    else:
        bucket = t5_bucket_tensor(torch.floor(rel).clamp(min=0).to(torch.long))       # (T, T)
        bias = model.t5_bias[bucket].permute(2, 0, 1)                                    # (NH, T, T)
    bias = bias.masked_fill(~causal, float("-inf"))
    x = model.wte[tokens] * cfg.embed_scale
    for block in model.h:
        x = block(x[None], bias.reshape(NH, T, T), None)[0]
    return model.ln_f(x) @ (model.wte if cfg.tie_embeddings else model.lm_head.weight).T


def gpt_fixture(g):
    tensors, meta = {}, {}
    tokens = torch.randint(0, CFG["vocab_size"], (T,), generator=g)
    tensors["tokens"] = tokens.to(torch.int32)
    for method in ("alibi", "t5"):
        cfg = GPTConfig(vocab_size=CFG["vocab_size"], n_layer=2, n_head=4, n_embd=32, mlp_hidden=40, block_size=48,
                        position=method)
        model = GPT(cfg)
        for name, p in model.named_parameters():
            if name == "t5_bias":
                v = 0.5 * torch.randn(p.shape, generator=g)
            elif name.endswith(("ln_1.weight", "ln_2.weight")) or name == "ln_f.weight":
                v = 1.0 + 0.1 * torch.randn(p.shape, generator=g)
            elif name.endswith(".bias"):
                v = 0.1 * torch.randn(p.shape, generator=g)
            else:
                v = 0.2 * torch.randn(p.shape, generator=g)
            tensors[f"{method}.param.{name}"] = v.to(torch.float32)
            p.data = v.to(torch.float32).to(torch.float64)
        model = model.double().eval()
        for name, setting in SETTINGS.items():
            tensors[f"{method}.logits.{name}"] = gpt_forward(model, tokens, setting)
        ref, _ = model(tokens[None])
        assert torch.allclose(ref[0], tensors[f"{method}.logits.plain"], atol=1e-12), f"{method}: plain differs"
        conf = dict(cfg.to_dict())
        conf.pop("dropout")
        meta[f"config.{method}"] = json.dumps(conf, sort_keys=True)
    meta["settings"] = json.dumps({k: v for k, v in SETTINGS.items() if v}, sort_keys=True)
    meta["generator"] = "tools/make_extension_fixture.py"
    write_safetensors(OUT_GPT, tensors, meta)
    for method in ("alibi", "t5"):
        for name in SETTINGS:
            d = (tensors[f"{method}.logits.{name}"] - tensors[f"{method}.logits.plain"]).abs().max().item()
            print(f"{method} {name}: max |logit - plain| = {d:.4f}")
    print(f"wrote {OUT_GPT}")


def main():
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(2024)
    cfg = LlamaConfig(**CFG)
    model = Llama(cfg)
    params = {}
    for name, p in model.named_parameters():
        if name.endswith("norm.weight"):
            v = 1.0 + 0.1 * torch.randn(p.shape, generator=g)
        else:
            v = 0.2 * torch.randn(p.shape, generator=g)
        params[name] = v.to(torch.float32)
        p.data = params[name].to(torch.float64)
    tokens = torch.randint(0, cfg.vocab_size, (T,), generator=g)
    tensors = {f"param.{n}": t for n, t in params.items()}
    tensors["tokens"] = tokens.to(torch.int32)
    for name, setting in SETTINGS.items():
        tensors[f"logits.{name}"] = forward(model, tokens, setting)
    # the plain setting is torch_llama's own forward (a check of the attention written out above)
    ref, _ = model(tokens[None])
    assert torch.allclose(ref[0], tensors["logits.plain"], atol=1e-12), "plain attention differs from torch_llama"
    config = {"arch": "llama", "vocab_size": cfg.vocab_size, "n_layer": cfg.n_layer, "n_head": cfg.n_head,
              "n_kv_head": cfg.n_kv_head, "n_embd": cfg.n_embd, "mlp_hidden": cfg.mlp_hidden,
              "block_size": cfg.block_size, "position": "rope", "bias": False, "tie_embeddings": cfg.tie_embeddings,
              "rope_base": cfg.rope_base, "norm_eps": cfg.norm_eps}
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    write_safetensors(OUT, tensors, {"config": json.dumps(config, sort_keys=True),
                                     "settings": json.dumps({k: v for k, v in SETTINGS.items() if v}, sort_keys=True),
                                     "generator": "tools/make_extension_fixture.py"})
    for name in SETTINGS:
        d = (tensors[f"logits.{name}"] - tensors["logits.plain"]).abs().max().item()
        print(f"{name}: max |logit - plain| = {d:.4f}")
    print(f"wrote {OUT}")
    gpt_fixture(torch.Generator().manual_seed(2025))


if __name__ == "__main__":
    main()
