// Hugging Face transformers checkpoints (config.json + safetensors, io/hf_weights.hpp) <-> our models.
// docs/HF.md is the user's guide; this header is the exact mapping.
//
// Families (config.json "architectures"[0]; model_type in brackets) and what they become:
//   LlamaForCausalLM [llama]      arch llama, rope (LLaMA 1/2/3, TinyLlama, SmolLM; GQA; tied or not)
//   MistralForCausalLM [mistral]  the same, attn_window = sliding_window (null: none)
//   Qwen2ForCausalLM [qwen2]      the same with qkv_bias; attn_window = sliding_window when use_sliding_window
//                                 covers every layer (max_window_layers 0); a mix of windowed and full layers is
//                                 refused
//   GPT2LMHeadModel [gpt2]        arch gpt, learned positions (n_positions rows), biases, GELU per
//                                 activation_function (gelu_new / gelu_pytorch_tanh / gelu_fast: tanh form;
//                                 gelu: exact); Conv1D weights are stored (in, out) and transposed
//   MptForCausalLM [mpt]          arch gpt, alibi (max bias attn_config.alibi_bias_max), no biases at all (its
//                                 LayerNorms have none), exact GELU, MLP 4 x d_model
//   BloomForCausalLM [bloom]      arch gpt, alibi (max bias 8), biases, tanh GELU, embed_norm (LayerNorm on the
//                                 embeddings), fused qkv stored per head [h][q|k|v][hd], reordered to q|k|v
// Refused, naming the key: what transformers' class computes and ours cannot (clip_qkv, qk_ln, a softmax_scale
// other than 1/sqrt(hd), expansion_ratio != 4, partial rotary, head_dim != hidden/heads, attention_bias or
// mlp_bias on llama, hidden_act other than silu, apply_residual_connection_post_layernorm, ...).
//
// RoPE layout: transformers rotates the halves of each head (rotate_half: pair (i, i + hd/2) turns by theta_i);
// ours rotates interleaved pairs (2i, 2i + 1) (Meta, llama2.c, ggml "normal"). Import reorders the q and k rows
// (and q/k biases) of every head: ours[2i] = hf[i], ours[2i + 1] = hf[i + hd/2]; export applies the inverse.
// The model computes the same function either way (tested against transformers' logits).
//
// Context: block_size = max_position_embeddings (gpt2: n_positions, mpt: max_seq_len, bloom: seq_length if
// present, else 2048); rope_theta and rope scaling as transformers reads them (position/rope_scaling_hf.hpp).
//
// Export writes what transformers' classes can express exactly and refuses the rest (ConfigError naming the
// difference): llama-family rope models as LlamaForCausalLM (Qwen2ForCausalLM when qkv_bias, MistralForCausalLM
// when windowed), GPT ALiBi models as MptForCausalLM (no biases, exact GELU, MLP 4C, max bias 8) or
// BloomForCausalLM (biases, tanh GELU, embed_norm, MLP 4C, max bias 8), GPT learned- or sinusoidal-position models
// as GPT2LMHeadModel (a sinusoidal table becomes block_size learned rows: exact within block_size). T5 bias and
// position-free models, log-n scaling, position-id schemes and windows outside Mistral/Qwen2 are refused. An
// embed_scale s != 1 is folded into the exported embedding (s * wte) with the classifier written apart (unscaled).
#pragma once
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "io/safetensors.hpp"
#include "model/transformer.hpp"

namespace stretch {

enum class HfFamily { llama, mistral, qwen2, gpt2, mpt, bloom };
// "LlamaForCausalLM", ...
std::string_view hf_architecture(HfFamily f);
// "llama", "mistral", ... (config.json's model_type)
std::string_view hf_model_type(HfFamily f);

struct HfConfig {
  ModelConfig model;
  HfFamily family = HfFamily::llama;
  std::vector<std::string> notes;  // choices the user should know about (printed by the importer)
};

// config.json (parsed) -> our config. InputError naming `source` and the key for anything missing, mistyped,
// unknown or not computable (see above).
HfConfig hf_model_config(const nlohmann::json& config, const std::string& source);

struct HfImport {
  std::unique_ptr<Transformer> model;
  HfFamily family = HfFamily::llama;
  std::vector<std::string> notes;
  nlohmann::json config;  // config.json as read
};

// Reads dir/config.json and the weights (io/hf_weights.hpp); every tensor the family needs must be present with
// its shape, and no unknown tensor may be left over (InputError naming the file and the tensor).
HfImport model_from_hf(const std::filesystem::path& dir);

struct HfExportOptions {
  std::string as = "auto";  // auto | llama | mistral | qwen2 | gpt2 | mpt | bloom
  DType dtype = DType::F32;
  std::size_t max_shard_bytes = 0;  // 0: one model.safetensors
  int bos_token_id = -1, eos_token_id = -1;  // written to config.json when >= 0
};

// The family `m` exports as (ConfigError naming what differs when none fits, or when `as` cannot hold it).
HfFamily hf_export_family(const ModelConfig& c, const std::string& as);
// config.json for `m` as family f (the caller writes it).
nlohmann::json hf_config_json(const ModelConfig& c, HfFamily f, const HfExportOptions& o);
// Writes config.json and the weights into dir (which must exist); returns the family written. Nothing is written
// when the model cannot be expressed (ConfigError first).
HfFamily model_to_hf(const Transformer& m, const std::filesystem::path& dir, const HfExportOptions& o);

}  // namespace stretch
