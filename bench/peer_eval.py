#!/usr/bin/python3
"""PyTorch peer for the long-context evaluation benchmark: one forward pass (B = 1, T tokens, loss of every
position) of the reference config (tools/torch_gpt.py), under torch.no_grad(). Prints one JSON line with
tokens/s and the process's peak RSS (run one T per process).
    bench/peer_env.sh /usr/bin/python3 bench/peer_eval.py --T 4096 --position alibi --threads 2

--attn picks how attention is computed (the same math; the loss is the same to float rounding):
  materialized  tools/torch_gpt.py as written: the (NH, T, T) bias-plus-mask tensor (built in float64), then
                scores and probabilities of every head at once. Needs about 4 x NH x T^2 x 4 bytes: killed for
                memory at T = 16k on a 24 GB machine.
  lean          one head at a time, in place: a (T, T) float distance table and a causal mask built once per
                forward, then per head scores = scale q k^T - slope * distance, masked, softmax in place,
                times v. About 2 x T^2 x 4 bytes (2 GB at 16k). What a careful PyTorch user writes for long
                windows.
  sdpa          one head at a time through torch.nn.functional.scaled_dot_product_attention with the head's
                bias as a float mask (PyTorch 2.x; its CPU kernel is a fused flash-style one).
"""
import argparse
import json
import os
import resource
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools"))
import torch_gpt  # noqa: E402
from torch_gpt import GPT, GPTConfig  # noqa: E402


def install_per_head_attention(model, use_sdpa):
    """Replaces the model's bias builder and attention core by per-head versions (alibi and none only)."""
    cfg = model.cfg
    if cfg.position not in ("alibi", "none"):
        raise SystemExit(f"peer_eval.py: --attn lean/sdpa supports alibi and none, not {cfg.position}")
    NH = cfg.n_head
    slopes = torch_gpt.alibi_slopes(NH) if cfg.position == "alibi" else [0.0] * NH

    def attn_bias(pos, B, T, dtype, device):
        if B != 1:
            raise SystemExit("peer_eval.py: --attn lean/sdpa is for B = 1")
        p = pos[0].to(dtype)
        dist = p[:, None] - p[None, :]                        # (T, T) pos_i - pos_j
        return (dist, dist < 0)                               # distance, and the mask of keys after the query

    def core(q, kt, v, bias, scale):
        dist, future = bias
        out = torch.empty_like(q)
        for bh in range(q.shape[0]):
            slope = slopes[bh % NH]
            if use_sdpa:
                m = dist.mul(-slope).masked_fill_(future, float("-inf"))
                out[bh] = torch.nn.functional.scaled_dot_product_attention(
                    q[bh][None], kt[bh].transpose(0, 1)[None], v[bh][None], attn_mask=m[None], scale=scale)[0]
                del m
            else:
                s = torch.mm(q[bh], kt[bh])
                s.mul_(scale)
                if slope:
                    s.add_(dist, alpha=-slope)
                s.masked_fill_(future, float("-inf"))
                s.sub_(s.amax(dim=-1, keepdim=True)).exp_()
                s.div_(s.sum(dim=-1, keepdim=True))
                torch.mm(s, v[bh], out=out[bh])
                del s
        return out

    model._attn_bias = attn_bias
    torch_gpt.attention_core = core


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--T", type=int, default=1024)
    ap.add_argument("--position", default="alibi")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--attn", choices=("materialized", "lean", "sdpa"), default="materialized")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=256, n_layer=6, n_head=8, n_embd=256, mlp_hidden=1024, block_size=a.T,
                    position=a.position, bias=True, tie_embeddings=True)
    model = GPT(cfg).eval()
    if a.attn != "materialized":
        install_per_head_attention(model, a.attn == "sdpa")
    x = torch.randint(0, 256, (1, a.T))
    y = torch.randint(0, 256, (1, a.T))
    best = float("inf")
    with torch.no_grad():
        for _ in range(a.reps):
            t0 = time.perf_counter()
            _, loss = model(x, y)
            best = min(best, time.perf_counter() - t0)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(json.dumps({"peer": "pytorch", "torch": torch.__version__, "position": a.position, "T": a.T,
                      "tokens_per_s": round(a.T / best, 1), "peak_rss_mb": round(rss, 1),
                      "loss": round(float(loss), 4), "threads": a.threads, "attn": a.attn}))


if __name__ == "__main__":
    main()
