// The pieces of the network that every path computes the same way: the training forward / backward
// (model/transformer.cpp) and cached decoding (model/decoder.cpp) both call these, so a family's embedding, norm,
// MLP nonlinearity or position bias is written once (docs/MODEL.md has the math).
//   embed_forward:  x (N, C) = embed_scale * wte[tokens] (+ wpe[pos] learned | + sinusoid(pos) sinusoidal); the
//                   embedding norm (embed_norm), when the model has one, comes after it and stays with the caller
//                   (training keeps the raw sum for its backward pass).
//   norm_*:         the family's norm over rows of C: LayerNorm (gpt: weight, bias, keeps mean and rstd) or RMSNorm
//                   (llama: weight only, keeps rstd).
//   mlp_act_*:      the MLP nonlinearity between fc and fcproj: SwiGLU (llama: fc rows are gate | up, F each),
//                   exact-erf GELU or tanh GELU (gpt, by Activation).
//   with_position_bias: calls fn(bias) with the attention bias functor of the model's position method (ALiBi
//                   slopes; the T5 table, and `t5_partial` for its gradient, null when inferring; none otherwise:
//                   rope and the absolute methods add no score bias).
//   with_inference_bias: the same for inference, where ALiBi and T5 also take Self-Extend / ReRoPE distances.
#pragma once
#include <cstdint>

#include "kernels/attention_bias.hpp"
#include "model/config.hpp"
#include "position/alibi.hpp"
#include "position/t5.hpp"

namespace stretch {

void embed_forward(float* x, const std::int32_t* tokens, const int* pos, int N, const ModelConfig& c,
                   const float* wte, const float* wpe);

void norm_forward(const ModelConfig& c, float* out, float* mean, float* rstd, const float* inp, const float* w,
                  const float* b, int N);
void norm_backward(const ModelConfig& c, float* dinp, float* dw, float* db, const float* dout, const float* inp,
                   const float* w, const float* mean, const float* rstd, int N);

// act (N, F) from fc (N, FW); backward: dfc (N, FW) from dact (N, F) and the forward's fc
void mlp_act_forward(const ModelConfig& c, float* act, const float* fc, int N);
void mlp_act_backward(const ModelConfig& c, float* dfc, const float* fc, const float* dact, int N);

template <class Fn>
void with_position_bias(const ModelConfig& c, const float* alibi_slopes, const float* t5_table, float* t5_partial,
                        Fn&& fn) {
  switch (c.position) {
    case PositionMethod::alibi: {
      AlibiBias b{alibi_slopes};
      fn(b);
      break;
    }
    case PositionMethod::t5: {
      T5Bias<float> b{t5_table, t5_partial, c.n_head};
      fn(b);
      break;
    }
    default: {
      NoBias b;
      fn(b);
    }
  }
}

// ALiBi or T5 with a fine-tuning-free extension (Self-Extend, ReRoPE; position/extension.hpp): the method's bias at
// the remapped distance of far pairs. Inference only (no gradient).
template <class Inner>
struct ExtendedBias {
  static constexpr bool kLearned = false;
  Inner inner;
  PositionExtension ext;
  template <class F = float>
  F operator()(int h, int pos_i, int pos_j) const {
    if (pos_i - pos_j < ext.window) return attention_bias_value<F>(inner, h, pos_i, pos_j);
    return inner.template at_distance<F>(h, ext.distance(pos_i, pos_j));
  }
};

// with_position_bias for inference (no gradient): ALiBi and T5 models with an extension get ExtendedBias.
template <class Fn>
void with_inference_bias(const ModelConfig& c, const float* alibi_slopes, const float* t5_table, Fn&& fn) {
  if (!c.extension.is_none() && c.position == PositionMethod::alibi) {
    ExtendedBias<AlibiBias> b{AlibiBias{alibi_slopes}, c.extension};
    fn(b);
  } else if (!c.extension.is_none() && c.position == PositionMethod::t5) {
    ExtendedBias<T5Bias<float>> b{T5Bias<float>{t5_table, nullptr, c.n_head}, c.extension};
    fn(b);
  } else {
    with_position_bias(c, alibi_slopes, t5_table, nullptr, fn);
  }
}

}  // namespace stretch
