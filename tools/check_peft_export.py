#!/usr/bin/env python3
"""Check `stretch lora extract --format peft` against PyPI's peft itself (run by hand; needs torch, transformers and
peft; not in CI).

For each family (Llama with GQA, GPT-2 with a fused c_attn adapted on q and v only, MPT, BLOOM): a small model
trained here for a few steps, LoRA fine-tuned (with --train-also norm for the Llama), its adapter written as a PEFT
folder with the run's base beside it (--base-out), and the run merged and exported with `stretch export hf`. In
transformers: PeftModel.from_pretrained(base, adapter) must give the merged export's logits (max |diff| below 1e-5
of the largest logit) and differ from the base's.

    python3 tools/check_peft_export.py [--stretch build/stretch] [--keep DIR]

Prints one line per family and exits non-zero when any differs.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEXT = os.path.join(os.path.dirname(ROOT), "shared", "data", "tinystories", "train.txt")

CASES = [
    # name, train flags, finetune flags, export --as
    ("llama", "--arch llama --position rope --kv-heads 2 --length 64",
     "--lora 4 --lora-targets q,k,v,o,gate,up,down --train-also norm --length 128 --rope-scaling linear:2", "auto"),
    ("gpt2", "--position learned --length 32", "--lora 3 --lora-alpha 5 --lora-targets q,v,o,up,down", "auto"),
    ("mpt", "--position alibi --no-bias --activation gelu --length 32", "--lora 2 --lora-targets q,k,v,o,up,down",
     "auto"),
    ("bloom", "--position alibi --embed-norm --length 32", "--lora 2 --lora-targets q,k,v,o,up,down", "bloom"),
]


def sh(args):
    r = subprocess.run(args, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(" ".join(args) + " failed:\n" + r.stdout + r.stderr)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--stretch", default=os.path.join(ROOT, "build", "stretch"))
    ap.add_argument("--keep")
    a = ap.parse_args()
    work = a.keep or tempfile.mkdtemp(prefix="peft-check-")
    os.makedirs(work, exist_ok=True)
    text = TEXT if os.path.exists(TEXT) else sys.exit("needs " + TEXT)
    bad = 0
    for name, train, ft, as_ in CASES:
        d = os.path.join(work, name)
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        common = ["--text", text, "--batch", "8", "--quiet", "--cache-dir", os.path.join(work, "cache")]
        sh([a.stretch, "train", *common, "--layers", "2", "--width", "64", "--heads", "4", "--steps", "20",
            *train.split(), "--out", os.path.join(d, "base")])
        sh([a.stretch, "finetune", os.path.join(d, "base"), *common, "--steps", "30", "--lr", "3e-3", *ft.split(),
            "--out", os.path.join(d, "lora")])
        sh([a.stretch, "lora", "extract", os.path.join(d, "lora"), "--format", "peft", "--as", as_,
            "--out", os.path.join(d, "peft"), "--base-out", os.path.join(d, "peft-base")])
        sh([a.stretch, "export", "hf", os.path.join(d, "lora"), "--as", as_, "--out", os.path.join(d, "merged")])
        torch.manual_seed(0)
        ids = torch.randint(0, 200, (2, 32))
        base = AutoModelForCausalLM.from_pretrained(os.path.join(d, "peft-base"), dtype=torch.float32)
        with torch.no_grad():
            lb = base(ids).logits
        peft = PeftModel.from_pretrained(base, os.path.join(d, "peft")).eval()
        merged = AutoModelForCausalLM.from_pretrained(os.path.join(d, "merged"), dtype=torch.float32)
        with torch.no_grad():
            la = peft(ids).logits
            lm = merged(ids).logits
        diff = (la - lm).abs().max().item()
        scale = lm.abs().max().item()
        change = (la - lb).abs().max().item()
        ok = diff <= 1e-5 * max(1.0, scale) and change > 1e-3
        bad += not ok
        print(f"{name:6s} {'ok ' if ok else 'BAD'} peft vs merged export: max |diff| {diff:.2e} (largest logit "
              f"{scale:.2f}); the adapter moves the logits by {change:.3f}")
    if not a.keep:
        shutil.rmtree(work, ignore_errors=True)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
