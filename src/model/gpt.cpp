#include "model/gpt.hpp"

#include <algorithm>
#include <cmath>
#include <string>

#include "core/error.hpp"
#include "core/profile.hpp"
#include "kernels/attention.hpp"
#include "kernels/attention_tiled.hpp"
#include "kernels/cross_entropy.hpp"
#include "kernels/embedding.hpp"
#include "kernels/gelu.hpp"
#include "kernels/layernorm.hpp"
#include "kernels/matmul.hpp"
#include "position/alibi.hpp"
#include "position/rope.hpp"
#include "position/sinusoidal.hpp"
#include "position/t5.hpp"

namespace stretch {

#define TIMED(name, ...)            \
  do {                              \
    ProfileScope timed_scope_(name); \
    __VA_ARGS__;                    \
  } while (0)

namespace {
constexpr int kClassifierChunk = 256;  // rows of logits alive at once

// x (n) *= mask (n)
void apply_mask(float* x, const float* mask, std::size_t n) {
  for (std::size_t i = 0; i < n; i++) x[i] *= mask[i];
}
// dst (n) = a (n) + b (n)
void add(float* dst, const float* a, const float* b, std::size_t n) {
  const long nn = static_cast<long>(n);
#pragma omp parallel for schedule(static)
  for (long i = 0; i < nn; i++) dst[i] = a[i] + b[i];
}
void fill_mask(Buffer<float>& mask, std::size_t n, float p, Rng& rng) {
  if (mask.size() < n) mask.resize(n);
  const float keep = 1.0f / (1.0f - p);
  for (std::size_t i = 0; i < n; i++) mask[i] = rng.uniform() < p ? 0.0f : keep;
}
// Grows a scratch buffer to at least n floats (never shrinks: training and evaluation alternate shapes).
void ensure(Buffer<float>& b, std::size_t n) {
  if (b.size() < n) b.resize(n);
}
}  // namespace

Gpt::Gpt(const ModelConfig& c) : cfg_(c) {
  cfg_.validate();
  specs_ = gpt_param_specs(cfg_);
  params_.resize(slab_size(specs_));
  grads_.resize(slab_size(specs_));
  if (cfg_.position == PositionMethod::alibi) alibi_slopes_ = alibi_slopes(cfg_.n_head);
  if (cfg_.position == PositionMethod::rope) rope_inv_freq_ = rope_inv_freq(cfg_.head_dim(), cfg_.rope_base);
}

std::size_t Gpt::num_parameters() const {
  std::size_t n = 0;
  for (auto& s : specs_) n += s.numel();
  return n;
}

void Gpt::init_weights(std::uint64_t seed) {
  Rng rng(seed);
  params_.zero();
  for (auto& s : specs_) {
    float* p = params_.data() + s.offset;
    const std::size_t n = s.numel();
    switch (s.kind) {
      case ParamKind::norm:
        std::fill(p, p + n, 1.0f);
        break;
      case ParamKind::bias:
        break;
      default:
        for (std::size_t i = 0; i < n; i++) p[i] = rng.normal() * s.init_std;
    }
  }
}

template <class Fn>
void Gpt::with_bias(Fn&& fn, int B) {
  switch (cfg_.position) {
    case PositionMethod::alibi: {
      AlibiBias b{alibi_slopes_.data()};
      fn(b);
      break;
    }
    case PositionMethod::t5: {
      GptView pv = bind_gpt_view(cfg_, specs_, params_.data());
      ensure(t5_partial_, static_cast<std::size_t>(B) * cfg_.n_head * kT5Buckets);
      T5Bias<float> b{pv.t5_bias, t5_partial_.data(), cfg_.n_head};
      fn(b);
      break;
    }
    default: {
      NoBias b;
      fn(b);
    }
  }
}

void Gpt::size_layer(LayerActs& a, std::size_t BT, std::size_t probs) const {
  const std::size_t C = cfg_.n_embd, F = cfg_.mlp_hidden;
  a.ln1.resize(BT * C);
  a.ln1_mean.resize(BT);
  a.ln1_rstd.resize(BT);
  a.qkv.resize(BT * 3 * C);
  if (probs) a.probs.resize(probs);
  a.atty.resize(BT * C);
  a.res2.resize(BT * C);
  a.ln2.resize(BT * C);
  a.ln2_mean.resize(BT);
  a.ln2_rstd.resize(BT);
  a.fch.resize(BT * F);
  a.fch_gelu.resize(BT * F);
  a.res3.resize(BT * C);
}

void Gpt::ensure_acts(int B, int T) {
  if (B == B_ && T == T_ && acts_.size() == static_cast<std::size_t>(cfg_.n_layer)) return;
  acts_.assign(cfg_.n_layer, {});
  for (auto& a : acts_)
    size_layer(a, static_cast<std::size_t>(B) * T, static_cast<std::size_t>(B) * cfg_.n_head * T * T);
  B_ = B;
  T_ = T;
}

void Gpt::ensure_infer_acts(int B, int T) {
  if (B == infer_B_ && T == infer_T_) return;
  infer_ = LayerActs{};
  size_layer(infer_, static_cast<std::size_t>(B) * T, 0);
  infer_B_ = B;
  infer_T_ = T;
}

double Gpt::forward(const std::int32_t* tokens, const std::int32_t* targets, const std::int32_t* pos, int B, int T,
                    const ForwardOptions& opt) {
  if (B < 1 || T < 1) throw ConfigError("forward: batch and length must be positive, got B=" + std::to_string(B) +
                                        " T=" + std::to_string(T));
  if (opt.need_grad && !targets) throw ConfigError("forward: need_grad requires targets");
  const int C = cfg_.n_embd, F = cfg_.mlp_hidden, V = cfg_.vocab_size, NH = cfg_.n_head;
  const int BT = B * T;
  const float p_drop = opt.training ? cfg_.dropout : 0.0f;
  if (p_drop > 0.0f && !opt.rng) throw ConfigError("forward: dropout in training needs a random generator");
  const bool infer = !opt.need_grad;
  if (infer) {
    ensure_infer_acts(B, T);
  } else {
    ensure_acts(B, T);
  }
  // buffers shared by training and inference (grow-only)
  const std::size_t BTn = static_cast<std::size_t>(B) * T;
  ensure(encoded_, BTn * C);
  ensure(lnf_, BTn * C);
  ensure(lnf_mean_, BTn);
  ensure(lnf_rstd_, BTn);
  ensure(losses_, BTn);
  dropout_ = p_drop;

  tokens_.assign(tokens, tokens + BT);
  for (int n = 0; n < BT; n++)
    if (tokens_[n] < 0 || tokens_[n] >= V)
      throw InputError("token id " + std::to_string(tokens_[n]) + " at index " + std::to_string(n) +
                       " is outside the model's vocabulary [0, " + std::to_string(V) + ")");
  pos_.resize(BT);
  if (pos) {
    std::copy(pos, pos + BT, pos_.begin());
  } else {
    for (int b = 0; b < B; b++)
      for (int t = 0; t < T; t++) pos_[b * T + t] = t;
  }
  for (int n = 0; n < BT; n++) {
    if (pos_[n] < 0) throw ConfigError("position id " + std::to_string(pos_[n]) + " is negative");
    if (cfg_.position == PositionMethod::learned && pos_[n] >= cfg_.block_size)
      throw ConfigError("learned positions: position " + std::to_string(pos_[n]) +
                        " is past the model's table of " + std::to_string(cfg_.block_size) +
                        " positions (a learned table has no entry beyond its training length)");
  }

  GptView pv = bind_gpt_view(cfg_, specs_, params_.data());
  const float scale = 1.0f / std::sqrt(static_cast<float>(cfg_.head_dim()));

  // embeddings
  TIMED("fwd.embedding", embedding_forward(encoded_.data(), tokens_.data(), pv.wte, BT, C));
  if (cfg_.position == PositionMethod::learned) embedding_add_forward(encoded_.data(), pos_.data(), pv.wpe, BT, C);
  if (cfg_.position == PositionMethod::sinusoidal) sinusoidal_add_forward(encoded_.data(), pos_.data(), BT, C);
  if (p_drop > 0.0f) {
    fill_mask(mask_emb_, static_cast<std::size_t>(BT) * C, p_drop, *opt.rng);
    apply_mask(encoded_.data(), mask_emb_.data(), static_cast<std::size_t>(BT) * C);
  }

  ensure(dtmp_c_, static_cast<std::size_t>(BT) * C);
  const float* x = encoded_.data();
  for (int l = 0; l < cfg_.n_layer; l++) {
    LayerActs& a = infer ? infer_ : acts_[l];
    const LayerView& w = pv.layers[l];
    TIMED("fwd.layernorm", layernorm_forward(a.ln1.data(), a.ln1_mean.data(), a.ln1_rstd.data(), x, w.ln1_w, w.ln1_b, BT, C));
    TIMED("fwd.matmul.qkv", matmul_forward(a.qkv.data(), a.ln1.data(), w.qkv_w, w.qkv_b, BT, C, 3 * C));
    if (cfg_.position == PositionMethod::rope)
      TIMED("fwd.rope", rope_forward(a.qkv.data(), pos_.data(), rope_inv_freq_.data(), B, T, C, NH));
    if (infer) {
      TIMED("fwd.attention", with_bias([&](auto& bias) {
        attention_forward_tiled(a.atty.data(), a.qkv.data(), pos_.data(), bias, B, T, C, NH, scale);
      }, B));
    } else {
      TIMED("fwd.attention", with_bias([&](auto& bias) { attention_forward(a.atty.data(), a.probs.data(), a.qkv.data(), pos_.data(), bias,
                                                     B, T, C, NH, scale); }, B));
    }
    float* proj = dtmp_c_.data();
    TIMED("fwd.matmul.attproj", matmul_forward(proj, a.atty.data(), w.attproj_w, w.attproj_b, BT, C, C));
    if (p_drop > 0.0f) {
      fill_mask(a.mask_attn, static_cast<std::size_t>(BT) * C, p_drop, *opt.rng);
      apply_mask(proj, a.mask_attn.data(), static_cast<std::size_t>(BT) * C);
    }
    TIMED("fwd.residual", add(a.res2.data(), x, proj, static_cast<std::size_t>(BT) * C));
    TIMED("fwd.layernorm", layernorm_forward(a.ln2.data(), a.ln2_mean.data(), a.ln2_rstd.data(), a.res2.data(), w.ln2_w, w.ln2_b, BT, C));
    TIMED("fwd.matmul.fc", matmul_forward(a.fch.data(), a.ln2.data(), w.fc_w, w.fc_b, BT, C, F));
    TIMED("fwd.gelu", gelu_forward(a.fch_gelu.data(), a.fch.data(), static_cast<std::size_t>(BT) * F));
    TIMED("fwd.matmul.fcproj", matmul_forward(proj, a.fch_gelu.data(), w.fcproj_w, w.fcproj_b, BT, F, C));
    if (p_drop > 0.0f) {
      fill_mask(a.mask_mlp, static_cast<std::size_t>(BT) * C, p_drop, *opt.rng);
      apply_mask(proj, a.mask_mlp.data(), static_cast<std::size_t>(BT) * C);
    }
    TIMED("fwd.residual", add(a.res3.data(), a.res2.data(), proj, static_cast<std::size_t>(BT) * C));
    x = a.res3.data();
  }
  TIMED("fwd.layernorm", layernorm_forward(lnf_.data(), lnf_mean_.data(), lnf_rstd_.data(), x, pv.lnf_w, pv.lnf_b, BT, C));

  // classifier, chunk by chunk: logits, per-token losses and (need_grad) the gradient into dlnf
  scored_ = 0;
  if (targets)
    for (int n = 0; n < BT; n++) {
      if (targets[n] >= V)
        throw InputError("target id " + std::to_string(targets[n]) + " at index " + std::to_string(n) +
                         " is outside the model's vocabulary [0, " + std::to_string(V) + ")");
      scored_ += targets[n] >= 0;
    }
  if (opt.keep_logits) ensure(logits_, static_cast<std::size_t>(BT) * V);
  ensure(chunk_, static_cast<std::size_t>(kClassifierChunk) * V);
  if (opt.need_grad) {
    ensure(dlnf_, static_cast<std::size_t>(BT) * C);
    dlnf_.zero();
  }
  std::vector<float> dloss(kClassifierChunk, scored_ > 0 ? opt.loss_scale / static_cast<float>(scored_) : 0.0f);
  GptView gv = bind_gpt_view(cfg_, specs_, grads_.data());
  double total = 0.0;
  for (int r0 = 0; r0 < BT; r0 += kClassifierChunk) {
    const int rows = std::min(kClassifierChunk, BT - r0);
    float* lg = opt.keep_logits ? logits_.data() + static_cast<std::size_t>(r0) * V : chunk_.data();
    TIMED("fwd.matmul.lm_head", matmul_forward(lg, lnf_.data() + static_cast<std::size_t>(r0) * C, pv.lm_head, nullptr, rows, C, V));
    if (!targets) continue;
    TIMED("fwd.cross_entropy", cross_entropy_forward(losses_.data() + r0, lg, targets + r0, rows, V));
    for (int r = 0; r < rows; r++) total += losses_[r0 + r];
    if (opt.need_grad) {
      TIMED("bwd.cross_entropy", cross_entropy_backward(chunk_.data(), lg, targets + r0, dloss.data(), rows, V));
      TIMED("bwd.matmul.lm_head", matmul_backward(dlnf_.data() + static_cast<std::size_t>(r0) * C, gv.lm_head, nullptr, chunk_.data(),
                      lnf_.data() + static_cast<std::size_t>(r0) * C, pv.lm_head, rows, C, V));
    }
  }
  if (!targets) std::fill(losses_.data(), losses_.data() + BT, 0.0f);
  have_grad_state_ = opt.need_grad;
  return scored_ > 0 ? total / scored_ : 0.0;
}

void Gpt::backward() {
  if (!have_grad_state_) throw ConfigError("backward: call forward with need_grad first");
  have_grad_state_ = false;
  const int B = B_, T = T_, BT = B * T;
  const int C = cfg_.n_embd, F = cfg_.mlp_hidden, NH = cfg_.n_head;
  const std::size_t BTC = static_cast<std::size_t>(BT) * C;
  const float scale = 1.0f / std::sqrt(static_cast<float>(cfg_.head_dim()));
  GptView pv = bind_gpt_view(cfg_, specs_, params_.data());
  GptView gv = bind_gpt_view(cfg_, specs_, grads_.data());
  ensure(dres_, BTC);
  ensure(dtmp_c_, BTC);
  ensure(dqkv_, 3 * BTC);
  ensure(dfch_, static_cast<std::size_t>(BT) * F);
  ensure(dfch2_, static_cast<std::size_t>(BT) * F);

  const float* x_last = cfg_.n_layer > 0 ? acts_.back().res3.data() : encoded_.data();
  dres_.zero();
  TIMED("bwd.layernorm", layernorm_backward(dres_.data(), gv.lnf_w, gv.lnf_b, dlnf_.data(), x_last, pv.lnf_w, lnf_mean_.data(),
                     lnf_rstd_.data(), BT, C));

  if (dropout_ > 0.0f) ensure(dmasked_, BTC);
  auto masked = [&](const Buffer<float>& mask) -> const float* {
    if (dropout_ <= 0.0f) return dres_.data();
    for (std::size_t i = 0; i < BTC; i++) dmasked_[i] = dres_[i] * mask[i];
    return dmasked_.data();
  };

  for (int l = cfg_.n_layer - 1; l >= 0; l--) {
    LayerActs& a = acts_[l];
    const LayerView& w = pv.layers[l];
    const LayerView& g = gv.layers[l];
    const float* x_in = l == 0 ? encoded_.data() : acts_[l - 1].res3.data();
    // res3 = res2 + drop(fcproj(gelu(fc(ln2(res2)))))
    const float* dproj = masked(a.mask_mlp);
    TIMED("bwd.zero", dfch2_.zero());
    TIMED("bwd.matmul.fcproj", matmul_backward(dfch2_.data(), g.fcproj_w, g.fcproj_b, dproj, a.fch_gelu.data(), w.fcproj_w, BT, F, C));
    dfch_.zero();
    TIMED("bwd.gelu", gelu_backward(dfch_.data(), a.fch.data(), dfch2_.data(), static_cast<std::size_t>(BT) * F));
    dtmp_c_.zero();
    TIMED("bwd.matmul.fc", matmul_backward(dtmp_c_.data(), g.fc_w, g.fc_b, dfch_.data(), a.ln2.data(), w.fc_w, BT, C, F));
    TIMED("bwd.layernorm", layernorm_backward(dres_.data(), g.ln2_w, g.ln2_b, dtmp_c_.data(), a.res2.data(), w.ln2_w, a.ln2_mean.data(),
                       a.ln2_rstd.data(), BT, C));
    // res2 = x_in + drop(attproj(attention(rope(qkv(ln1(x_in))))))
    dproj = masked(a.mask_attn);
    dtmp_c_.zero();
    TIMED("bwd.matmul.attproj", matmul_backward(dtmp_c_.data(), g.attproj_w, g.attproj_b, dproj, a.atty.data(), w.attproj_w, BT, C, C));
    dqkv_.zero();
    if (cfg_.position == PositionMethod::t5) t5_partial_.zero();
    TIMED("bwd.attention", with_bias([&](auto& bias) { attention_backward(dqkv_.data(), dtmp_c_.data(), a.qkv.data(), a.probs.data(),
                                                    pos_.data(), bias, B, T, C, NH, scale); }, B));
    if (cfg_.position == PositionMethod::t5) t5_reduce_grad(gv.t5_bias, t5_partial_.data(), B, NH);
    if (cfg_.position == PositionMethod::rope)
      TIMED("bwd.rope", rope_backward(dqkv_.data(), pos_.data(), rope_inv_freq_.data(), B, T, C, NH));
    dtmp_c_.zero();
    TIMED("bwd.matmul.qkv", matmul_backward(dtmp_c_.data(), g.qkv_w, g.qkv_b, dqkv_.data(), a.ln1.data(), w.qkv_w, BT, C, 3 * C));
    TIMED("bwd.layernorm", layernorm_backward(dres_.data(), g.ln1_w, g.ln1_b, dtmp_c_.data(), x_in, w.ln1_w, a.ln1_mean.data(),
                       a.ln1_rstd.data(), BT, C));
  }
  const float* denc = masked(mask_emb_);
  TIMED("bwd.embedding", embedding_backward(gv.wte, denc, tokens_.data(), BT, C, cfg_.vocab_size));
  if (cfg_.position == PositionMethod::learned)
    TIMED("bwd.embedding", embedding_backward(gv.wpe, denc, pos_.data(), BT, C, cfg_.block_size));
}

}  // namespace stretch
