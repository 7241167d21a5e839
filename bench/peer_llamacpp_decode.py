#!/usr/bin/env python3
"""llama.cpp peer of bench/bench_decode: tokens/s of cached one-token-at-a-time greedy decoding after filling the
cache to ctx - new tokens, B = 1, with llama.cpp's own kernels through llama-cpp-python (outside CI: it builds
llama.cpp; tools/llamacpp_env.sh runs this against a llama.cpp built apart). Prints one JSON line like bench_decode.

    tools/llamacpp_env.sh python3 bench/peer_llamacpp_decode.py MODEL.gguf --ctx 8192 --new 32 --threads 2 \
        [--kv-type f16|bf16|f32]

The prompt and the fed tokens are random ids (seeded; bench_decode feeds its greedy choices: the same work); the weights' type is the GGUF's (stretch export gguf
--type f16 | bf16 | q8_0).
"""
import argparse
import json
import random
import resource
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("gguf")
    ap.add_argument("--ctx", type=int, default=512)
    ap.add_argument("--new", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--kv-type", choices=["f32", "f16", "bf16"], default="f16")
    a = ap.parse_args()
    import llama_cpp

    ggml_type = {"f32": llama_cpp.GGML_TYPE_F32, "f16": llama_cpp.GGML_TYPE_F16, "bf16": getattr(llama_cpp, "GGML_TYPE_BF16", 30)}
    llm = llama_cpp.Llama(a.gguf, n_ctx=a.ctx, n_batch=512, n_ubatch=512, n_threads=a.threads,
                          n_threads_batch=a.threads, type_k=ggml_type[a.kv_type], type_v=ggml_type[a.kv_type],
                          verbose=False)
    rng = random.Random(3)
    V = llm.n_vocab()
    prompt = [3 + rng.randrange(V - 3) for _ in range(a.ctx - a.new)]
    t0 = time.perf_counter()
    llm.eval(prompt)
    prefill = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(a.new):  # random ids: the work per token does not depend on which (and the scores array of
        llm.eval([3 + rng.randrange(V - 3)])  # llama-cpp-python holds n_batch rows only)
    decode = time.perf_counter() - t0
    print(json.dumps({"impl": "llama.cpp " + getattr(llama_cpp, "__version__", "?"), "ctx": a.ctx, "new": a.new,
                      "kv_type": a.kv_type, "decode_tokens_per_s": round(a.new / decode, 1),
                      "prefill_tokens_per_s": round(len(prompt) / prefill, 1),
                      "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                      "threads": a.threads}))


if __name__ == "__main__":
    main()
