// What a checkpoint stores about its architecture (docs/MODEL.md). Two families share one model class:
//   gpt    GPT-2 style: LayerNorm, GELU MLP, optional biases, any position method
//   llama  LLaMA style: RMSNorm, SwiGLU MLP, grouped-query attention (n_kv_head <= n_head), no biases
// Three kinds of settings, as llama.cpp keeps hparams apart from cparams:
//   ModelHParams   what the model is, fixed when it is trained (sizes, family, position method, trained length L
//                  and rope base); stored with the weights.
//   ContextParams  how positions become attention now (rope scaling, window, log-n, position ids, the fine-tuning-
//                  free extensions). A checkpoint stores what it was trained or fine-tuned with (a model fine-tuned
//                  with linear x4 keeps rope_scaling = linear:4; block_size and rope_base stay the trained values),
//                  and a run may override each without touching the weights.
//   job options    (evaluation lengths, batch, threads, precision, ...) live with the jobs (run/), parsed once by
//                  the command line.
// ModelConfig is a checkpoint's whole configuration: the first two and the LoRA adapter, one config.json.
#pragma once
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "model/lora.hpp"
#include "position/extension.hpp"
#include "position/logn.hpp"
#include "position/method.hpp"
#include "position/position_ids.hpp"
#include "position/rope_scaling.hpp"

namespace stretch {

enum class Arch { gpt, llama };
std::string_view to_string(Arch a);
// Throws UsageError naming `what` (the flag or the file field the name came from) for an unknown name.
Arch parse_arch(std::string_view name, std::string_view what);

// The gpt family's MLP nonlinearity (llama's is SwiGLU): the tanh approximation (GPT-2, BLOOM: "gelu_tanh") or the
// exact erf form (MPT, PyTorch's nn.GELU(): "gelu"); kernels/gelu.hpp.
enum class Activation { gelu_tanh, gelu };
std::string_view to_string(Activation a);
// Throws UsageError naming `what` (the flag or the file field the name came from) for an unknown name.
Activation parse_activation(std::string_view name, std::string_view what);

// Maps a field or argument name of library code ("n_head", "ctx") to what the user knows it as (a flag such as
// "--heads", or "config.json: n_head"); empty: the name itself. Library errors name fields; the command maps them.
using FieldNames = std::function<std::string(const std::string&)>;

struct ModelHParams {
  Arch arch = Arch::gpt;
  int vocab_size = 256;
  int n_layer = 6;
  int n_head = 8;
  int n_kv_head = 0;  // key/value heads (grouped-query attention, llama only); 0 means n_head
  int n_embd = 256;
  int mlp_hidden = 1024;
  int block_size = 256;  // training length L; the size of the learned position table
  PositionMethod position = PositionMethod::alibi;
  bool bias = true;            // biases in Linear layers and LayerNorms
  bool tie_embeddings = true;  // output projection shares wte
  float dropout = 0.0f;
  double rope_base = 10000.0;
  float norm_eps = 1e-5f;  // LayerNorm / RMSNorm epsilon
  // Token embeddings enter as embed_scale * wte[token]. 1: GPT-2's scheme (wte ~ N(0, 0.02)); otherwise wte starts
  // at N(0, 1/embed_scale^2), so sqrt(n_embd) is fairseq's / Vaswani et al.'s (unit-variance embeddings, on the
  // scale of sinusoidal position embeddings).
  float embed_scale = 1.0f;
  Activation activation = Activation::gelu_tanh;  // gpt only
  bool embed_norm = false;  // gpt only: a LayerNorm (weight, and bias when `bias`) over the summed embeddings
                            // before the first block (BLOOM's word_embeddings_layernorm)
  bool qkv_bias = false;    // llama only: biases on the q, k, v projections (Qwen2); gpt models use `bias`
  double alibi_max_bias = 8.0;  // ALiBi's maximum bias b (position/alibi.hpp; 8 in the paper and MPT)

  int kv_heads() const { return n_kv_head > 0 ? n_kv_head : n_head; }
  int head_dim() const { return n_embd / n_head; }
  int kv_dim() const { return kv_heads() * head_dim(); }
  int qkv_width() const { return n_embd + 2 * kv_dim(); }       // fused q|k|v projection rows
  int mlp_width() const { return arch == Arch::llama ? 2 * mlp_hidden : mlp_hidden; }  // fc rows (gate|up)
};

struct ContextParams {
  RopeScaling rope_scaling;   // rope only; original_context 0 means block_size
  int attn_window = 0;        // sliding-window attention: a query sees its `attn_window` latest keys; 0 = all
  LognMode logn = LognMode::off;
  PositionIds position_ids;   // the position-id scheme the model was trained with
  // fine-tuning-free extension, at evaluation and generation time only (run-time overrides; a checkpoint keeps
  // them only if someone writes them into its config.json, and training refuses them):
  PositionExtension extension;  // rope only: Self-Extend or (leaky) ReRoPE (position/extension.hpp)
  int alibi_interp = 0;         // alibi only: ALiBi interpolation to this target length (slopes x block_size /
                                // alibi_interp, position/alibi.hpp); 0 = off, else >= block_size
};

struct ModelConfig : ModelHParams, ContextParams {
  // a LoRA adapter on the block's projections (model/lora.hpp); its tensors follow the base ones in the slab
  LoraConfig lora;

  const ModelHParams& hparams() const { return *this; }
  const ContextParams& context() const { return *this; }
  ContextParams& context() { return *this; }
  int rope_train_length() const { return rope_scaling.original_context > 0 ? rope_scaling.original_context : block_size; }
  // Self-Extend / ReRoPE (position/extension.hpp) apply to the relative methods: rope (two score sets), alibi and t5
  // (remapped distances in the bias). Their window must stay below this trained length.
  static bool extendable(PositionMethod p) {
    return p == PositionMethod::rope || p == PositionMethod::alibi || p == PositionMethod::t5;
  }
  int extension_train_length() const { return position == PositionMethod::rope ? rope_train_length() : block_size; }
  double alibi_slope_scale() const { return alibi_interp > 0 ? static_cast<double>(block_size) / alibi_interp : 1.0; }
  // Throws ConfigError naming the field and what was expected. `name` maps a field name ("n_head") to what the
  // user knows it as (a flag such as "--heads", or "config.json: n_head").
  void validate(const FieldNames& name = {}) const;
  nlohmann::json to_json() const;
  // Throws InputError naming `source` and the field for a missing or mistyped field.
  static ModelConfig from_json(const nlohmann::json& j, const std::string& source);
};

}  // namespace stretch
