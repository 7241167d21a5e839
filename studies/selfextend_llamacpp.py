#!/usr/bin/env python3
"""Exact Self-Extend against llama.cpp's cache-shift Self-Extend, on stories260K, in float64 (docs/RETRIEVAL.md).

    python3 studies/selfextend_llamacpp.py [--data ../shared/data] [--stretch build/stretch]

Both group distances by G beyond a neighbourhood; they differ in how (docs/RETRIEVAL.md, "How llama.cpp's
Self-Extend differs"):
  exact (Jin et al.; stretch --self-extend G,W): two score sets per (query i, key j): i - j < W at the true
      positions, else the query at floor(i/G) + W - floor(W/G) and the key at floor(j/G).
  llama.cpp (llama-passkey with --grp-attn-n G and a batch of W tokens): one score set. The prompt goes in blocks
      of W tokens; after each block the cached keys' positions are shifted and divided by G (llama_kv_cache_seq_add
      / seq_div, keys re-rotated), so once block b is being processed, a key j of an earlier block is at floor(j/G)
      and a token of block b (query or key) at b W/G + (its index - b W).
The model is llama2.c's stories260K (trained at 512), read with tools/make_llama_fixtures.py's own reader into
tools/torch_llama.py's modules; the attention is written out here per head over the whole T x T matrix. Text:
TinyStories valid.txt split at "\\n\\n", each story stripped, BOS + SentencePiece tok512 ids (stretch's --doc-sep
protocol); chunked windows (the first token of each window is context only), the first 8192 tokens' windows.

Prints per (T, G, W): mean NLL of plain RoPE, exact Self-Extend and llama.cpp's, the mean |NLL difference| and
mean KL(exact || llama.cpp) per token, and the largest logit difference; and, when --stretch is given, stretch's
own `eval --self-extend G,W` NLL over the same windows (a check of the C++ at this scale). JSON to --json.
"""
import argparse
import json
import math
import os
import subprocess
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tools"))
from make_llama_fixtures import read_llama2c  # noqa: E402
from torch_llama import rope_inv_freq  # noqa: E402

CASES = [(2048, 8, 128), (4096, 16, 128), (4096, 8, 256)]   # (T, G, W)
TOKENS = 8192


def rotate(x, p, inv):
    """x (T, hd), positions p (T,) float64 -> rotated (interleaved pairs)."""
    ang = p[:, None] * inv[None, :]
    c, s = torch.cos(ang), torch.sin(ang)
    x0, x1 = x[:, 0::2], x[:, 1::2]
    return torch.stack((x0 * c - x1 * s, x0 * s + x1 * c), dim=-1).flatten(-2)


def head_scores(q, k, T, mode, G, W, inv):
    """q, k (T, hd) of one head (unrotated) -> scores (T, T), causal, -inf above the diagonal."""
    hd = q.shape[1]
    idx = torch.arange(T, dtype=torch.float64)
    i, j = idx[:, None], idx[None, :]
    if mode == "plain" or mode == "exact":
        s = rotate(q, idx, inv) @ rotate(k, idx, inv).T
        if mode == "exact":
            fq = torch.floor(idx / G) + W - (W // G)
            fk = torch.floor(idx / G)
            sf = rotate(q, fq, inv) @ rotate(k, fk, inv).T
            s = torch.where(i - j < W, s, sf)
    else:  # llama.cpp: block b's rows see earlier blocks at floor(j/G), their own block at b W/G + offset
        s = torch.empty(T, T, dtype=torch.float64)
        for b in range((T + W - 1) // W):
            r0, r1 = b * W, min(T, (b + 1) * W)
            base = b * (W // G)
            kp = torch.cat([torch.floor(idx[:r0] / G), base + (idx[r0:r1] - r0)])
            qp = base + (idx[r0:r1] - r0)
            s[r0:r1, :r1] = rotate(q[r0:r1], qp, inv) @ rotate(k[:r1], kp, inv).T
            s[r0:r1, r1:] = 0.0
    s = s / math.sqrt(hd)
    return s.masked_fill(j > i, float("-inf"))


@torch.no_grad()
def logits_of(model, tokens, mode, G, W):
    cfg = model.cfg
    T = tokens.shape[0]
    C, NH, NKV, hd = cfg.n_embd, cfg.n_head, cfg.n_kv_head, cfg.head_dim
    inv = rope_inv_freq(hd, cfg.rope_base)
    x = model.tok_embeddings(tokens)
    for blk in model.layers:
        qkv = blk.attention.wqkv(blk.attention_norm(x))
        q = qkv[:, :C].reshape(T, NH, hd)
        k = qkv[:, C:C + NKV * hd].reshape(T, NKV, hd)
        v = qkv[:, C + NKV * hd:].reshape(T, NKV, hd)
        o = torch.empty(T, NH, hd, dtype=torch.float64)
        for h in range(NH):
            g = h // (NH // NKV)
            p = torch.softmax(head_scores(q[:, h], k[:, g], T, mode, G, W, inv), dim=-1)
            o[:, h] = p @ v[:, g]
        x = x + blk.attention.wo(o.reshape(T, C))
        x = x + blk.feed_forward(blk.ffn_norm(x))
    w = model.tok_embeddings.weight if cfg.tie_embeddings else model.output.weight
    return model.norm(x) @ w.T


def stories_tokens(data):
    import sentencepiece as spm
    sp = spm.SentencePieceProcessor(model_file=os.path.join(data, "llama2c", "tok512.model"))
    text = open(os.path.join(data, "tinystories", "valid.txt"), encoding="utf-8").read()
    ids = []
    for story in text.split("\n\n"):
        story = story.strip()
        if story:
            ids += [1] + sp.encode(story)
        if len(ids) > TOKENS + 1:
            break
    return ids[:TOKENS]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=os.path.join(os.path.dirname(REPO), "shared", "data"))
    ap.add_argument("--stretch", default=os.path.join(REPO, "build", "stretch"))
    ap.add_argument("--run", default="", help="an imported stories260K run for --stretch (default: import one)")
    ap.add_argument("--json", default="")
    a = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("THREADS", "1")))
    cfg, model = read_llama2c(os.path.join(a.data, "llama2c", "stories260K.bin"))
    ids = stories_tokens(a.data)
    out = []
    for T, G, W in CASES:
        res = {"T": T, "G": G, "W": W}
        sums = {"plain": 0.0, "exact": 0.0, "llamacpp": 0.0}
        n = 0
        dnll = kl = 0.0
        dmax = 0.0
        for s0 in range(0, TOKENS - T + 1, T):   # whole windows only
            tok = torch.tensor(ids[s0:s0 + T])
            tgt = tok[1:]
            lp = {}
            for mode in sums:
                lg = logits_of(model, tok, mode, G, W)[:-1]
                lp[mode] = torch.log_softmax(lg, dim=-1)
                sums[mode] += -lp[mode].gather(1, tgt[:, None]).sum().item()
            ne = -lp["exact"].gather(1, tgt[:, None])[:, 0]
            nl = -lp["llamacpp"].gather(1, tgt[:, None])[:, 0]
            dnll += (ne - nl).abs().sum().item()
            kl += (lp["exact"].exp() * (lp["exact"] - lp["llamacpp"])).sum().item()
            dmax = max(dmax, (lp["exact"] - lp["llamacpp"]).abs().max().item())
            n += T - 1
        res.update({k + "_nll": v / n for k, v in sums.items()})
        res.update({"tokens": n, "mean_abs_dnll": dnll / n, "mean_kl": kl / n, "max_abs_dlogprob": dmax})
        if a.stretch and os.path.exists(a.stretch):
            run = a.run or os.path.join("/tmp", "selfextend_llamacpp_s260")
            if not a.run and not os.path.isdir(run):
                subprocess.run([a.stretch, "import", "llama2c", os.path.join(a.data, "llama2c", "stories260K.bin"),
                                "--tokenizer", os.path.join(a.data, "llama2c", "tok512.bin"), "--out", run],
                               check=True, capture_output=True)
            js = os.path.join("/tmp", f"selfextend_llamacpp_{T}_{G}_{W}.json")
            subprocess.run([a.stretch, "eval", run, "--text", os.path.join(a.data, "tinystories", "valid.txt"),
                            "--doc-sep", "\\n\\n", "--protocol", "chunked", "--lengths", str(T), "--self-extend",
                            f"{G},{W}", "--max-tokens", str(n), "--batch-tokens", str(T), "--threads", "1",
                            "--json", js], check=True, capture_output=True)
            r = json.load(open(js))["models"][0]["results"][0]
            res["stretch_exact_nll"], res["stretch_tokens"] = r["nll"], r["tokens"]
        print(json.dumps(res), flush=True)
        out.append(res)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
