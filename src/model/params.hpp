// The GPT's parameters as data: a shape table (names as in docs/MODEL.md), one aligned slab, and named views.
// Gradients and the optimizer's moments use the same layout, so AdamW, checkpoints and a future gradient
// all-reduce each touch one buffer.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "model/config.hpp"

namespace stretch {

enum class ParamKind { matrix, embedding, norm, bias, position };

struct ParamSpec {
  std::string name;
  std::vector<std::int64_t> shape;
  ParamKind kind;
  float init_std;  // normal(0, init_std) for matrices/embeddings/position tables; norms start at 1, biases at 0
  std::size_t offset = 0;  // into the slab, in floats (each tensor starts 16-float aligned)
  std::size_t numel() const;
};

// The parameter table in slab order.
std::vector<ParamSpec> param_specs(const ModelConfig& c);
// Total floats of the slab for these specs (including alignment padding).
std::size_t slab_size(const std::vector<ParamSpec>& specs);

struct LayerView {
  float *ln1_w, *ln1_b;          // (C)
  float *qkv_w, *qkv_b;          // (QKV, C), (QKV); qkv_b: gpt with bias, llama with qkv_bias
  float *attproj_w, *attproj_b;  // (C, C), (C)
  float *ln2_w, *ln2_b;          // (C)
  float *fc_w, *fc_b;            // (F, C), (F)
  float *fcproj_w, *fcproj_b;    // (C, F), (C)
};

// Named pointers into a slab (parameters or gradients); absent tensors are null.
struct ParamView {
  float* wte = nullptr;      // (V, C)
  float* wpe = nullptr;      // (block_size, C) learned only
  float* t5_bias = nullptr;  // (32, NH) t5 only
  float *ln_emb_w = nullptr, *ln_emb_b = nullptr;  // (C) embed_norm only
  std::vector<LayerView> layers;
  float *lnf_w = nullptr, *lnf_b = nullptr;  // (C)
  float* lm_head = nullptr;                  // (V, C) untied; equals wte when tied
};

ParamView bind_param_view(const ModelConfig& c, const std::vector<ParamSpec>& specs, float* slab);

}  // namespace stretch
