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

REPO = os.path.dirname(HERE)
OUT = os.path.join(REPO, "tests", "fixtures", "extension", "llama_extension.safetensors")
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


if __name__ == "__main__":
    main()
