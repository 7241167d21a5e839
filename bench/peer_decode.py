#!/usr/bin/env python3
"""PyTorch peer of build/bench_decode: greedy, B = 1, one-token-at-a-time decoding with a key/value cache, the cache
first filled to ctx - new random tokens by one batched forward (prefill). Prints one JSON line like bench_decode.
    bench/peer_env.sh python3 bench/peer_decode.py --model reference|stories260k --ctx 8192 --new 64 --threads 2
        [--position alibi] [--bin ../shared/data/llama2c/stories260K.bin]
    bench/peer_decode.py --check            correctness: stories260k greedy from [1] vs the fixture's tokens 1..10,
                                            and prefill + cached decode vs tools/torch_gpt.py / torch_llama.py logits
Models: reference = the reference GPT config (docs/MODEL.md: byte vocabulary, 6 layers, width 256, 8 heads, MLP 1024
GELU-tanh, LayerNorm with biases, ALiBi, tied embeddings; random weights from tools/torch_gpt.py's init);
stories260k = llama2.c's stories260K.bin (RMSNorm, SwiGLU, GQA, interleaved RoPE base 10000, tied classifier).

The decode loop is written here (no transformers), float32, under torch.inference_mode(), and kept lean:
  - the cache is two preallocated tensors (layer, ctx, kv_dim) written in place, one row per step;
  - per layer the key cache is viewed once as (kv_heads, hd, ctx) and sliced to the current length each step, so
    scores are one (b)bmm straight on the cache (query heads grouped by kv head: GQA needs no repeat);
  - ALiBi for the one query at position p is the slice [ctx-1-p, ctx) of a precomputed -m_h * (ctx-1-k) table,
    shared by all layers and added by baddbmm; 1/sqrt(hd) is folded into the query rows of the QKV weight;
  - RoPE is folded into the QKV matmul: the weight also carries the pair-swapped rows P W ((x0, x1) -> (-x1, x0)),
    so rotate(W a) = (W a) * cos_p + (P W a) * sin_p with precomputed (ctx, width) cos/sin tables (two ops);
  - the residual adds are fused into addmm where there is no bias; the next token stays a tensor (no .item()).
Prefill uses F.scaled_dot_product_attention (torch >= 2.0; causal, or the ALiBi bias as a float mask in query
chunks of 512 to bound memory) and falls back to materialized chunked attention on older torch.
"""
import argparse
import json
import math
import os
import resource
import struct
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HAS_SDPA = hasattr(F, "scaled_dot_product_attention")
HAS_RMS = hasattr(F, "rms_norm")
CHUNK = 512


def rmsnorm(x, w, eps):
    if HAS_RMS:
        return F.rms_norm(x, (x.shape[-1],), w, eps)
    return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + eps) * w


def swap_rows(w):
    """P W for the pair swap (x0, x1) -> (-x1, x0) applied to the output rows of W (rows 2i, 2i+1)."""
    r = w.reshape(w.shape[0] // 2, 2, *w.shape[1:])
    return torch.stack((-r[:, 1], r[:, 0]), dim=1).reshape(w.shape)


def alibi_slopes(nh):
    return [2.0 ** (-8.0 * (h + 1) / nh) for h in range(nh)]


# ----------------------------------------------------------------------------------------------------------
# models: weights as plain tensors

class GPTDecoder:
    """Reference GPT config with ALiBi (or no position bias with --position none)."""

    def __init__(self, sd, C, NH, L, F_, ctx, position):
        if position not in ("alibi", "none"):
            raise SystemExit("peer_decode: --position must be alibi or none for the reference model")
        self.C, self.NH, self.hd, self.L, self.ctx, self.position = C, NH, C // NH, L, ctx, position
        self.kvd = C
        sc = 1.0 / math.sqrt(self.hd)
        self.layers = []
        for l in range(L):
            p = f"h.{l}."
            wa = sd[p + "attn.c_attn.weight"].clone()
            ba = sd[p + "attn.c_attn.bias"].clone()
            wa[:C] *= sc
            ba[:C] *= sc
            self.layers.append(dict(
                ln1w=sd[p + "ln_1.weight"], ln1b=sd[p + "ln_1.bias"], wa=wa.contiguous(), ba=ba.contiguous(),
                wp=sd[p + "attn.c_proj.weight"].contiguous(), bp=sd[p + "attn.c_proj.bias"],
                ln2w=sd[p + "ln_2.weight"], ln2b=sd[p + "ln_2.bias"],
                wfc=sd[p + "mlp.c_fc.weight"].contiguous(), bfc=sd[p + "mlp.c_fc.bias"],
                wfp=sd[p + "mlp.c_proj.weight"].contiguous(), bfp=sd[p + "mlp.c_proj.bias"]))
        self.wte = sd["wte"].contiguous()
        self.lnfw, self.lnfb = sd["ln_f.weight"], sd["ln_f.bias"]
        self.kc = torch.zeros(L, ctx, C)
        self.vc = torch.zeros(L, ctx, C)
        hd = self.hd
        # per-layer views of the whole cache: K^T (NH, hd, ctx), V (NH, ctx, hd)
        self.kt = [self.kc[l].view(ctx, NH, hd).permute(1, 2, 0) for l in range(L)]
        self.vv = [self.vc[l].view(ctx, NH, hd).transpose(0, 1) for l in range(L)]
        self.slopes = torch.tensor(alibi_slopes(NH), dtype=torch.float64)
        if position == "alibi":
            d = torch.arange(ctx - 1, -1, -1, dtype=torch.float64)          # ctx-1-k
            self.rev = (-self.slopes[:, None] * d[None, :]).to(torch.float32).view(NH, 1, ctx)
        else:
            self.rev = torch.zeros(NH, 1, ctx)
        self.n = 0

    def cache_bytes(self):
        return self.kc.numel() * 4 + self.vc.numel() * 4

    def _bias_chunk(self, s, e):
        """(NH, e-s, e) ALiBi bias -m_h (i-j) with the causal mask, queries s..e-1, keys 0..e-1."""
        i = torch.arange(s, e, dtype=torch.float64)[:, None]
        j = torch.arange(0, e, dtype=torch.float64)[None, :]
        rel = i - j
        if self.position == "alibi":
            b = (-self.slopes[:, None, None] * rel[None]).to(torch.float32)
        else:
            b = torch.zeros(self.NH, e - s, e)
        return b.masked_fill((rel < 0)[None], float("-inf"))

    def prefill(self, tokens):
        C, NH, hd = self.C, self.NH, self.hd
        T = tokens.shape[0]
        x = F.embedding(tokens, self.wte)
        chunks = [(s, min(T, s + CHUNK)) for s in range(0, T, CHUNK)]
        for l, w in enumerate(self.layers):
            a = F.layer_norm(x, (C,), w["ln1w"], w["ln1b"], 1e-5)
            qkv = F.linear(a, w["wa"], w["ba"])
            self.kc[l, :T] = qkv[:, C:2 * C]
            self.vc[l, :T] = qkv[:, 2 * C:]
            q = qkv[:, :C].view(T, NH, hd).transpose(0, 1)
            k = self.kc[l, :T].view(T, NH, hd).transpose(0, 1)
            v = self.vc[l, :T].view(T, NH, hd).transpose(0, 1)
            o = torch.empty(NH, T, hd)
            for s, e in chunks:
                bias = self._bias_chunk(s, e)
                if HAS_SDPA:
                    o[:, s:e] = F.scaled_dot_product_attention(q[:, s:e], k[:, :e], v[:, :e], attn_mask=bias,
                                                               scale=1.0) if _SDPA_SCALE else \
                        F.scaled_dot_product_attention(q[:, s:e] * math.sqrt(hd), k[:, :e], v[:, :e], attn_mask=bias)
                else:
                    att = torch.baddbmm(bias, q[:, s:e], k[:, :e].transpose(1, 2)).softmax(-1)
                    o[:, s:e] = torch.bmm(att, v[:, :e])
            x = x + F.linear(o.transpose(0, 1).reshape(T, C), w["wp"], w["bp"])
            m = F.layer_norm(x, (C,), w["ln2w"], w["ln2b"], 1e-5)
            x = x + F.linear(F.gelu(F.linear(m, w["wfc"], w["bfc"]), approximate="tanh"), w["wfp"], w["bfp"])
        self.n = T
        y = F.layer_norm(x[-1:], (C,), self.lnfw, self.lnfb, 1e-5)
        return F.linear(y, self.wte)[0]

    def step(self, tok):
        """tok: 1-element long tensor; returns logits (V,)."""
        C, NH, hd, ctx = self.C, self.NH, self.hd, self.ctx
        p = self.n
        Lk = p + 1
        bias = self.rev[:, :, ctx - Lk:]
        x = F.embedding(tok, self.wte)                     # (1, C)
        kc, vc = self.kc, self.vc
        for l, w in enumerate(self.layers):
            a = F.layer_norm(x, (C,), w["ln1w"], w["ln1b"], 1e-5)
            qkv = F.linear(a, w["wa"], w["ba"])
            kc[l, p] = qkv[0, C:2 * C]
            vc[l, p] = qkv[0, 2 * C:]
            s = torch.baddbmm(bias, qkv[:, :C].view(NH, 1, hd), self.kt[l][:, :, :Lk])
            o = torch.bmm(s.softmax(-1), self.vv[l][:, :Lk])
            x = x + F.linear(o.view(1, C), w["wp"], w["bp"])
            m = F.layer_norm(x, (C,), w["ln2w"], w["ln2b"], 1e-5)
            x = x + F.linear(F.gelu(F.linear(m, w["wfc"], w["bfc"]), approximate="tanh"), w["wfp"], w["bfp"])
        self.n = p + 1
        y = F.layer_norm(x, (C,), self.lnfw, self.lnfb, 1e-5)
        return F.linear(y, self.wte)[0]


class LlamaDecoder:
    def __init__(self, W, C, NH, NKV, L, F_, ctx, eps=1e-5, base=10000.0):
        self.C, self.NH, self.NKV, self.hd, self.L, self.F, self.ctx, self.eps = C, NH, NKV, C // NH, L, F_, ctx, eps
        hd = self.hd
        self.kvd = KVD = NKV * hd
        self.G = NH // NKV
        sc = 1.0 / math.sqrt(hd)
        self.layers = []
        for l in range(L):
            wq, wk, wv = W["wq"][l] * sc, W["wk"][l], W["wv"][l]
            wqk = torch.cat([wq, wk], 0)
            big = torch.cat([wqk, swap_rows(wqk), wv], 0).contiguous()   # (2 (C+KVD) + KVD, C)
            self.layers.append(dict(
                an=W["rms_att"][l], big=big, wo=W["wo"][l].contiguous(),
                fn=W["rms_ffn"][l], w13=torch.cat([W["w1"][l], W["w3"][l]], 0).contiguous(),
                w2=W["w2"][l].contiguous()))
        self.emb = W["tok"].contiguous()
        self.cls = W.get("wcls", W["tok"]).contiguous()
        self.normw = W["rms_final"]
        # cos/sin tables (ctx, C + KVD): each head's pair i gets angle pos * base^(-2i/hd), repeated for x0, x1
        inv = base ** (-torch.arange(0, hd, 2, dtype=torch.float64) / hd)
        ang = torch.arange(ctx, dtype=torch.float64)[:, None] * inv[None, :]              # (ctx, hd/2)
        ang = ang.repeat_interleave(2, dim=1).repeat(1, NH + NKV)                        # (ctx, C+KVD)
        self.cos = torch.cos(ang).to(torch.float32).contiguous()
        self.sin = torch.sin(ang).to(torch.float32).contiguous()
        self.kc = torch.zeros(L, ctx, KVD)
        self.vc = torch.zeros(L, ctx, KVD)
        self.kt = [self.kc[l].view(ctx, NKV, hd).permute(1, 2, 0) for l in range(L)]    # (NKV, hd, ctx)
        self.vv = [self.vc[l].view(ctx, NKV, hd).transpose(0, 1) for l in range(L)]     # (NKV, ctx, hd)
        self.n = 0

    def cache_bytes(self):
        return self.kc.numel() * 4 + self.vc.numel() * 4

    def prefill(self, tokens):
        C, NH, NKV, hd, KVD, G = self.C, self.NH, self.NKV, self.hd, self.kvd, self.G
        T = tokens.shape[0]
        QK = C + KVD
        cos, sin = self.cos[:T], self.sin[:T]
        x = F.embedding(tokens, self.emb)
        for l, w in enumerate(self.layers):
            a = rmsnorm(x, w["an"], self.eps)
            y = F.linear(a, w["big"])
            qk = torch.addcmul(y[:, :QK] * cos, y[:, QK:2 * QK], sin)
            self.kc[l, :T] = qk[:, C:]
            self.vc[l, :T] = y[:, 2 * QK:]
            q = qk[:, :C].view(T, NH, hd).transpose(0, 1)                                     # (NH, T, hd)
            k = self.kc[l, :T].view(T, NKV, 1, hd).expand(T, NKV, G, hd).reshape(T, NH, hd).transpose(0, 1)
            v = self.vc[l, :T].view(T, NKV, 1, hd).expand(T, NKV, G, hd).reshape(T, NH, hd).transpose(0, 1)
            if HAS_SDPA:
                # q is pre-scaled by 1/sqrt(hd): undo for SDPA's own scaling when it has no scale argument
                o = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=1.0) if _SDPA_SCALE else \
                    F.scaled_dot_product_attention(q * math.sqrt(hd), k, v, is_causal=True)
            else:
                o = torch.empty(NH, T, hd)
                for s in range(0, T, CHUNK):
                    e = min(T, s + CHUNK)
                    att = torch.bmm(q[:, s:e], k[:, :e].transpose(1, 2))
                    mask = torch.arange(e)[None, :] > torch.arange(s, e)[:, None]
                    o[:, s:e] = torch.bmm(att.masked_fill(mask[None], float("-inf")).softmax(-1), v[:, :e])
            x = torch.addmm(x, o.transpose(0, 1).reshape(T, C), w["wo"].t())
            g = F.linear(rmsnorm(x, w["fn"], self.eps), w["w13"])
            x = torch.addmm(x, F.silu(g[:, :self.F]) * g[:, self.F:], w["w2"].t())
        self.n = T
        return F.linear(rmsnorm(x[-1:], self.normw, self.eps), self.cls)[0]

    def step(self, tok):
        C, NKV, G, hd, KVD = self.C, self.NKV, self.G, self.hd, self.kvd
        QK = C + KVD
        p = self.n
        Lk = p + 1
        cs, sn = self.cos[p], self.sin[p]
        x = F.embedding(tok, self.emb)
        kc, vc, Fh, eps = self.kc, self.vc, self.F, self.eps
        for l, w in enumerate(self.layers):
            y = F.linear(rmsnorm(x, w["an"], eps), w["big"])[0]
            qk = torch.addcmul(y[:QK] * cs, y[QK:2 * QK], sn)
            kc[l, p] = qk[C:]
            vc[l, p] = y[2 * QK:]
            s = torch.bmm(qk[:C].view(NKV, G, hd), self.kt[l][:, :, :Lk])                 # (NKV, G, Lk)
            o = torch.bmm(s.softmax(-1), self.vv[l][:, :Lk])                               # (NKV, G, hd)
            x = torch.addmm(x, o.view(1, C), w["wo"].t())
            g = F.linear(rmsnorm(x, w["fn"], eps), w["w13"])
            x = torch.addmm(x, F.silu(g[:, :Fh]) * g[:, Fh:], w["w2"].t())
        self.n = p + 1
        return F.linear(rmsnorm(x, self.normw, eps), self.cls)[0]


def _sdpa_has_scale():
    if not HAS_SDPA:
        return False
    try:
        F.scaled_dot_product_attention(torch.zeros(1, 1, 2), torch.zeros(1, 1, 2), torch.zeros(1, 1, 2), scale=1.0)
        return True
    except TypeError:
        return False


_SDPA_SCALE = _sdpa_has_scale()


# ----------------------------------------------------------------------------------------------------------
# loading

def read_llama2c(path):
    with open(path, "rb") as f:
        dim, hidden, L, NH, NKV, V, seq = struct.unpack("<7i", f.read(28))
        data = np.frombuffer(f.read(), dtype="<f4")
    shared = V > 0
    V = abs(V)
    hd = dim // NH
    kvd = NKV * hd
    off = 0

    def take(*shape):
        nonlocal off
        n = int(np.prod(shape))
        t = torch.from_numpy(data[off:off + n].copy()).reshape(shape)
        off += n
        return t

    W = {}
    W["tok"] = take(V, dim)
    W["rms_att"] = take(L, dim)
    W["wq"] = take(L, dim, dim)
    W["wk"] = take(L, kvd, dim)
    W["wv"] = take(L, kvd, dim)
    W["wo"] = take(L, dim, dim)
    W["rms_ffn"] = take(L, dim)
    W["w1"] = take(L, hidden, dim)
    W["w2"] = take(L, dim, hidden)
    W["w3"] = take(L, hidden, dim)
    W["rms_final"] = take(dim)
    take(seq, hd // 2)   # freq_cis_real (skipped)
    take(seq, hd // 2)   # freq_cis_imag (skipped)
    if not shared:
        W["wcls"] = take(V, dim)
    return W, dict(dim=dim, hidden=hidden, L=L, NH=NH, NKV=NKV, V=V, seq=seq)


def build(model, ctx, position, binpath):
    if model == "reference":
        sys.path.insert(0, os.path.join(ROOT, "tools"))
        from torch_gpt import GPT, GPTConfig
        torch.manual_seed(0)
        cfg = GPTConfig(vocab_size=256, n_layer=6, n_head=8, n_embd=256, mlp_hidden=1024, block_size=ctx,
                        position=position, bias=True, tie_embeddings=True)
        gpt = GPT(cfg).eval()
        sd = {k: v.detach().clone() for k, v in gpt.state_dict().items()}
        return GPTDecoder(sd, 256, 8, 6, 1024, ctx, position), 256, gpt
    if model == "stories260k":
        W, h = read_llama2c(binpath)
        dec = LlamaDecoder(W, h["dim"], h["NH"], h["NKV"], h["L"], h["hidden"], ctx)
        return dec, h["V"], (W, h)
    raise SystemExit(f"peer_decode: unknown model {model!r}")


# ----------------------------------------------------------------------------------------------------------

def read_safetensors(path, name):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        head = json.loads(f.read(n))
        base = 8 + n
        meta = head[name]
        s, e = meta["data_offsets"]
        f.seek(base + s)
        dt = {"I32": "<i4", "F32": "<f4", "F64": "<f8"}[meta["dtype"]]
        return np.frombuffer(f.read(e - s), dtype=dt).reshape(meta["shape"])


def check(a):
    ok = True
    # 1. stories260k greedy from [1] vs the fixture
    fix = read_safetensors(os.path.join(ROOT, "tests/fixtures/llama2c/stories260k_logits.safetensors"), "tokens")
    dec, V, (W, h) = build("stories260k", 64, None, a.bin)
    want = [int(t) for t in fix[1:11]]
    logits = dec.prefill(torch.tensor([1]))
    got = []
    for _ in range(10):
        nxt = torch.argmax(logits).view(1)
        got.append(int(nxt))
        logits = dec.step(nxt)
    print(f"stories260k greedy from [1]: {got}\n                    fixture: {want}  {'OK' if got == want else 'MISMATCH'}")
    ok &= got == want
    # 2. prefill + cached decode logits vs the tools/ references (full recompute), both models
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    from torch_llama import Llama, LlamaConfig
    cfg = LlamaConfig(vocab_size=h["V"], n_layer=h["L"], n_head=h["NH"], n_kv_head=h["NKV"], n_embd=h["dim"],
                      mlp_hidden=h["hidden"], block_size=h["seq"], tie_embeddings="wcls" not in W)
    ref = Llama(cfg).eval()
    sd = {"tok_embeddings.weight": W["tok"], "norm.weight": W["rms_final"]}
    for l in range(h["L"]):
        p = f"layers.{l}."
        sd[p + "attention_norm.weight"] = W["rms_att"][l]
        sd[p + "ffn_norm.weight"] = W["rms_ffn"][l]
        sd[p + "attention.wqkv.weight"] = torch.cat([W["wq"][l], W["wk"][l], W["wv"][l]], 0)
        sd[p + "attention.wo.weight"] = W["wo"][l]
        sd[p + "feed_forward.w13.weight"] = torch.cat([W["w1"][l], W["w3"][l]], 0)
        sd[p + "feed_forward.w2.weight"] = W["w2"][l]
    ref.load_state_dict(sd)
    g = torch.Generator().manual_seed(5)
    for name, dec, refm, V in (("stories260k", LlamaDecoder(W, h["dim"], h["NH"], h["NKV"], h["L"], h["hidden"], 1100),
                                ref, h["V"]),) + ((lambda d: ("reference", d[0], d[2], d[1]))(
                                    build("reference", 1100, "alibi", None)),):
        seq = torch.randint(0, V, (1030,), generator=g)
        full = refm(seq.view(1, -1))[0][0]
        n0 = 1030 - 6
        outs = [dec.prefill(seq[:n0])]
        for t in range(n0, 1030):
            outs.append(dec.step(seq[t:t + 1]))
        mine = torch.stack(outs[:-1])
        err = (mine - full[n0 - 1:1029]).abs().max().item()
        good = err < 1e-3 * max(1.0, full.abs().max().item())
        print(f"{name}: prefill {n0} (chunks of {CHUNK}) + 5 cached steps vs full forward of tools/: "
              f"max |dlogit| {err:.2e}  {'OK' if good else 'MISMATCH'}")
        ok &= good
    print(f"torch {torch.__version__}, sdpa {HAS_SDPA}, rms_norm {HAS_RMS}")
    return 0 if ok else 1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="reference")
    ap.add_argument("--ctx", type=int, default=512)
    ap.add_argument("--new", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--position", default="alibi")
    ap.add_argument("--bin", default=os.path.join(ROOT, "..", "shared", "data", "llama2c", "stories260K.bin"))
    ap.add_argument("--check", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    with torch.inference_mode():
        if a.check:
            return check(a)
        if a.new >= a.ctx:
            raise SystemExit("peer_decode: --new must be smaller than --ctx")
        dec, V, _ = build(a.model, a.ctx, a.position, a.bin)
        g = torch.Generator().manual_seed(3)
        prompt = torch.randint(3, V, (a.ctx - a.new,), generator=g)
        # warm-up on a throwaway decoder state (first-call allocations, kernel selection), then reset
        dec.prefill(prompt[:min(64, len(prompt))])
        dec.step(torch.tensor([1]))
        t0 = time.perf_counter()
        logits = dec.prefill(prompt)
        prefill = time.perf_counter() - t0
        t0 = time.perf_counter()
        for _ in range(a.new):
            nxt = torch.argmax(logits).view(1)
            logits = dec.step(nxt)
        decode = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(json.dumps({"impl": "pytorch", "model": a.model,
                      "position": "rope" if a.model == "stories260k" else a.position, "ctx": a.ctx, "new": a.new,
                      "decode_tokens_per_s": round(a.new / decode, 1),
                      "prefill_tokens_per_s": round(len(prompt) / prefill, 1),
                      "cache_mb": round(dec.cache_bytes() / 1048576.0, 2), "peak_rss_mb": round(rss, 1),
                      "threads": a.threads, "torch": torch.__version__}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
