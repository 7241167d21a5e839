#!/usr/bin/env python3
"""Write tests/fixtures/lora/: tiny random-weight Hugging Face models with PEFT LoRA adapters made by PyPI's peft
itself, and what PyTorch computes with them. tests/model/peft_parity_test.cpp imports each base with
`model_from_hf`, puts the adapter on it with `peft_to_model`, and requires peft's logits, loss and (llama) the
gradient of every lora_A / lora_B.

Regenerate (from the repository root; PyPI's torch, transformers, peft and safetensors, CPU only, nothing is
downloaded):

    python3 -m pip install torch transformers peft safetensors
    python3 tools/make_lora_fixture.py            # writes tests/fixtures/lora/

Layout:
    tests/fixtures/lora/<case>/base/      the base model (save_pretrained: config.json, model.safetensors)
    tests/fixtures/lora/<case>/adapter/   the PEFT adapter (adapter_config.json, adapter_model.safetensors)
    tests/fixtures/lora/expected.safetensors
        <case>.tokens   I32 (B, T)      input ids; the targets are the ids shifted by one (the last column unscored)
        <case>.logits   F32 (B, T, V)   peft's logits (float32, eager attention, adapter unmerged)
        <case>.loss     F32 (1)         mean cross-entropy of the B (T - 1) scored tokens
        <case>.grad.<peft tensor name>  F32   d loss / d that lora_A or lora_B (llama only)

Cases:
    llama  LlamaForCausalLM, GQA (4 heads, 2 key/value heads), every projection adapted (q,k,v,o,gate,up,down),
           r 4, lora_alpha 8; the B matrices drawn at random (init_lora_weights=False), so the adapter changes the
           model and every gradient is non-zero
    gpt2   GPT2LMHeadModel with LoRA on the fused attn.c_attn (Conv1D, fan_in_fan_out), attn.c_proj and mlp.c_fc,
           r 3, lora_alpha 6, and rank_pattern / alpha_pattern giving mlp.c_fc r 2, alpha 5: a fused module and a
           module of another scale, which stretch reads as per-target adapters of one rank and scale

Deterministic for a given torch / transformers / peft version (seeded weights and ids).
"""
import os
import shutil

import torch
import transformers
from peft import LoraConfig, get_peft_model
from safetensors.torch import save_file

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(REPO, "tests", "fixtures", "lora")
B, T, V = 2, 12, 64


def randomize_b(model, gen):
    """PEFT draws B = 0 by default and init_lora_weights=False leaves it random but tiny in some versions: draw
    every lora_B from N(0, 0.2) so the adapter visibly changes the logits."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.2)


def run_case(name, base, lora_cfg, tensors, grads):
    gen = torch.Generator().manual_seed(7)
    case_dir = os.path.join(OUT, name)
    base.save_pretrained(os.path.join(case_dir, "base"), safe_serialization=True)
    model = get_peft_model(base, lora_cfg)
    randomize_b(model, gen)
    model.save_pretrained(os.path.join(case_dir, "adapter"), safe_serialization=True)
    os.remove(os.path.join(case_dir, "adapter", "README.md"))  # peft's model card
    model.eval()  # no dropout
    ids = torch.randint(0, V, (B, T), generator=gen)
    out = model(ids)
    logits = out.logits
    loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, V), ids[:, 1:].reshape(-1))
    tensors[name + ".tokens"] = ids.to(torch.int32).contiguous()
    tensors[name + ".logits"] = logits.detach().float().contiguous()
    tensors[name + ".loss"] = loss.detach().reshape(1).float()
    if grads:
        loss.backward()
        for pname, p in model.named_parameters():
            if "lora_" in pname:
                # peft's parameter name "base_model.model.X.lora_A.default.weight" -> the file's "...lora_A.weight"
                tensors[name + ".grad." + pname.replace(".default", "")] = p.grad.detach().float().contiguous()


def main():
    torch.manual_seed(0)
    if os.path.exists(OUT):
        shutil.rmtree(OUT)
    os.makedirs(OUT)
    tensors = {}

    llama = transformers.LlamaConfig(vocab_size=V, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                                     num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                                     rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=False,
                                     attn_implementation="eager")
    base = transformers.LlamaForCausalLM(llama).float()
    cfg = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, bias="none", init_lora_weights=False,
                     target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    run_case("llama", base, cfg, tensors, grads=True)

    gpt2 = transformers.GPT2Config(vocab_size=V, n_embd=32, n_layer=2, n_head=4, n_positions=64, n_inner=64,
                                   activation_function="gelu_new", bos_token_id=0, eos_token_id=1, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                                   attn_implementation="eager")
    base = transformers.GPT2LMHeadModel(gpt2).float()
    cfg = LoraConfig(r=3, lora_alpha=6, lora_dropout=0.0, bias="none", init_lora_weights=False, fan_in_fan_out=True,
                     target_modules=["attn.c_attn", "attn.c_proj", "mlp.c_fc"],
                     rank_pattern={"mlp.c_fc": 2}, alpha_pattern={"mlp.c_fc": 5})
    run_case("gpt2", base, cfg, tensors, grads=False)

    save_file(tensors, os.path.join(OUT, "expected.safetensors"),
              metadata={"torch": torch.__version__, "transformers": transformers.__version__,
                        "peft": __import__("peft").__version__})
    print("wrote", OUT)


if __name__ == "__main__":
    main()
