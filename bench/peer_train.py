#!/usr/bin/python3
"""PyTorch peer for the training-throughput benchmark (the number stretch must beat).

Reference config: byte vocab 256, 6 layers, width 256, 8 heads, MLP 1024, T 256, batch 16, fp32, tied
embeddings, bias on; AdamW(lr 3e-4, betas (0.9, 0.95), weight decay 0.1 on the Linear weights only);
random tokens. Times --steps steps after --warmup steps and prints one JSON line.

Run it at its best (see /work/shared/REFERENCE.md, last section) with Debian's PyTorch:
    bench/peer_env.sh /usr/bin/python3 bench/peer_train.py --position alibi --threads 2
"""
import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools"))
from torch_gpt import GPT, GPTConfig, POSITIONS  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--position", default="alibi", choices=POSITIONS)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--bf16", action="store_true", help="CPU autocast to bfloat16")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    B, T = args.batch, args.seq
    cfg = GPTConfig(vocab_size=256, n_layer=6, n_head=8, n_embd=256, mlp_hidden=1024, block_size=T,
                    position=args.position, bias=True, tie_embeddings=True)
    model = GPT(cfg).train()
    opt_kw = dict(lr=3e-4, betas=(0.9, 0.95), eps=1e-8)
    try:
        opt = torch.optim.AdamW(model.decay_groups(0.1), foreach=True, **opt_kw)
    except TypeError:
        opt = torch.optim.AdamW(model.decay_groups(0.1), **opt_kw)

    gen = torch.Generator().manual_seed(args.seed)
    n_batches = 4
    data = [torch.randint(0, 256, (B, T + 1), generator=gen) for _ in range(n_batches)]

    def step(i):
        d = data[i % n_batches]
        x, y = d[:, :-1], d[:, 1:]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            _, loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    for i in range(args.warmup):
        step(i)
    times = []
    t0 = time.perf_counter()
    for i in range(args.steps):
        ts = time.perf_counter()
        loss = step(i)
        times.append(time.perf_counter() - ts)
    loss = float(loss)
    dt = time.perf_counter() - t0
    med = sorted(times)[len(times) // 2]
    print(json.dumps({
        "peer": "pytorch", "torch": torch.__version__, "position": args.position,
        "tokens_per_s": round(B * T * args.steps / dt, 1), "step_ms": round(1000 * dt / args.steps, 2),
        "step_ms_median": round(1000 * med, 2), "tokens_per_s_median": round(B * T / med, 1),
        "threads": torch.get_num_threads(), "bf16": args.bf16, "batch": B, "seq": T, "steps": args.steps,
        "loss": round(loss, 4),
        "env": {k: os.environ.get(k) for k in ("OMP_PROC_BIND", "OMP_PLACES", "LD_PRELOAD", "LD_LIBRARY_PATH",
                                               "OPENBLAS_CORETYPE")},
    }))


if __name__ == "__main__":
    main()
