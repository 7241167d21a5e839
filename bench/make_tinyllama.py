#!/usr/bin/env python3
"""A 1B-class model for the real-size benchmark: random weights with TinyLlama-1.1B's shapes (hidden 2048, 22 layers,
32 heads, 4 key/value heads, MLP 5632, vocabulary 32000, trained length 2048, untied), made by transformers and
saved in BF16 shards of at most 1 GB, with a SentencePiece-style BPE tokenizer of 32,000 tokens trained here on a
text file (LLaMA 2's form: Metaspace, byte fallback). Nothing is downloaded; the folder is not committed (~2.2 GB).

    python3 bench/make_tinyllama.py OUT [--text ../shared/data/wikitext/wikitext-2/wiki.train.tokens]
"""
import argparse
import os

import torch
import transformers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--text", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared",
                                                   "data", "wikitext", "wikitext-2", "wiki.train.tokens"))
    args = ap.parse_args()
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=32000, hidden_size=2048, intermediate_size=5632, num_hidden_layers=22,
                                   num_attention_heads=32, num_key_value_heads=4, max_position_embeddings=2048,
                                   rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=False,
                                   bos_token_id=1, eos_token_id=2)
    with torch.device("cpu"):
        model = transformers.LlamaForCausalLM(cfg).to(torch.bfloat16)
    model.save_pretrained(args.out, max_shard_size="1GB")
    del model
    tok = Tokenizer(models.BPE(byte_fallback=True, unk_token="<unk>", fuse_unk=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first")
    tok.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    specials = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    trainer = trainers.BpeTrainer(vocab_size=32000, special_tokens=specials, show_progress=False)
    with open(args.text, encoding="utf-8") as f:
        lines = f.readlines()
    tok.train_from_iterator(lines, trainer)
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                                unk_token="<unk>", add_bos_token=True)
    fast.save_pretrained(args.out)
    print(f"wrote {args.out}: LlamaForCausalLM (TinyLlama-1.1B shapes, random BF16 weights), tokenizer "
          f"{tok.get_vocab_size()} tokens")


if __name__ == "__main__":
    main()
