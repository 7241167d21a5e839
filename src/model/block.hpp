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
//   block_forward:  one transformer block, the same flow for every family and path; the path passes how its
//                   projections run and what its attention sees (the batch, or the key/value cache).
//   block_backward: its gradient, beside it (training only).
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <utility>

#include "core/profile.hpp"

#include "core/numeric.hpp"
#include "kernels/attention_bias.hpp"
#include "model/config.hpp"
#include "model/params.hpp"
#include "position/alibi.hpp"
#include "position/t5.hpp"

namespace stretch {

void embed_forward(float* x, const std::int32_t* tokens, const int* pos, int N, const ModelConfig& c,
                   const float* wte, const float* wpe);
// the same with the token table stored in bf16 (model/transformer.hpp WeightStorage::bf16)
void embed_forward(float* x, const std::int32_t* tokens, const int* pos, int N, const ModelConfig& c,
                   const bf16_t* wte, const float* wpe);

void norm_forward(const ModelConfig& c, float* out, float* mean, float* rstd, const float* inp, const float* w,
                  const float* b, int N);
void norm_backward(const ModelConfig& c, float* dinp, float* dw, float* db, const float* dout, const float* inp,
                   const float* w, const float* mean, const float* rstd, int N);

// act (N, F) from fc (N, FW); backward: dfc (N, FW) from dact (N, F) and the forward's fc
void mlp_act_forward(const ModelConfig& c, float* act, const float* fc, int N);
void mlp_act_backward(const ModelConfig& c, float* dfc, const float* fc, const float* dact, int N);

// Self-Extend / ReRoPE of a rope model, the second score set (position/extension.hpp): far (N, 2C) = the q | k of
// qkv (N, 3C rows, a kv head per query head, not yet rotated) rotated at the extension's far positions of pos
// (queries at far_query, keys at far_key); the near set is qkv rotated at pos itself.
void far_positions_forward(float* far, const float* qkv, const int* pos, int N, const ModelConfig& c,
                           const float* inv_freq);

// dst (n) = a (n) + b (n); dst may be a (the decoder's residual stream, in place)
void residual_add(float* dst, const float* a, const float* b, std::size_t n);

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

// The weight and bias of the block's matrix m in a layer's view: parameters, or their gradients (null when frozen).
template <class View>
auto matrix_of(const View& v, LoraMatrix m) {
  switch (m) {
    case LoraMatrix::qkv: return std::pair{v.qkv_w, v.qkv_b};
    case LoraMatrix::attproj: return std::pair{v.attproj_w, v.attproj_b};
    case LoraMatrix::fc: return std::pair{v.fc_w, v.fc_b};
    default: return std::pair{v.fcproj_w, v.fcproj_b};
  }
}

// One block's forward buffers for a pass of N rows. Training keeps a set per layer (its backward reads them); the
// decoder reuses one set, with res2 and out on its residual stream x itself and one norm buffer for both norms.
struct BlockRows {
  float *ln1, *ln1_mean, *ln1_rstd;  // (N, C), (N), (N): norm1(x) (mean: LayerNorm only)
  float* qkv;                        // (N, QKV): the q | k | v projection, kv_heads() key and value heads
  float* att;                        // (N, C): the attention's output, heads side by side
  float* proj;                       // (N, C): attproj's, then fcproj's product (scratch)
  float* res2;                       // (N, C): x + the attention branch
  float *ln2, *ln2_mean, *ln2_rstd;  // norm2(res2)
  float* fc;                         // (N, FW): fc's product (llama: gate | up, F each)
  float* act;                        // (N, F): the MLP nonlinearity of fc
  float* out;                        // (N, C): res2 + the MLP branch, the next block's x
};

// One transformer block, forward, as every path computes it (docs/MODEL.md):
//   res2 = x + attproj(attend(qkv(norm1(x))))
//   out  = res2 + fcproj(act(fc(norm2(res2))))
// The path supplies the two things that differ between training, evaluation and cached decoding:
//   linear(m, out (N, OC), in (N, IC), w, b, IC, OC): the product of the block's matrix m (training: fp32 or bf16,
//     the LoRA adapter's sites, dropout after attproj and fcproj; decoding: plain fp32);
//   attend(qkv (N, QKV), att (N, C)): positions (rope, log-n) and attention over the batch (training, evaluation)
//     or over the key/value cache, which it also fills (decoding).
// A new family changes this flow, or the norm / MLP / bias pieces above, in one place for every path.
template <class Linear, class Attend>
void block_forward(const ModelConfig& c, const LayerView& w, const float* x, const BlockRows& r, int N,
                   Linear&& linear, Attend&& attend) {
  const int C = c.n_embd, F = c.mlp_hidden, FW = c.mlp_width(), QKV = c.qkv_width();
  const std::size_t NC = static_cast<std::size_t>(N) * C;
  {
    ProfileScope t("fwd.norm");
    norm_forward(c, r.ln1, r.ln1_mean, r.ln1_rstd, x, w.ln1_w, w.ln1_b, N);
  }
  linear(LoraMatrix::qkv, r.qkv, r.ln1, w.qkv_w, w.qkv_b, C, QKV);
  attend(r.qkv, r.att);
  linear(LoraMatrix::attproj, r.proj, r.att, w.attproj_w, w.attproj_b, C, C);
  {
    ProfileScope t("fwd.residual");
    residual_add(r.res2, x, r.proj, NC);
  }
  {
    ProfileScope t("fwd.norm");
    norm_forward(c, r.ln2, r.ln2_mean, r.ln2_rstd, r.res2, w.ln2_w, w.ln2_b, N);
  }
  linear(LoraMatrix::fc, r.fc, r.ln2, w.fc_w, w.fc_b, C, FW);
  {
    ProfileScope t(c.arch == Arch::llama ? "fwd.swiglu" : "fwd.gelu");
    mlp_act_forward(c, r.act, r.fc, N);
  }
  linear(LoraMatrix::fcproj, r.proj, r.act, w.fcproj_w, w.fcproj_b, F, C);
  {
    ProfileScope t("fwd.residual");
    residual_add(r.out, r.res2, r.proj, NC);
  }
}

// Scratch of one block's backward pass (N rows): dc (N, C), dfc (N, FW), dact (N, F).
struct BlockGradRows {
  float *dc, *dfc, *dact;
};

// block_forward's gradient. On entry dx (N, C) holds d out; on return d x. The forward's rows r are read (x is the
// block's input), the norms' parameter gradients g accumulated. The path supplies, as for the forward:
//   linear_back(m, dinp (N, IC), dout (N, OC), inp (N, IC), IC, OC): dinp (zeroed here) += dout W, and the matrix's
//     own gradients (training: fp32 or bf16, the adapter's, dropout's mask on attproj's and fcproj's dout);
//   attend_back(datt (N, C)) -> d qkv (N, QKV): back through attention and positions to the projection's output.
template <class LinearBack, class AttendBack>
void block_backward(const ModelConfig& c, const LayerView& w, const LayerView& g, const float* x, const BlockRows& r,
                    int N, float* dx, const BlockGradRows& s, LinearBack&& linear_back, AttendBack&& attend_back) {
  const int C = c.n_embd, F = c.mlp_hidden, FW = c.mlp_width(), QKV = c.qkv_width();
  const std::size_t NC = static_cast<std::size_t>(N) * C;
  // out = res2 + fcproj(act(fc(norm2(res2)))): d res2 = d out + the MLP branch's input gradient
  {
    ProfileScope t("bwd.zero");
    std::fill_n(s.dact, static_cast<std::size_t>(N) * F, 0.0f);
  }
  linear_back(LoraMatrix::fcproj, s.dact, dx, r.act, F, C);
  std::fill_n(s.dfc, static_cast<std::size_t>(N) * FW, 0.0f);
  {
    ProfileScope t(c.arch == Arch::llama ? "bwd.swiglu" : "bwd.gelu");
    mlp_act_backward(c, s.dfc, r.fc, s.dact, N);
  }
  std::fill_n(s.dc, NC, 0.0f);
  linear_back(LoraMatrix::fc, s.dc, s.dfc, r.ln2, C, FW);
  {
    ProfileScope t("bwd.norm");
    norm_backward(c, dx, g.ln2_w, g.ln2_b, s.dc, r.res2, w.ln2_w, r.ln2_mean, r.ln2_rstd, N);
  }
  // res2 = x + attproj(attend(qkv(norm1(x)))): d x = d res2 + the attention branch's input gradient
  std::fill_n(s.dc, NC, 0.0f);
  linear_back(LoraMatrix::attproj, s.dc, dx, r.att, C, C);
  const float* dqkv = attend_back(s.dc);
  std::fill_n(s.dc, NC, 0.0f);
  linear_back(LoraMatrix::qkv, s.dc, dqkv, r.ln1, C, QKV);
  {
    ProfileScope t("bwd.norm");
    norm_backward(c, dx, g.ln1_w, g.ln1_b, s.dc, x, w.ln1_w, r.ln1_mean, r.ln1_rstd, N);
  }
}

}  // namespace stretch
