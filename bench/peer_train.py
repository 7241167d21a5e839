#!/usr/bin/python3
"""PyTorch peer for the training-throughput benchmark (the number stretch must beat).

Reference config: byte vocab 256, 6 layers, width 256, 8 heads, MLP 1024, T 256, batch 16, fp32, tied
embeddings, bias on; AdamW(lr 3e-4, betas (0.9, 0.95), weight decay 0.1 on the Linear weights only);
random tokens. Times --steps steps after --warmup steps and prints one JSON line (tokens_per_s over all timed
steps; the median and fastest step too, since this 2-core VM is often shared).

The model is tools/torch_gpt.py. Its attention core (baddbmm + softmax + bmm over the B*NH batch) is by default
(--attn split) run as two halves on two single-threaded, pinned worker threads: PyTorch 1.13's CPU bmm runs one
small GEMM after another, each multi-threaded, which scales badly and collapses when the other core is busy.
Same ops and math (checked against the plain core in float64 at start-up); --attn bmm gives the plain path.

Run it at its best (see /work/shared/REFERENCE.md, last section) with Debian's PyTorch:
    bench/peer_env.sh /usr/bin/python3 bench/peer_train.py --position alibi --threads 2
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
from torch_gpt import GPT, GPTConfig, POSITIONS  # noqa: E402


class SplitAttention:
    """Attention core run as `threads` batch chunks, each on its own pinned worker thread doing 1-thread GEMMs.

    PyTorch 1.13's CPU bmm loops over the batch and runs every small (T x hd x T) GEMM multi-threaded, which
    scales badly (2 threads: slower than 1). Splitting the B*NH batch across single-threaded workers keeps both
    cores busy. Same math as torch_gpt.default_attention_core (checked at start-up against it)."""

    def __init__(self, threads: int):
        import concurrent.futures
        import itertools
        cpus = list(range(os.cpu_count() or threads))
        counter = itertools.count()

        def init():
            i = next(counter)
            torch.set_num_threads(1)          # OpenMP: per-thread setting, the main thread keeps its own
            try:
                os.sched_setaffinity(0, {cpus[i % len(cpus)]})
            except OSError:
                pass

        self.n = threads
        self.pool = concurrent.futures.ThreadPoolExecutor(threads, initializer=init)
        list(self.pool.map(lambda _: None, range(threads)))
        run = self.run

        class Core(torch.autograd.Function):
            @staticmethod
            def forward(ctx, q, kt, v, bias, scale):
                BH, T, hd = q.shape
                o = q.new_empty(BH, T, hd)
                bias = bias.expand(BH, T, T)

                def work(sl):
                    p = torch.softmax(torch.baddbmm(bias[sl], q[sl], kt[sl], alpha=scale), dim=-1)
                    torch.bmm(p, v[sl], out=o[sl])
                    return p

                ctx.p = run(work, BH)             # softmax probabilities, one tensor per chunk
                ctx.scale = scale
                ctx.bias_grad = ctx.needs_input_grad[3]
                ctx.save_for_backward(q, kt, v)
                return o

            @staticmethod
            def backward(ctx, go):
                q, kt, v = ctx.saved_tensors
                ps, scale = ctx.p, ctx.scale
                go = go.contiguous()
                dq, dkt, dv = torch.empty_like(q), torch.empty_like(kt), torch.empty_like(v)
                BH, T, _ = q.shape
                ds_all = q.new_empty(BH, T, T) if ctx.bias_grad else None

                def work(sl, p):
                    torch.bmm(p.transpose(1, 2), go[sl], out=dv[sl])
                    dp = torch.bmm(go[sl], v[sl].transpose(1, 2))
                    ds = torch._softmax_backward_data(dp, p, -1, p.dtype)
                    torch.bmm(ds, kt[sl].transpose(1, 2), out=dq[sl]).mul_(scale)
                    torch.bmm(q[sl].transpose(1, 2), ds, out=dkt[sl]).mul_(scale)
                    if ds_all is not None:
                        ds_all[sl] = ds

                run(work, BH, ps)
                ctx.p = None
                return dq, dkt, dv, ds_all, None

        self.core = Core

    def run(self, work, BH, extra=None):
        step = (BH + self.n - 1) // self.n
        sls = [slice(i, min(BH, i + step)) for i in range(0, BH, step)]
        args = [(sl,) if extra is None else (sl, e) for sl, e in zip(sls, extra or [None] * len(sls))]
        def job(*a):
            with torch.no_grad():                 # grad mode is thread-local; workers must not record
                return work(*a)

        futs = [self.pool.submit(job, *a) for a in args]
        return [f.result() for f in futs]

    def __call__(self, q, kt, v, attn_bias, scale):
        if torch.is_autocast_cpu_enabled():
            return torch_gpt.default_attention_core(q, kt, v, attn_bias, scale)
        return self.core.apply(q.contiguous(), kt.contiguous(), v.contiguous(), attn_bias, scale)


def check_core(core):
    torch.manual_seed(1)
    BH, T, hd = 6, 33, 4
    q, kt, v = (torch.randn(*s, dtype=torch.float64, requires_grad=True) for s in
                ((BH, T, hd), (BH, hd, T), (BH, T, hd)))
    bias = torch.randn(BH, T, T, dtype=torch.float64).masked_fill(
        ~torch.ones(T, T, dtype=torch.bool).tril(), float("-inf")).requires_grad_(True)
    go = torch.randn(BH, T, hd, dtype=torch.float64)
    outs = []
    for f in (torch_gpt.default_attention_core, core):
        o = f(q, kt, v, bias, 0.5)
        g = torch.autograd.grad(o, (q, kt, v, bias), go)
        outs.append((o,) + g)
    for a, b in zip(*outs):
        a, b = a.nan_to_num(0.0), b.nan_to_num(0.0)
        assert torch.allclose(a, b, atol=1e-12, rtol=1e-10), (a - b).abs().max()


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
    ap.add_argument("--attn", choices=("bmm", "split"), default=None,
                    help="bmm: torch.baddbmm/softmax/bmm as in tools/torch_gpt.py; split: the same ops with the "
                         "B*NH batch split across single-threaded pinned workers (faster on PyTorch 1.13). "
                         "Default: split on PyTorch 1.x, bmm on 2.x, where torch.set_num_threads is process-wide "
                         "(a worker's set_num_threads(1) would leave the whole model on one thread)")
    args = ap.parse_args()
    torch_major = int(torch.__version__.split(".")[0])
    if args.attn is None:
        args.attn = "split" if torch_major < 2 else "bmm"
    if args.attn == "split" and torch_major >= 2:
        sys.exit("peer_train.py: --attn split needs PyTorch 1.x (per-thread set_num_threads); this is " +
                 torch.__version__ + ", use --attn bmm")

    torch.set_num_threads(args.threads)
    if args.attn == "split":
        torch_gpt.attention_core = SplitAttention(args.threads)
        check_core(torch_gpt.attention_core)
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
        "step_ms_min": round(1000 * min(times), 2),
        "threads": torch.get_num_threads(), "attn": args.attn, "bf16": args.bf16, "batch": B, "seq": T,
        "steps": args.steps,
        "loss": round(loss, 4),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1),
        "env": {k: os.environ.get(k) for k in ("OMP_PROC_BIND", "OMP_PLACES", "LD_PRELOAD", "LD_LIBRARY_PATH",
                                               "OPENBLAS_CORETYPE")},
    }))


if __name__ == "__main__":
    main()
