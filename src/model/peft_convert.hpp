// LoRA adapters <-> PEFT's (PyPI `peft`) adapter folders for the Hugging Face models we export
// (model/hf_convert.hpp): adapter_config.json + adapter_model.safetensors, tensors named
//   base_model.model.<module>.lora_A.weight (r, in),  base_model.model.<module>.lora_B.weight (out, r),
// PEFT's output being  base(x) + (alpha / r) * lora_B(lora_A(dropout(x))), as ours (model/lora.hpp).
//
// Modules per family (the transformers names of the projections our targets sit in):
//   llama, mistral, qwen2  self_attn.{q,k,v,o}_proj, mlp.{gate,up,down}_proj: one target each; B's q and k rows
//                          follow the rotary row order transformers uses (model/hf_layout.hpp), as the weights do
//   gpt2                   attn.c_attn (q|k|v fused), attn.c_proj (o), mlp.c_fc (up), mlp.c_proj (down)
//   mpt                    attn.Wqkv (fused), attn.out_proj, ffn.up_proj, ffn.down_proj
//   bloom                  self_attention.query_key_value (fused, rows per head [h][q|k|v]), self_attention.dense,
//                          mlp.dense_h_to_4h, mlp.dense_4h_to_h
// A fused module holding n of our targets gets one adapter of rank n R: A stacks the targets' A, B places each
// target's B on its rows and its own R columns (block-diagonal), alpha n alpha (rank_pattern / alpha_pattern), so
// the scale and the function are ours exactly. Import reads any rank per module from the tensors' shapes (a fused
// module's A serves each target it covers) and folds a scale that differs between modules into B.
#pragma once
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "io/hf_weights.hpp"
#include "io/safetensors.hpp"
#include "model/hf_convert.hpp"
#include "model/transformer.hpp"

namespace stretch {

struct PeftAdapter {
  nlohmann::json config;              // adapter_config.json
  std::vector<HfTensorOut> tensors;   // adapter_model.safetensors
};

// The adapter of `m` (ConfigError when it has none) for its base exported as family f.
PeftAdapter model_to_peft(const Transformer& m, HfFamily f);

// `base` (no adapter) with the PEFT adapter put on it, exported-as family f. InputError naming `source` and the key or
// tensor for what is missing, malformed or not expressible (DoRA, rsLoRA, biases, modules_to_save, a module our
// targets do not cover).
std::unique_ptr<Transformer> peft_to_model(const Transformer& base, HfFamily f, const nlohmann::json& config,
                                           const SafetensorsReader& weights, const std::string& source);

}  // namespace stretch
