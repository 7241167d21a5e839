#!/usr/bin/python3
"""Write the PyTorch parity fixtures for the C++ model: tests/fixtures/parity/<method>.safetensors.

Regenerate (Debian's PyTorch 1.13; the `python3` first on PATH may lack torch):

    /usr/bin/python3 tools/make_parity_fixtures.py            # writes tests/fixtures/parity/*.safetensors
    /usr/bin/python3 tools/make_parity_fixtures.py --check    # also: naive loop forward + gradcheck self-tests

The model is tools/torch_gpt.py (docs/MODEL.md written from the math). One file per position method
(none, alibi, sinusoidal, learned, rope, t5), tiny odd config: V 61, L 2, NH 6 (not a power of two), C 24
(hd 4), F 40, B 2, T 40 (T5 distances >= 16 use the log buckets), block_size 48. 'learned' is untied,
'none' has bias=false; all others bias=true and tied. Parameters are drawn in float32 with a seeded generator
(weights N(0, 0.2), biases 0.1 N(0,1), LayerNorm weights 1 + 0.1 N(0,1), LayerNorm biases 0.1 N(0,1),
t5_bias 0.5 N(0,1)), then everything is computed in float64 on exactly those values.
pos[b, t] = t, except alibi and rope where row 1 uses t + 7.

Tensors: param.<name> F32 (every parameter), tokens / targets / pos I32 (B, T), logits F64 (B, T, V),
loss F64 [1], grad.<name> F64 (d mean loss / d param), adam_losses F64 [4] (loss on the same batch before
any step and after each of 3 float64 torch.optim.AdamW steps, lr 1e-2, betas (0.9, 0.95), eps 1e-8,
weight decay 0.1 on the Linear weights only (c_attn.weight, attn.c_proj.weight, mlp.c_fc.weight,
mlp.c_proj.weight, lm_head.weight), 0 elsewhere; no clipping; constant lr).
Metadata: "config" (JSON) and "generator". The safetensors file is written by hand (struct + json).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import struct
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from torch_gpt import GPT, GPTConfig, POSITIONS, alibi_slopes, t5_bucket  # noqa: E402

REPO = os.path.dirname(HERE)
OUT_DIR = os.path.join(REPO, "tests", "fixtures", "parity")

BASE = dict(vocab_size=61, n_layer=2, n_head=6, n_embd=24, mlp_hidden=40, block_size=48, rope_base=10000.0)
B, T = 2, 40
LR, BETA1, BETA2, EPS, WD = 1e-2, 0.9, 0.95, 1e-8, 0.1
ADAM_STEPS = 3
SEED = 1234

DTYPES = {torch.float32: "F32", torch.float64: "F64", torch.int32: "I32", torch.int64: "I64"}


def write_safetensors(path: str, tensors: dict, metadata: dict):
    """8-byte LE header length, JSON header (padded with spaces to a multiple of 8), then the raw data."""
    header = {"__metadata__": {str(k): str(v) for k, v in metadata.items()}}
    blobs, off = [], 0
    for name, t in tensors.items():
        t = t.detach().contiguous().cpu()
        data = t.numpy().tobytes()   # native order; x86 is little-endian
        assert sys.byteorder == "little"
        header[name] = {"dtype": DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(data)]}
        blobs.append(data)
        off += len(data)
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def read_safetensors(path: str):
    """Minimal reader used to verify what was written."""
    np_dt = {"F32": torch.float32, "F64": torch.float64, "I32": torch.int32, "I64": torch.int64}
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    assert n % 8 == 0
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    meta = header.pop("__metadata__", {})
    data = raw[8 + n:]
    out = {}
    for name, info in header.items():
        b, e = info["data_offsets"]
        t = torch.frombuffer(bytearray(data[b:e]), dtype=np_dt[info["dtype"]]) if e > b else \
            torch.empty(0, dtype=np_dt[info["dtype"]])
        out[name] = t.reshape(info["shape"])
    assert max(i["data_offsets"][1] for i in header.values()) == len(data)
    return out, meta


def method_config(method: str) -> GPTConfig:
    return GPTConfig(position=method, bias=(method != "none"), tie_embeddings=(method != "learned"), **BASE)


# fixture name -> (position method, config overrides); the plain methods keep their seeds (SEED + index)
VARIANTS = {"sinusoidal_scaled": ("sinusoidal", {"embed_scale": math.sqrt(BASE["n_embd"])}),
            # BLOOM's block: biases, tanh GELU, a LayerNorm on the embeddings (6 heads: the non-power-of-two slopes)
            "alibi_bloom": ("alibi", {"embed_norm": True}),
            # MPT's block: no biases anywhere, exact GELU; another maximum bias for the slopes
            "alibi_mpt": ("alibi", {"bias": False, "activation": "gelu", "alibi_max_bias": 12.0})}
FIXTURES = list(POSITIONS) + list(VARIANTS)


def fixture_config(name: str) -> GPTConfig:
    method, over = VARIANTS.get(name, (name, {}))
    cfg = method_config(method)
    for k, v in over.items():
        setattr(cfg, k, v)
    return cfg


@torch.no_grad()
def randomize(model: GPT, gen: torch.Generator):
    """Large, seeded float32 parameters so that every parameter matters."""
    for name, p in model.named_parameters():
        if name == "t5_bias":
            v = 0.5 * torch.randn(p.shape, generator=gen)
        elif name.endswith((".ln_1.weight", ".ln_2.weight")) or name in ("ln_f.weight", "ln_emb.weight"):
            v = 1.0 + 0.1 * torch.randn(p.shape, generator=gen)
        elif name.endswith(".bias"):
            v = 0.1 * torch.randn(p.shape, generator=gen)
        else:                                  # wte, wpe, Linear weights
            v = 0.2 * torch.randn(p.shape, generator=gen)
        p.copy_(v.to(torch.float32))


def make_batch(name: str, gen: torch.Generator):
    method = VARIANTS.get(name, (name, {}))[0]
    V = BASE["vocab_size"]
    tokens = torch.randint(0, V, (B, T), generator=gen, dtype=torch.int64)
    targets = torch.randint(0, V, (B, T), generator=gen, dtype=torch.int64)
    pos = torch.arange(T, dtype=torch.int64).repeat(B, 1)
    if method in ("alibi", "rope"):
        pos[1] += 7
    return tokens, targets, pos


def build(name: str):
    cfg = fixture_config(name)
    gen = torch.Generator().manual_seed(SEED + FIXTURES.index(name))
    model = GPT(cfg)                       # float32
    randomize(model, gen)
    params32 = {n: p.detach().clone() for n, p in model.named_parameters()}
    tokens, targets, pos = make_batch(name, gen)
    return cfg, model, params32, tokens, targets, pos


def fixture(method: str):
    cfg, model, params32, tokens, targets, pos = build(method)
    model = model.double().eval()          # float64 on exactly the float32 values
    logits, loss = model(tokens, targets, pos)
    model.zero_grad(set_to_none=True)
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters()}

    opt = torch.optim.AdamW(model.decay_groups(WD), lr=LR, betas=(BETA1, BETA2), eps=EPS)
    adam_losses = []
    for step in range(ADAM_STEPS + 1):
        opt.zero_grad(set_to_none=True)
        _, l = model(tokens, targets, pos)
        adam_losses.append(l.item())
        if step == ADAM_STEPS:
            break
        l.backward()
        opt.step()

    tensors = {}
    for n, p in params32.items():
        tensors["param." + n] = p
    tensors["tokens"] = tokens.to(torch.int32)
    tensors["targets"] = targets.to(torch.int32)
    tensors["pos"] = pos.to(torch.int32)
    tensors["logits"] = logits.detach()
    tensors["loss"] = loss.detach().reshape(1)
    for n, g in grads.items():
        tensors["grad." + n] = g
    tensors["adam_losses"] = torch.tensor(adam_losses, dtype=torch.float64)
    conf = dict(cfg.to_dict())
    conf.pop("dropout")
    if conf["embed_scale"] == 1.0:
        conf.pop("embed_scale")           # the plain fixtures predate the option and stay byte-identical
    for key, default in (("activation", "gelu_tanh"), ("embed_norm", False), ("alibi_max_bias", 8.0)):
        if conf[key] == default:
            conf.pop(key)                 # (likewise)
    conf.update(B=B, T=T, lr=LR, beta1=BETA1, beta2=BETA2, eps=EPS, weight_decay=WD)
    meta = {"config": json.dumps(conf, sort_keys=True), "generator": "tools/make_parity_fixtures.py"}
    return tensors, meta


# ----------------------------------------------------------------------------------------------------------
# self-checks of the reference

def naive_forward(model: GPT, tokens, pos):
    """Straight transcription of docs/MODEL.md with Python loops over (b, h, i, j); float64; returns logits."""
    cfg = model.cfg
    P = {n: p.detach().double() for n, p in model.named_parameters()}
    C, NH = cfg.n_embd, cfg.n_head
    hd = C // NH
    Bn, Tn = tokens.shape
    slopes = alibi_slopes(NH, cfg.alibi_max_bias)

    def ln(x, pre):
        mu = x.mean(-1, keepdim=True)
        var = ((x - mu) ** 2).mean(-1, keepdim=True)
        y = (x - mu) / torch.sqrt(var + 1e-5) * P[pre + ".weight"]
        return y + P[pre + ".bias"] if cfg.bias else y

    def lin(x, pre):
        y = x @ P[pre + ".weight"].T
        return y + P[pre + ".bias"] if cfg.bias else y

    x = P["wte"][tokens].clone() * cfg.embed_scale
    for b in range(Bn):
        for t in range(Tn):
            p = int(pos[b, t])
            if cfg.position == "learned":
                x[b, t] += P["wpe"][p]
            elif cfg.position == "sinusoidal":
                for c in range(C):
                    i2 = c - (c % 2)
                    a = p / 10000.0 ** (i2 / C)
                    x[b, t, c] += math.sin(a) if c % 2 == 0 else math.cos(a)
    if cfg.embed_norm:
        x = ln(x, "ln_emb")
    for l in range(cfg.n_layer):
        pre = f"h.{l}"
        qkv = lin(ln(x, pre + ".ln_1"), pre + ".attn.c_attn")
        o = torch.zeros(Bn, Tn, C, dtype=torch.float64)
        for b in range(Bn):
            for h in range(NH):
                q = qkv[b, :, h * hd:(h + 1) * hd].clone()
                k = qkv[b, :, C + h * hd:C + (h + 1) * hd].clone()
                v = qkv[b, :, 2 * C + h * hd:2 * C + (h + 1) * hd]
                if cfg.position == "rope":
                    for t in range(Tn):
                        for i in range(hd // 2):
                            a = int(pos[b, t]) * cfg.rope_base ** (-2 * i / hd)
                            c_, s_ = math.cos(a), math.sin(a)
                            for z in (q, k):
                                x0, x1 = float(z[t, 2 * i]), float(z[t, 2 * i + 1])
                                z[t, 2 * i], z[t, 2 * i + 1] = x0 * c_ - x1 * s_, x0 * s_ + x1 * c_
                for i in range(Tn):
                    s = []
                    for j in range(i + 1):
                        sc = float(q[i] @ k[j]) / math.sqrt(hd)
                        d = int(pos[b, i]) - int(pos[b, j])
                        if cfg.position == "alibi":
                            sc += -slopes[h] * d
                        elif cfg.position == "t5":
                            sc += float(P["t5_bias"][t5_bucket(max(0, d)), h])
                        s.append(sc)
                    mx = max(s)
                    e = [math.exp(z - mx) for z in s]
                    Z = sum(e)
                    o[b, i, h * hd:(h + 1) * hd] = sum((e[j] / Z) * v[j] for j in range(i + 1))
        x = x + lin(o, pre + ".attn.c_proj")
        u = lin(ln(x, pre + ".ln_2"), pre + ".mlp.c_fc")
        if cfg.activation == "gelu":
            g = 0.5 * u * (1 + torch.erf(u / math.sqrt(2)))
        else:
            g = 0.5 * u * (1 + torch.tanh(math.sqrt(2 / math.pi) * (u + 0.044715 * u ** 3)))
        x = x + lin(g, pre + ".mlp.c_proj")
    y = ln(x, "ln_f")
    w = P["wte"] if cfg.tie_embeddings else P["lm_head.weight"]
    return y @ w.T


def self_check():
    from torch.nn.utils.stateless import functional_call
    ok = True
    # 1. vectorized forward vs naive loops, full fixture configs
    for m in FIXTURES:
        cfg, model, _, tokens, targets, pos = build(m)
        model = model.double()
        logits, _ = model(tokens, targets, pos)
        ref = naive_forward(model, tokens, pos)
        err = (logits - ref).abs().max().item()
        ok &= err < 1e-10
        print(f"naive-vs-module {m:10s} max|dlogits| = {err:.2e}")
    # 2. gradcheck (float64 autograd vs central finite differences) on a tiny config, every parameter
    for m in POSITIONS:
        cfg = GPTConfig(vocab_size=7, n_layer=1, n_head=3, n_embd=6, mlp_hidden=5, block_size=24, position=m,
                        bias=(m != "none"), tie_embeddings=(m != "learned"))
        gen = torch.Generator().manual_seed(99)
        model = GPT(cfg)
        randomize(model, gen)
        model = model.double()
        Tg = 20                              # distances up to 19: T5 log bucket 16 is used
        tokens = torch.randint(0, 7, (2, Tg), generator=gen)
        targets = torch.randint(0, 7, (2, Tg), generator=gen)
        pos = torch.arange(Tg).repeat(2, 1)
        pos[1] += 3
        names = [n for n, _ in model.named_parameters()]
        inputs = tuple(p.detach().clone().requires_grad_(True) for _, p in model.named_parameters())

        def f(*ps):
            return functional_call(model, dict(zip(names, ps)), (tokens, targets, pos))[1]

        passed = torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-7, rtol=1e-5, raise_exception=False)
        ok &= passed
        print(f"gradcheck {m:10s} ({sum(p.numel() for p in inputs)} params): {'pass' if passed else 'FAIL'}")
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=OUT_DIR)
    ap.add_argument("--check", action="store_true", help="run the naive-loop and gradcheck self-tests")
    ap.add_argument("--only", nargs="*", default=None, help="write only these fixtures (default: all)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.check and not self_check():
        sys.exit("self-check FAILED")
    os.makedirs(args.out, exist_ok=True)
    for m in FIXTURES if args.only is None else args.only:
        tensors, meta = fixture(m)
        path = os.path.join(args.out, f"{m}.safetensors")
        write_safetensors(path, tensors, meta)
        back, meta2 = read_safetensors(path)
        assert meta2 == meta and set(back) == set(tensors)
        for k, v in tensors.items():
            assert torch.equal(back[k], v.detach().cpu()), k
        al = tensors["adam_losses"].tolist()
        print(f"{m:10s} {os.path.getsize(path):7d} bytes  loss {tensors['loss'].item():.6f}  "
              f"adam {' '.join(f'{x:.6f}' for x in al)}")


if __name__ == "__main__":
    main()
