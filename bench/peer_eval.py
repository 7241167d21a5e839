#!/usr/bin/python3
"""PyTorch peer for the long-context evaluation benchmark: one forward pass (B = 1, T tokens, loss of every
position) of the reference config with materialized attention (tools/torch_gpt.py), under torch.no_grad().
Prints one JSON line with tokens/s and the process's peak RSS (run one T per process).
    bench/peer_env.sh /usr/bin/python3 bench/peer_eval.py --T 4096 --position alibi --threads 2
"""
import argparse
import json
import os
import resource
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools"))
from torch_gpt import GPT, GPTConfig  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--T", type=int, default=1024)
    ap.add_argument("--position", default="alibi")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=256, n_layer=6, n_head=8, n_embd=256, mlp_hidden=1024, block_size=a.T,
                    position=a.position, bias=True, tie_embeddings=True)
    model = GPT(cfg).eval()
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
                      "loss": round(float(loss), 4), "threads": a.threads}))


if __name__ == "__main__":
    main()
