// The GPT's parameters as data: a shape table (names as in docs/MODEL.md), one aligned slab, and named views.
// Gradients and the optimizer's moments use the same layout, so AdamW, checkpoints and a future gradient
// all-reduce each touch one buffer.
#pragma once
#include <cstddef>
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "model/config.hpp"

namespace stretch {

// lora_a, lora_b: an adapter's A (R, in) and B (out, R) (model/lora.hpp)
enum class ParamKind { matrix, embedding, norm, bias, position, lora_a, lora_b };

// Where a tensor sits in the network: before the blocks (embeddings, position table or bias, embedding norm), in
// block `layer`, or after them (final norm, classifier).
enum class ParamPlace { embeddings, block, output };

struct ParamSpec {
  std::string name;
  std::vector<std::int64_t> shape;
  ParamKind kind;
  float init_std;  // normal(0, init_std) for matrices/embeddings/position tables; norms start at 1, biases at 0
  std::size_t offset = 0;  // into the slab, in floats (each tensor starts 16-float aligned)
  ParamPlace place = ParamPlace::embeddings;
  int layer = -1;  // the block of a ParamPlace::block tensor, else -1
  std::size_t numel() const;
  // "layer N" for a block's tensor, else "embeddings" or "output" (for messages)
  std::string where() const;
};

// The parameter table in slab order.
std::vector<ParamSpec> param_specs(const ModelConfig& c);
// Total floats of the slab for these specs (including alignment padding).
std::size_t slab_size(const std::vector<ParamSpec>& specs);

// Named pointers into a slab (parameters or gradients); absent tensors are null. F = float for a slab being
// written (training, import), const float for one only read (export: ConstParamView, no const_cast).
template <class F>
struct BasicLayerView {
  F *ln1_w, *ln1_b;          // (C)
  F *qkv_w, *qkv_b;          // (QKV, C), (QKV); qkv_b: gpt with bias, llama with qkv_bias
  F *attproj_w, *attproj_b;  // (C, C), (C)
  F *ln2_w, *ln2_b;          // (C)
  F *fc_w, *fc_b;            // (F, C), (F)
  F *fcproj_w, *fcproj_b;    // (C, F), (C)
};

template <class F>
struct BasicParamView {
  F* wte = nullptr;      // (V, C)
  F* wpe = nullptr;      // (block_size, C) learned only
  F* t5_bias = nullptr;  // (32, NH) t5 only
  F *ln_emb_w = nullptr, *ln_emb_b = nullptr;  // (C) embed_norm only
  std::vector<BasicLayerView<F>> layers;
  F *lnf_w = nullptr, *lnf_b = nullptr;  // (C)
  F* lm_head = nullptr;                  // (V, C) untied; equals wte when tied
  // the adapter (model/lora.hpp), [layer][LoraTarget]: A (R, in), B (rows, R); null for a target not adapted
  std::vector<std::array<F*, kLoraTargets>> lora_a, lora_b;
};

// The base matrix of a block that an adapter site adds to (model/lora.hpp).
template <class F>
F* lora_base_matrix(const BasicLayerView<F>& w, LoraMatrix m) {
  switch (m) {
    case LoraMatrix::qkv: return w.qkv_w;
    case LoraMatrix::attproj: return w.attproj_w;
    case LoraMatrix::fc: return w.fc_w;
    default: return w.fcproj_w;
  }
}

using LayerView = BasicLayerView<float>;
using ConstLayerView = BasicLayerView<const float>;
using ParamView = BasicParamView<float>;
using ConstParamView = BasicParamView<const float>;

ParamView bind_param_view(const ModelConfig& c, const std::vector<ParamSpec>& specs, float* slab);
ConstParamView bind_param_view(const ModelConfig& c, const std::vector<ParamSpec>& specs, const float* slab);

}  // namespace stretch
