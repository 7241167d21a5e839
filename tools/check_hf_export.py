#!/usr/bin/env python3
"""Check `stretch export hf` against transformers itself (run by hand; needs PyPI's torch and transformers; not in CI).

For each model: a stretch run (trained here for a few steps, imported, or given with --run), exported with
`stretch export hf`, loaded offline with AutoModelForCausalLM / AutoTokenizer, and compared with stretch on
  1. token ids: AutoTokenizer's ids of a text equal the ids stretch scores (checked through 2.),
  2. the mean NLL of the text under the chunked protocol at the model's length (stretch eval --protocol chunked vs
     the same windows in transformers), within 1e-4 relative,
  3. a greedy continuation of 24 tokens (stretch generate -t 0 vs model.generate(do_sample=False)), equal text
     (prompt and continuation decoded together, special tokens skipped: stretch's streaming output omits them).

    python3 tools/check_hf_export.py [--stretch build/stretch] [--keep OUT] [--run RUN ...]

Prints one line per model and exits non-zero when any differs.
"""
import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile

import torch
import transformers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(ROOT), "shared", "data")
PROMPT = "Once upon a time, there was a little"


def sh(*args, **kw):
    r = subprocess.run([str(a) for a in args], capture_output=True, **kw)
    # invalid UTF-8 (a random model's bytes) as U+FFFD, as transformers' decode shows it
    out, err = r.stdout.decode("utf-8", "replace"), r.stderr.decode("utf-8", "replace")
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, args))}\n{out}\n{err}")
    return out


def training_text(d):
    src = os.path.join(SHARED, "tinystories", "train.txt")
    text = open(src, encoding="utf-8").read()[:300000] if os.path.exists(src) else \
        " ".join(f"Once upon a time there was a little cat number {i}. It liked to play in the sun." for i in range(3000))
    p = os.path.join(d, "train.txt")
    open(p, "w", encoding="utf-8").write(text)
    valid = os.path.join(SHARED, "tinystories", "valid.txt")
    vtext = open(valid, encoding="utf-8").read()[:20000] if os.path.exists(valid) else text[-20000:]
    vp = os.path.join(d, "valid.txt")
    open(vp, "w", encoding="utf-8").write(vtext)
    return p, vp


def make_runs(stretch, d, train):
    """Small models of every exportable kind, a few training steps each."""
    runs = {}
    common = ["--text", train, "--steps", "30", "--batch", "4", "--layers", "2", "--length", "64", "--quiet",
              "--eval-interval", "0"]
    gpt2_bpe = os.path.join(SHARED, "gpt2-bpe")
    kinds = {
        "llama_rope": ["--arch", "llama", "--position", "rope", "--kv-heads", "2"],
        "llama_qkv_bias_window": ["--arch", "llama", "--position", "rope", "--qkv-bias", "--attn-window", "16"],
        "llama_window": ["--arch", "llama", "--position", "rope", "--attn-window", "16"],
        "gpt_alibi_mpt": ["--position", "alibi", "--no-bias", "--activation", "gelu"],
        "gpt_alibi_bloom": ["--position", "alibi", "--embed-norm", "--heads", "6", "--width", "72"],
        "gpt_learned": ["--position", "learned", "--untied"],
        "gpt_sinusoidal_sqrt": ["--position", "sinusoidal", "--embed-scale", "sqrt"],
    }
    if os.path.isdir(gpt2_bpe):
        kinds["gpt_learned_gpt2bpe"] = ["--position", "learned", "--tokenizer", "gpt2", "--bpe-dir", gpt2_bpe]
    for name, extra in kinds.items():
        out = os.path.join(d, name)
        shape = [] if "--heads" in extra else ["--width", "64", "--heads", "4"]
        sh(stretch, "train", *common, *shape, *extra, "--out", out)
        runs[name] = out
    # a rope scaling carried in the checkpoint: fine-tune llama_rope at 2x with yarn
    out = os.path.join(d, "llama_rope_yarn2")
    sh(stretch, "finetune", runs["llama_rope"], "--text", train, "--steps", "5", "--batch", "2", "--length", "128",
       "--rope-scaling", "yarn:2", "--quiet", "--eval-interval", "0", "--out", out)
    runs["llama_rope_yarn2"] = out
    s260 = os.path.join(SHARED, "llama2c")
    if os.path.exists(os.path.join(s260, "stories260K.bin")):
        out = os.path.join(d, "stories260k")
        sh(stretch, "import", "llama2c", os.path.join(s260, "stories260K.bin"), "--tokenizer",
           os.path.join(s260, "tok512.bin"), "--out", out)
        runs["stories260k_llama2c_tokenizer"] = out
    for case in ("qwen2", "mpt", "bloom", "gpt2"):
        out = os.path.join(d, "imported_" + case)
        sh(stretch, "import", "hf", os.path.join(ROOT, "tests", "fixtures", "hf", case), "--out", out)
        runs["imported_" + case] = out
    return runs


def stretch_nll(stretch, run, text, T):
    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        sh(stretch, "eval", run, "--text", text, "--lengths", str(T), "--protocol", "chunked", "--json", f.name,
           "--cache-dir", os.path.join(os.path.dirname(f.name), "stretch-check-cache"))
        j = json.load(open(f.name))
    row = j["models"][0]["results"][0]
    return row["nll"], row["tokens"]


def hf_nll(model, tok, text, T):
    ids = tok(open(text, encoding="utf-8").read()).input_ids
    total, n = 0.0, 0
    with torch.no_grad():
        for s in range(0, len(ids), T):
            w = torch.tensor([ids[s:s + T]])
            if w.shape[1] < 2:
                continue
            logits = model(w).logits[0, :-1].double()
            total += torch.nn.functional.cross_entropy(logits, w[0, 1:], reduction="sum").item()
            n += w.shape[1] - 1
    return total / n, n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--stretch", default=os.path.join(ROOT, "build", "stretch"))
    ap.add_argument("--keep", help="keep the runs and exported folders here")
    ap.add_argument("--run", nargs="*", default=None, help="check these runs instead of making them")
    a = ap.parse_args()
    torch.set_num_threads(2)
    d = a.keep or tempfile.mkdtemp(prefix="stretch-hf-check-")
    os.makedirs(d, exist_ok=True)
    train, valid = training_text(d)
    runs = {os.path.basename(r.rstrip("/")): r for r in a.run} if a.run else make_runs(a.stretch, d, train)
    failed = 0
    for name, run in runs.items():
        for dtype in ("f32", "bf16") if name == "llama_rope" else ("f32",):
            out = os.path.join(d, f"{name}_hf_{dtype}")
            shutil.rmtree(out, ignore_errors=True)
            msg = sh(a.stretch, "export", "hf", run, "--out", out, "--dtype", dtype).strip()
            model = transformers.AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32,
                                                                      attn_implementation="eager").eval()
            tok = transformers.AutoTokenizer.from_pretrained(out)
            cfg = json.load(open(os.path.join(out, "config.json")))
            T = cfg.get("max_position_embeddings") or cfg.get("n_positions") or cfg.get("max_seq_len") or \
                cfg.get("seq_length")
            T = min(T, 256)
            if dtype == "bf16":  # compare with the bf16-rounded weights imported back into stretch
                back = os.path.join(d, f"{name}_bf16_back")
                shutil.rmtree(back, ignore_errors=True)
                sh(a.stretch, "import", "hf", out, "--out", back)
                ref_run = back
            else:
                ref_run = run
            ours, k_ours = stretch_nll(a.stretch, ref_run, valid, T)
            theirs, k_theirs = hf_nll(model, tok, valid, T)
            gen = sh(a.stretch, "generate", ref_run, "--prompt", PROMPT, "-n", "24", "-t", "0", "--ignore-eos")
            ids = tok(PROMPT, return_tensors="pt").input_ids
            with torch.no_grad():
                g = model.generate(ids, max_new_tokens=24, min_new_tokens=24, do_sample=False,
                                   pad_token_id=tok.eos_token_id or 0)
            # the whole sequence decoded (a continuation decoded alone loses its leading space under SentencePiece's
            # Strip decoder); special tokens, which stretch's streaming output does not print, skipped
            hf_text = tok.decode(g[0], skip_special_tokens=True)
            ok_nll = k_ours == k_theirs and abs(ours - theirs) <= 1e-4 * abs(theirs)
            ok_gen = gen.rstrip("\n") == hf_text
            status = "ok" if ok_nll and ok_gen else "DIFFERS"
            failed += status != "ok"
            print(f"{name:32s} {dtype:4s} {cfg['architectures'][0]:20s} NLL stretch {ours:.6f} ({k_ours} tokens) "
                  f"transformers {theirs:.6f} ({k_theirs}); greedy {'equal' if ok_gen else 'DIFFERENT'}: {status}")
            if not ok_gen:
                print(f"    stretch:      {gen.rstrip()!r}\n    transformers: {hf_text!r}")
    print(f"{len(runs)} runs checked in {d}; {failed} differ")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
