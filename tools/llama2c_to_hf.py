#!/usr/bin/env python3
"""Convert a llama2.c checkpoint (stories260K.bin) and its SentencePiece tokenizer (tok512.model) into a Hugging
Face LlamaForCausalLM folder with transformers itself, independently of stretch: the same model in the format its
users have. tools/check_hf_stories260k.sh then imports the folder with `stretch import hf` and requires the NLL table
of `stretch import llama2c` (../shared/REFERENCE.md).

    python3 tools/llama2c_to_hf.py ../shared/data/llama2c/stories260K.bin ../shared/data/llama2c/tok512.model OUT

llama2.c rotates interleaved pairs (2i, 2i+1) of each head; transformers' LLaMA rotates the halves (i, i + hd/2), so
the q and k rows of every head are reordered (hf[i] = ours[2i], hf[i + hd/2] = ours[2i + 1]), as Meta's weights are
by transformers' own conversion script. The tokenizer is converted by transformers (AutoTokenizer on the .model
file with tokenizer_class LlamaTokenizer, legacy), and saved as tokenizer.json. Needs PyPI's torch, transformers,
sentencepiece and protobuf.
"""
import json
import os
import shutil
import sys
import tempfile

import torch
import transformers

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_llama_fixtures import read_llama2c  # noqa: E402  (an independent reader of llama2.c's format)


def to_rotate_half(w, heads, hd):
    """(heads * hd, C) rows in interleaved-pair order -> transformers' half-split order."""
    w = w.reshape(heads, hd // 2, 2, -1)
    return w.transpose(1, 2).reshape(heads * hd, -1)


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    bin_path, tok_path, out = sys.argv[1:]
    cfg, model = read_llama2c(bin_path)
    sd = {k: v.float() for k, v in model.state_dict().items()}
    C, KVD, hd, F = cfg.n_embd, cfg.kv_dim, cfg.head_dim, cfg.mlp_hidden
    hf = transformers.LlamaConfig(vocab_size=cfg.vocab_size, hidden_size=C, intermediate_size=F,
                                  num_hidden_layers=cfg.n_layer, num_attention_heads=cfg.n_head,
                                  num_key_value_heads=cfg.n_kv_head, max_position_embeddings=cfg.block_size,
                                  rms_norm_eps=cfg.norm_eps, rope_theta=cfg.rope_base,
                                  tie_word_embeddings=cfg.tie_embeddings, bos_token_id=1, eos_token_id=2)
    m = transformers.LlamaForCausalLM(hf)
    state = {"model.embed_tokens.weight": sd["tok_embeddings.weight"], "model.norm.weight": sd["norm.weight"]}
    for l in range(cfg.n_layer):
        p, q = f"layers.{l}.", f"model.layers.{l}."
        wqkv = sd[p + "attention.wqkv.weight"]
        state[q + "self_attn.q_proj.weight"] = to_rotate_half(wqkv[:C], cfg.n_head, hd)
        state[q + "self_attn.k_proj.weight"] = to_rotate_half(wqkv[C:C + KVD], cfg.n_kv_head, hd)
        state[q + "self_attn.v_proj.weight"] = wqkv[C + KVD:]
        state[q + "self_attn.o_proj.weight"] = sd[p + "attention.wo.weight"]
        state[q + "input_layernorm.weight"] = sd[p + "attention_norm.weight"]
        state[q + "post_attention_layernorm.weight"] = sd[p + "ffn_norm.weight"]
        w13 = sd[p + "feed_forward.w13.weight"]
        state[q + "mlp.gate_proj.weight"] = w13[:F]
        state[q + "mlp.up_proj.weight"] = w13[F:]
        state[q + "mlp.down_proj.weight"] = sd[p + "feed_forward.w2.weight"]
    state["lm_head.weight"] = sd["output.weight"] if not cfg.tie_embeddings else sd["tok_embeddings.weight"]
    missing, unexpected = m.load_state_dict(state, strict=False)
    assert not unexpected and all("lm_head" in k for k in missing), (missing, unexpected)
    m.tie_weights()
    m.save_pretrained(out)
    with tempfile.TemporaryDirectory() as d:
        shutil.copy(tok_path, os.path.join(d, "tokenizer.model"))
        with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
            json.dump({"tokenizer_class": "LlamaTokenizer", "legacy": True, "add_bos_token": True,
                       "add_eos_token": False, "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}, f)
        tok = transformers.AutoTokenizer.from_pretrained(d)
    tok.save_pretrained(out)
    print(f"wrote {out}: LlamaForCausalLM, {sum(p.numel() for p in m.parameters())} parameters, tokenizer "
          f"{len(tok)} tokens")


if __name__ == "__main__":
    main()
