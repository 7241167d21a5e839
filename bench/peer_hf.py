#!/usr/bin/env python3
"""PyTorch 2.x peer of bench/hf_real_size.sh and bench/bf16_inference.sh: the same Hugging Face folder in
transformers, float32 (stretch's default) or bfloat16 (--dtype bfloat16: weights and activations in bf16, PyTorch's
fastest CPU inference on a bf16-capable CPU; against stretch --precision bf16), SDPA attention. Prints one JSON line: load seconds, evaluation tokens/s at T tokens with YaRN
(factor F; none when 1), decode tokens/s of N greedy tokens after a P-token prompt, peak RSS.

    python3 bench/peer_hf.py DIR --text FILE --T 4096 --yarn 2 --threads 2 [--decode 32 --prompt 128]
                             [--dtype float32|bfloat16]
The evaluation runs the decoder stack once and the classifier and loss over chunks of 1,024 positions (as stretch
does), so neither side ever holds the whole (T, V) logits: at T = 16,384 and V = 32,000 they would be 2 GB.
"""
import argparse
import json
import resource
import time

import torch
import transformers


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--text", required=True)
    ap.add_argument("--T", type=int, default=4096)
    ap.add_argument("--yarn", type=float, default=2.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--decode", type=int, default=32)
    ap.add_argument("--prompt", type=int, default=128)
    ap.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    cfg = transformers.AutoConfig.from_pretrained(a.dir)
    if a.yarn > 1:
        orig = cfg.max_position_embeddings
        cfg.rope_parameters = {"rope_type": "yarn", "factor": a.yarn, "original_max_position_embeddings": orig,
                               "rope_theta": cfg.rope_parameters["rope_theta"]}
        cfg.max_position_embeddings = int(orig * a.yarn)
    t0 = time.perf_counter()
    model = transformers.AutoModelForCausalLM.from_pretrained(a.dir, config=cfg, dtype=getattr(torch, a.dtype),
                                                              attn_implementation="sdpa")
    model.eval()
    load_s = time.perf_counter() - t0
    tok = transformers.AutoTokenizer.from_pretrained(a.dir)
    with open(a.text, encoding="utf-8") as f:
        ids = tok(f.read(200000)).input_ids[: a.T]
    assert len(ids) == a.T, len(ids)
    x = torch.tensor([ids])
    with torch.no_grad():
        t0 = time.perf_counter()
        hidden = model.model(x).last_hidden_state[0]
        total = 0.0
        for r0 in range(0, a.T - 1, 1024):
            r1 = min(r0 + 1024, a.T - 1)
            logits = model.lm_head(hidden[r0:r1]).float()
            total += torch.nn.functional.cross_entropy(logits, x[0, r0 + 1:r1 + 1], reduction="sum").item()
        eval_s = time.perf_counter() - t0
        nll = total / (a.T - 1)
        del hidden, logits
        t0 = time.perf_counter()
        if a.decode > 0:
            model.generate(x[:, : a.prompt], max_new_tokens=a.decode, min_new_tokens=a.decode, do_sample=False)
        gen_s = time.perf_counter() - t0
    print(json.dumps({"peer": f"torch {torch.__version__} transformers {transformers.__version__}",
                      "load_s": round(load_s, 2), "T": a.T, "eval_tokens_per_s": round(a.T / eval_s, 1),
                      "dtype": a.dtype, "nll": round(nll, 4), "prefill_plus_decode_s": round(gen_s, 2),
                      "decode_tokens": a.decode, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


if __name__ == "__main__":
    main()
