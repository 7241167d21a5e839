#!/usr/bin/python3
"""Write the LLaMA fixtures for the C++ model, from the independent reference tools/torch_llama.py.

Regenerate (Debian's PyTorch 1.13; the `python3` first on PATH may lack torch):

    /usr/bin/python3 tools/make_llama_fixtures.py            # writes both sets of files below
    /usr/bin/python3 tools/make_llama_fixtures.py --check    # also: naive-loop forward and gradcheck self-tests
    options: --bin PATH (default /work/shared/data/llama2c/stories260K.bin, i.e. ../shared/... from the repo),
             --only parity|llama2c

Deterministic (seeded generators, float64 compute, single thread).

(a) tests/fixtures/parity/llama_gqa.safetensors, llama_mha_tied.safetensors: the layout of the other parity
    fixtures (tools/make_parity_fixtures.py). Tiny configs V 61, L 2, C 24, NH 6, hd 4, F 40, block_size 48;
    llama_gqa: NKV 2, untied; llama_mha_tied: NKV 6, tied. B 2, T 40, pos[b, t] = t except row 1 = t + 7.
    Parameters drawn in float32 (weights 0.2 N(0,1), RMSNorm weights 1 + 0.1 N(0,1)), everything then computed in
    float64 on exactly those values. Tensors: param.<name> F32, tokens / targets / pos I32 (B, T),
    logits F64 (B, T, V), loss F64 [1], grad.<name> F64 (d mean loss / d param). Metadata "config" (JSON, keys
    arch, vocab_size, n_layer, n_head, n_kv_head, n_embd, mlp_hidden, block_size, position, bias, tie_embeddings,
    rope_base, norm_eps) and "generator".

(b) tests/fixtures/llama2c/stories260k_logits.safetensors: llama2.c's stories260K.bin read with numpy (own reader,
    run.c export order), computed in float64. tokens I32 (64): BOS = 1 followed by the greedy continuation of [1]
    under plain RoPE. logits.<setting> F32 (64, V) for the RoPE settings
        none     plain, base 10000
        linear4  inv_freq / 4
        ntk4     base * 4^(hd / (hd - 2))
        yarn4    YaRN s = 4, L_train 512 (Hugging Face variant, see torch_llama.yarn_inv_freq), attention
                 factor 0.1 ln 4 + 1 on cos and sin
    inv_freq.<setting> F64 (hd/2), attn_factor.<setting> F64 [1], nll.<setting> F64 [1] (mean NLL of tokens[1:]
    given the prefix), greedy I32 (32): greedy continuation of the 64-token prompt under the plain setting.
    Metadata "config" (JSON, the llama2.c header as stretch config keys) and "generator".
The safetensors files are written by hand (make_parity_fixtures.write_safetensors).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import struct
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from torch_llama import (Llama, LlamaConfig, rope_inv_freq, linear_inv_freq, ntk_base,  # noqa: E402
                         yarn_inv_freq)
from make_parity_fixtures import write_safetensors, read_safetensors  # noqa: E402

REPO = os.path.dirname(HERE)
PARITY_DIR = os.path.join(REPO, "tests", "fixtures", "parity")
LLAMA2C_DIR = os.path.join(REPO, "tests", "fixtures", "llama2c")
DEFAULT_BIN = os.path.join(os.path.dirname(REPO), "shared", "data", "llama2c", "stories260K.bin")

BASE = dict(vocab_size=61, n_layer=2, n_head=6, n_embd=24, mlp_hidden=40, block_size=48, rope_base=10000.0,
            norm_eps=1e-5)
B, T = 2, 40
SEED = 4321
VARIANTS = {"llama_gqa": dict(n_kv_head=2, tie_embeddings=False),
            "llama_mha_tied": dict(n_kv_head=6, tie_embeddings=True),
            "llama_qkv_bias": dict(n_kv_head=2, tie_embeddings=False, qkv_bias=True)}

PROMPT_LEN, GREEDY_LEN, SCALE, YARN_TRAIN_LEN = 64, 32, 4.0, 512


def config_json(cfg: LlamaConfig) -> str:
    return json.dumps({"arch": "llama", "vocab_size": cfg.vocab_size, "n_layer": cfg.n_layer, "n_head": cfg.n_head,
                       "n_kv_head": cfg.n_kv_head, "n_embd": cfg.n_embd, "mlp_hidden": cfg.mlp_hidden,
                       "block_size": cfg.block_size, "position": "rope", "bias": False,
                       "tie_embeddings": cfg.tie_embeddings, "rope_base": cfg.rope_base, "norm_eps": cfg.norm_eps,
                       **({"qkv_bias": True} if cfg.qkv_bias else {})},
                      sort_keys=True)


# ----------------------------------------------------------------------------------------------------------
# (a) parity fixtures

@torch.no_grad()
def randomize(model: Llama, gen: torch.Generator):
    for name, p in model.named_parameters():
        if name.endswith(("attention_norm.weight", "ffn_norm.weight")) or name == "norm.weight":
            v = 1.0 + 0.1 * torch.randn(p.shape, generator=gen)
        else:
            v = 0.2 * torch.randn(p.shape, generator=gen)
        p.copy_(v.to(torch.float32))


def build(variant: str):
    cfg = LlamaConfig(**BASE, **VARIANTS[variant])
    gen = torch.Generator().manual_seed(SEED + list(VARIANTS).index(variant))
    model = Llama(cfg)
    randomize(model, gen)
    params32 = {n: p.detach().clone() for n, p in model.named_parameters()}
    tokens = torch.randint(0, cfg.vocab_size, (B, T), generator=gen, dtype=torch.int64)
    targets = torch.randint(0, cfg.vocab_size, (B, T), generator=gen, dtype=torch.int64)
    pos = torch.arange(T, dtype=torch.int64).repeat(B, 1)
    pos[1] += 7
    return cfg, model, params32, tokens, targets, pos


def parity_fixture(variant: str):
    cfg, model, params32, tokens, targets, pos = build(variant)
    model = model.double()
    logits, loss = model(tokens, targets, pos)
    model.zero_grad(set_to_none=True)
    loss.backward()
    tensors = {"param." + n: p for n, p in params32.items()}
    tensors["tokens"] = tokens.to(torch.int32)
    tensors["targets"] = targets.to(torch.int32)
    tensors["pos"] = pos.to(torch.int32)
    tensors["logits"] = logits.detach()
    tensors["loss"] = loss.detach().reshape(1)
    for n, p in model.named_parameters():
        tensors["grad." + n] = p.grad.detach().clone()
    meta = {"config": config_json(cfg), "generator": "tools/make_llama_fixtures.py"}
    return tensors, meta


# ----------------------------------------------------------------------------------------------------------
# (b) llama2.c stories260K

def read_llama2c(path: str):
    """Own reader of llama2.c's legacy export: 7 int32 header, then float32 arrays in run.c order."""
    if not os.path.isfile(path):
        sys.exit(f"error: llama2.c checkpoint not found: {path} (pass --bin PATH to stories260K.bin)")
    with open(path, "rb") as f:
        raw = f.read()
    dim, hidden, L, NH, NKV, vocab, seq_len = struct.unpack("<7i", raw[:28])
    tied = vocab > 0
    V = abs(vocab)
    hd = dim // NH
    kvd = NKV * hd
    data = np.frombuffer(raw, dtype="<f4", offset=28)
    off = 0

    def take(*shape):
        nonlocal off
        n = int(np.prod(shape))
        if off + n > data.size:
            sys.exit(f"error: {path} is truncated")
        a = data[off:off + n].reshape(shape).astype(np.float64)
        off += n
        return torch.from_numpy(a.copy())

    w = {}
    w["tok"] = take(V, dim)
    w["rms_att"] = take(L, dim)
    w["wq"] = take(L, dim, dim)
    w["wk"] = take(L, kvd, dim)
    w["wv"] = take(L, kvd, dim)
    w["wo"] = take(L, dim, dim)
    w["rms_ffn"] = take(L, dim)
    w["w1"] = take(L, hidden, dim)
    w["w2"] = take(L, dim, hidden)
    w["w3"] = take(L, hidden, dim)
    w["rms_final"] = take(dim)
    take(seq_len * hd // 2)   # freq_cis_real (unused: RoPE is recomputed)
    take(seq_len * hd // 2)   # freq_cis_imag
    if not tied:
        w["wcls"] = take(V, dim)
    if off != data.size:
        sys.exit(f"error: {path}: {data.size - off} trailing floats, not a llama2.c legacy export")
    cfg = LlamaConfig(vocab_size=V, n_layer=L, n_head=NH, n_kv_head=NKV, n_embd=dim, mlp_hidden=hidden,
                      block_size=seq_len, rope_base=10000.0, norm_eps=1e-5, tie_embeddings=tied)
    sd = {"tok_embeddings.weight": w["tok"], "norm.weight": w["rms_final"]}
    for l in range(L):
        p = f"layers.{l}."
        sd[p + "attention_norm.weight"] = w["rms_att"][l]
        sd[p + "attention.wqkv.weight"] = torch.cat([w["wq"][l], w["wk"][l], w["wv"][l]], 0)
        sd[p + "attention.wo.weight"] = w["wo"][l]
        sd[p + "ffn_norm.weight"] = w["rms_ffn"][l]
        sd[p + "feed_forward.w13.weight"] = torch.cat([w["w1"][l], w["w3"][l]], 0)
        sd[p + "feed_forward.w2.weight"] = w["w2"][l]
    if not tied:
        sd["output.weight"] = w["wcls"]
    model = Llama(cfg).double()
    model.load_state_dict(sd, strict=True)
    return cfg, model


def rope_settings(cfg: LlamaConfig):
    hd, base = cfg.head_dim, cfg.rope_base
    yarn, yarn_a, _ = yarn_inv_freq(hd, base, SCALE, YARN_TRAIN_LEN)
    return {"none": (rope_inv_freq(hd, base), 1.0),
            "linear4": (linear_inv_freq(hd, base, SCALE), 1.0),
            "ntk4": (rope_inv_freq(hd, ntk_base(hd, base, SCALE)), 1.0),
            "yarn4": (yarn, yarn_a)}


@torch.no_grad()
def llama2c_fixture(path: str):
    cfg, model = read_llama2c(path)
    prompt = [1] + model.greedy([1], PROMPT_LEN - 1)
    tokens = torch.tensor([prompt], dtype=torch.long)
    tensors = {"tokens": torch.tensor(prompt, dtype=torch.int32)}
    nlls = {}
    for name, (inv_freq, a) in rope_settings(cfg).items():
        logits, _ = model(tokens, inv_freq=inv_freq, attn_factor=a)
        lp = torch.log_softmax(logits[0], dim=-1)
        nll = -lp[torch.arange(PROMPT_LEN - 1), tokens[0, 1:]].mean().item()
        nlls[name] = nll
        tensors["logits." + name] = logits[0].to(torch.float32)
        tensors["inv_freq." + name] = inv_freq.clone()
        tensors["attn_factor." + name] = torch.tensor([a], dtype=torch.float64)
        tensors["nll." + name] = torch.tensor([nll], dtype=torch.float64)
    greedy = model.greedy(prompt, GREEDY_LEN)
    tensors["greedy"] = torch.tensor(greedy, dtype=torch.int32)
    conf = json.loads(config_json(cfg))
    meta = {"config": json.dumps(conf, sort_keys=True), "generator": "tools/make_llama_fixtures.py",
            "source": os.path.basename(path), "scale": str(SCALE), "yarn_train_len": str(YARN_TRAIN_LEN)}
    return tensors, meta, nlls


# ----------------------------------------------------------------------------------------------------------
# self-checks of the reference

def naive_forward(model: Llama, tokens, pos, inv_freq=None, a=1.0):
    """Straight transcription of the math with Python loops over (b, h, t, i, j); float64; returns logits."""
    cfg = model.cfg
    P = {n: p.detach().double() for n, p in model.named_parameters()}
    C, NH, NKV, hd, Fh = cfg.n_embd, cfg.n_head, cfg.n_kv_head, cfg.head_dim, cfg.mlp_hidden
    KVD, G = NKV * hd, NH // NKV
    if inv_freq is None:
        inv_freq = [cfg.rope_base ** (-2 * i / hd) for i in range(hd // 2)]
    Bn, Tn = tokens.shape

    def rms(x, w):
        return x / torch.sqrt((x ** 2).mean(-1, keepdim=True) + cfg.norm_eps) * w

    def rot(z, p):
        z = z.clone()
        for i in range(hd // 2):
            ang = p * float(inv_freq[i])
            c_, s_ = a * math.cos(ang), a * math.sin(ang)
            x0, x1 = float(z[2 * i]), float(z[2 * i + 1])
            z[2 * i], z[2 * i + 1] = x0 * c_ - x1 * s_, x0 * s_ + x1 * c_
        return z

    x = P["tok_embeddings.weight"][tokens].clone()
    for l in range(cfg.n_layer):
        pre = f"layers.{l}."
        wqkv = P[pre + "attention.wqkv.weight"]
        wq, wk, wv = wqkv[:C], wqkv[C:C + KVD], wqkv[C + KVD:]
        bqkv = P.get(pre + "attention.wqkv.bias", torch.zeros(C + 2 * KVD, dtype=torch.float64))
        bq, bk, bv = bqkv[:C], bqkv[C:C + KVD], bqkv[C + KVD:]
        h = rms(x, P[pre + "attention_norm.weight"])
        o = torch.zeros(Bn, Tn, C, dtype=torch.float64)
        for b in range(Bn):
            for hh in range(NH):
                j_kv = hh // G
                qs = [rot(h[b, t] @ wq[hh * hd:(hh + 1) * hd].T + bq[hh * hd:(hh + 1) * hd], int(pos[b, t]))
                      for t in range(Tn)]
                ks = [rot(h[b, t] @ wk[j_kv * hd:(j_kv + 1) * hd].T + bk[j_kv * hd:(j_kv + 1) * hd], int(pos[b, t]))
                      for t in range(Tn)]
                vs = [h[b, t] @ wv[j_kv * hd:(j_kv + 1) * hd].T + bv[j_kv * hd:(j_kv + 1) * hd] for t in range(Tn)]
                for i in range(Tn):
                    s = [float(qs[i] @ ks[j]) / math.sqrt(hd) for j in range(i + 1)]
                    mx = max(s)
                    e = [math.exp(z - mx) for z in s]
                    Z = sum(e)
                    o[b, i, hh * hd:(hh + 1) * hd] = sum((e[j] / Z) * vs[j] for j in range(i + 1))
        x = x + o @ P[pre + "attention.wo.weight"].T
        h2 = rms(x, P[pre + "ffn_norm.weight"])
        w13 = P[pre + "feed_forward.w13.weight"]
        g1, g3 = h2 @ w13[:Fh].T, h2 @ w13[Fh:].T
        x = x + (g1 / (1 + torch.exp(-g1)) * g3) @ P[pre + "feed_forward.w2.weight"].T
    y = rms(x, P["norm.weight"])
    w = P["tok_embeddings.weight"] if cfg.tie_embeddings else P["output.weight"]
    return y @ w.T


def self_check() -> bool:
    from torch.nn.utils.stateless import functional_call
    ok = True
    for v in VARIANTS:
        cfg, model, _, tokens, targets, pos = build(v)
        model = model.double()
        logits, _ = model(tokens, targets, pos)
        ref = naive_forward(model, tokens, pos)
        err = (logits - ref).abs().max().item()
        ok &= err < 1e-10
        print(f"naive-vs-module {v:16s} max|dlogits| = {err:.2e}")
        # with a non-default inv_freq list and an attention factor (the YaRN code path)
        inv, a, _ = yarn_inv_freq(cfg.head_dim, cfg.rope_base, 4.0, 16)
        logits, _ = model(tokens, targets, pos, inv_freq=inv, attn_factor=a)
        err = (logits - naive_forward(model, tokens, pos, inv.tolist(), a)).abs().max().item()
        ok &= err < 1e-10
        print(f"naive-vs-module {v + '+yarn':16s} max|dlogits| = {err:.2e}")
    for nkv, tied in ((1, False), (3, True)):
        cfg = LlamaConfig(vocab_size=7, n_layer=1, n_head=3, n_kv_head=nkv, n_embd=6, mlp_hidden=5, block_size=24,
                          tie_embeddings=tied)
        gen = torch.Generator().manual_seed(99)
        model = Llama(cfg)
        randomize(model, gen)
        model = model.double()
        tokens = torch.randint(0, 7, (2, 9), generator=gen)
        targets = torch.randint(0, 7, (2, 9), generator=gen)
        targets[0, 3] = -1                                 # ignored target
        pos = torch.arange(9).repeat(2, 1)
        pos[1] += 3
        names = [n for n, _ in model.named_parameters()]
        inputs = tuple(p.detach().clone().requires_grad_(True) for _, p in model.named_parameters())

        def f(*ps):
            return functional_call(model, dict(zip(names, ps)), (tokens, targets, pos))[1]

        passed = torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-7, rtol=1e-5, raise_exception=False)
        ok &= passed
        print(f"gradcheck nkv={nkv} tied={tied} ({sum(p.numel() for p in inputs)} params): "
              f"{'pass' if passed else 'FAIL'}")
    return ok


def write_checked(path, tensors, meta):
    write_safetensors(path, tensors, meta)
    back, meta2 = read_safetensors(path)
    assert meta2 == meta and set(back) == set(tensors)
    for k, v in tensors.items():
        assert torch.equal(back[k], v.detach().cpu()), k


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default=DEFAULT_BIN, help="llama2.c stories260K.bin")
    ap.add_argument("--only", choices=("parity", "llama2c"))
    ap.add_argument("--check", action="store_true", help="run the naive-loop and gradcheck self-tests")
    ap.add_argument("--variants", nargs="*", default=list(VARIANTS), help="parity variants to write (default: all)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.check and not self_check():
        sys.exit("self-check FAILED")
    if args.only in (None, "parity"):
        os.makedirs(PARITY_DIR, exist_ok=True)
        for v in args.variants:
            tensors, meta = parity_fixture(v)
            path = os.path.join(PARITY_DIR, f"{v}.safetensors")
            write_checked(path, tensors, meta)
            print(f"{v:16s} {os.path.getsize(path):7d} bytes  loss {tensors['loss'].item():.6f}")
    if args.only in (None, "llama2c"):
        os.makedirs(LLAMA2C_DIR, exist_ok=True)
        tensors, meta, nlls = llama2c_fixture(args.bin)
        path = os.path.join(LLAMA2C_DIR, "stories260k_logits.safetensors")
        write_checked(path, tensors, meta)
        print(f"stories260k_logits {os.path.getsize(path)} bytes; prompt {tensors['tokens'].tolist()}")
        print(f"greedy {tensors['greedy'].tolist()}")
        for k, v in nlls.items():
            print(f"mean NLL of the prompt, rope {k:8s}: {v:.6f}")


if __name__ == "__main__":
    main()
