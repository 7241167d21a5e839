#include "model/transformer.hpp"

#include <algorithm>
#include <cmath>
#include <string>

#include "core/error.hpp"
#include "core/profile.hpp"
#include "model/block.hpp"
#include "model/lora.hpp"
#include "kernels/attention.hpp"
#include "kernels/attention_tiled.hpp"
#include "kernels/cross_entropy.hpp"
#include "kernels/embedding.hpp"
#include "kernels/layernorm.hpp"
#include "kernels/matmul.hpp"
#include "kernels/matvec_bf16.hpp"
#include "kernels/repeat_kv.hpp"
#include "position/alibi.hpp"
#include "position/logn.hpp"
#include "position/rope.hpp"
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

Transformer::Transformer(const ModelConfig& c) : cfg_(c) {
  cfg_.validate();
  specs_ = param_specs(cfg_);
  params_.resize(slab_size(specs_));
  grads_.resize(slab_size(specs_));
  lora_sites_ = lora_sites(cfg_);
  if (cfg_.position == PositionMethod::alibi)
    alibi_slopes_ = alibi_slopes(cfg_.n_head, cfg_.alibi_max_bias, cfg_.alibi_slope_scale());
  update_rope(cfg_.rope_train_length());
}

void Transformer::update_rope(int seq_len) {
  if (cfg_.position != PositionMethod::rope) return;
  RopeTables t = rope_tables(cfg_.rope_scaling, cfg_.head_dim(), cfg_.rope_base, cfg_.rope_train_length(), seq_len);
  rope_inv_freq_ = std::move(t.inv_freq);
  attn_factor_ = t.attention_factor;
}

void Transformer::set_context(const ContextParams& p) {
  ModelConfig c = cfg_;
  c.context() = p;
  c.validate();
  cfg_ = c;
  update_rope(cfg_.rope_train_length());
  if (cfg_.position == PositionMethod::alibi)
    alibi_slopes_ = alibi_slopes(cfg_.n_head, cfg_.alibi_max_bias, cfg_.alibi_slope_scale());
}

namespace {
// p with one field changed
template <class T>
ContextParams with(ContextParams p, T ContextParams::*field, const T& value) {
  p.*field = value;
  return p;
}
}  // namespace

void Transformer::set_rope_scaling(const RopeScaling& s) {
  set_context(with(cfg_.context(), &ContextParams::rope_scaling, s));
}

void Transformer::set_attn_window(int window) {
  set_context(with(cfg_.context(), &ContextParams::attn_window, window));
}

void Transformer::set_logn(LognMode mode) {
  set_context(with(cfg_.context(), &ContextParams::logn, mode));
}

void Transformer::set_extension(const PositionExtension& e) {
  set_context(with(cfg_.context(), &ContextParams::extension, e));
}

void Transformer::set_alibi_interp(int target) {
  set_context(with(cfg_.context(), &ContextParams::alibi_interp, target));
}


float Transformer::attention_scale() const {
  return static_cast<float>(attn_factor_ * attn_factor_ / std::sqrt(static_cast<double>(cfg_.head_dim())));
}

std::size_t Transformer::num_parameters() const {
  std::size_t n = 0;
  for (auto& s : specs_) n += s.numel();
  return n;
}

namespace {
// Draws one tensor of the table from rng (docs/MODEL.md; the adapter as model/lora.hpp says).
void init_tensor(const ParamSpec& s, float* p, Rng& rng) {
  const std::size_t n = s.numel();
  switch (s.kind) {
    case ParamKind::norm:
      std::fill(p, p + n, 1.0f);
      break;
    case ParamKind::bias:
    case ParamKind::lora_b:  // B = 0: the adapter starts as no change
      std::fill(p, p + n, 0.0f);
      break;
    case ParamKind::lora_a: {  // Kaiming-uniform, U(-1/sqrt(in), 1/sqrt(in))
      const float bound = 1.0f / std::sqrt(static_cast<float>(s.shape[1]));
      for (std::size_t i = 0; i < n; i++) p[i] = (2.0f * rng.uniform() - 1.0f) * bound;
      break;
    }
    default:
      for (std::size_t i = 0; i < n; i++) p[i] = rng.normal() * s.init_std;
  }
}
}  // namespace

void Transformer::init_weights(std::uint64_t seed) {
  require_fp32_weights("initialising the weights");
  Rng rng(seed);
  params_.zero();
  for (auto& s : specs_) init_tensor(s, params_.data() + s.offset, rng);
}

void Transformer::init_adapter(std::uint64_t seed) {
  Rng rng(seed ^ 0x10a4adab7e4ULL);
  for (auto& s : specs_)
    if (s.kind == ParamKind::lora_a || s.kind == ParamKind::lora_b) init_tensor(s, params_.data() + s.offset, rng);
}

void Transformer::require_fp32_weights(const char* what) const {
  if (storage_ == WeightStorage::bf16)
    throw ConfigError(std::string(what) + " needs the fp32 weights, and this model keeps its matrices in bf16 for "
                      "inference only (load it with `precision` fp32)");
}

void Transformer::store_weights(WeightStorage s, const std::function<void(const ParamSpec&, float*)>& fill) {
  if (fill && s != WeightStorage::bf16) throw ConfigError("store_weights: a fill applies to the switch to bf16");
  if (s == storage_) return;
  if (s == WeightStorage::bf16) {
    // up front, not as a crawling product at the first token
    if (const std::string why = bf16_products_missing(); !why.empty()) throw ConfigError("`precision`: " + why);
    if (cfg_.lora.enabled())
      throw ConfigError("bf16 weight storage: merge the LoRA adapter first (`lora`), the products use the merged "
                        "weights");
    if (params_bf16_.size() != params_.size()) params_bf16_.resize(params_.size());
    for (const auto& t : specs_) {
      if (fill) fill(t, params_.data() + t.offset);
      if (!kept_in_bf16(t)) continue;
      to_bf16(params_bf16_.data() + t.offset, params_.data() + t.offset, t.numel());
      params_.release(t.offset, t.numel());
    }
  } else {
    for (const auto& t : specs_)
      if (kept_in_bf16(t)) bf16_to_float(params_bf16_.data() + t.offset, t.numel(), params_.data() + t.offset);
    params_bf16_ = Buffer<bf16_t>();
  }
  storage_ = s;
}

void Transformer::embed(float* x, const std::int32_t* tokens, const int* pos, int N) const {
  const ConstParamView pv = bind_param_view(cfg_, specs_, params_.data());
  if (storage_ == WeightStorage::bf16)
    embed_forward(x, tokens, pos, N, cfg_, params_bf16_.data() + (pv.wte - params_.data()), pv.wpe);
  else
    embed_forward(x, tokens, pos, N, cfg_, pv.wte, pv.wpe);
}

void Transformer::set_trainable(std::vector<char> trainable) {
  if (!trainable.empty() && trainable.size() != specs_.size())
    throw ConfigError("set_trainable: " + std::to_string(trainable.size()) + " flags for " +
                      std::to_string(specs_.size()) + " tensors");
  trainable_ = std::move(trainable);
}

void Transformer::zero_grad() {
  if (trainable_.empty()) return grads_.zero();
  for (std::size_t i = 0; i < specs_.size(); i++)
    if (trainable_[i]) std::fill_n(grads_.data() + specs_[i].offset, specs_[i].numel(), 0.0f);
}

ParamView Transformer::grad_view() {
  ParamView g = bind_param_view(cfg_, specs_, grads_.data());
  if (trainable_.empty()) return g;
  auto mask = [&](float*& p) { p = grad_or_null(p); };
  mask(g.wte);
  mask(g.wpe);
  mask(g.t5_bias);
  mask(g.ln_emb_w);
  mask(g.ln_emb_b);
  for (LayerView& w : g.layers)
    for (float** p : {&w.ln1_w, &w.ln1_b, &w.qkv_w, &w.qkv_b, &w.attproj_w, &w.attproj_b, &w.ln2_w, &w.ln2_b, &w.fc_w,
                      &w.fc_b, &w.fcproj_w, &w.fcproj_b})
      mask(*p);
  mask(g.lnf_w);
  mask(g.lnf_b);
  mask(g.lm_head);
  for (auto& layer : g.lora_a)
    for (float*& p : layer) mask(p);
  for (auto& layer : g.lora_b)
    for (float*& p : layer) mask(p);
  return g;
}

float* Transformer::grad_or_null(float* g) const {
  if (!g || trainable_.empty()) return g;
  const auto off = static_cast<std::size_t>(g - grads_.data());
  const auto it = std::lower_bound(specs_.begin(), specs_.end(), off,
                                   [](const ParamSpec& s, std::size_t o) { return s.offset < o; });
  if (it == specs_.end() || it->offset != off) throw ConfigError("grad_or_null: not the start of a tensor");
  return trainable_[static_cast<std::size_t>(it - specs_.begin())] ? g : nullptr;
}

void Transformer::lora_forward_matrix(const ParamView& pv, LoraMatrix m, int l, LayerActs& a, float* out, int OC,
                                      const float* x, int N, float p_drop, Rng* rng) {
  if (lora_sites_.empty()) return;
  const int R = cfg_.lora.rank;
  a.lora_u.resize(lora_sites_.size());
  a.lora_x.resize(lora_sites_.size());
  a.lora_mask.resize(lora_sites_.size());
  for (std::size_t k = 0; k < lora_sites_.size(); k++) {
    const LoraSite& site = lora_sites_[k];
    if (site.matrix != m) continue;
    const std::size_t nx = static_cast<std::size_t>(N) * site.in;
    ensure(a.lora_u[k], static_cast<std::size_t>(N) * R);
    ensure(lora_tmp_, static_cast<std::size_t>(N) * site.rows);
    const float* xin = x;
    if (p_drop > 0.0f) {  // the adapter's own dropout, on its input
      fill_mask(a.lora_mask[k], nx, p_drop, *rng);
      ensure(a.lora_x[k], nx);
      for (std::size_t i = 0; i < nx; i++) a.lora_x[k][i] = x[i] * a.lora_mask[k][i];
      xin = a.lora_x[k].data();
    }
    const int t = static_cast<int>(site.target);
    lora_forward(out, OC, xin, a.lora_u[k].data(), lora_tmp_.data(), N, site, R, cfg_.lora.scale(), pv.lora_a[l][t],
                 pv.lora_b[l][t]);
  }
}

void Transformer::lora_backward_matrix(const ParamView& pv, const ParamView& gv, LoraMatrix m, int l, LayerActs& a,
                                       float* dx, const float* dout, int OC, const float* x, int N) {
  if (lora_sites_.empty()) return;
  const int R = cfg_.lora.rank;
  for (std::size_t k = 0; k < lora_sites_.size(); k++) {
    const LoraSite& site = lora_sites_[k];
    if (site.matrix != m) continue;
    const bool dropped = lora_drop_ > 0.0f;
    ensure(lora_tmp_, static_cast<std::size_t>(N) * site.rows);
    ensure(lora_du_, static_cast<std::size_t>(N) * R);
    if (dropped) ensure(lora_tmpx_, static_cast<std::size_t>(N) * site.in);
    const int t = static_cast<int>(site.target);
    lora_backward(dx, gv.lora_a[l][t], gv.lora_b[l][t], dout, OC,
                  dropped ? a.lora_x[k].data() : x, a.lora_u[k].data(), dropped ? a.lora_mask[k].data() : nullptr,
                  lora_tmp_.data(), lora_du_.data(), lora_tmpx_.data(), N, site, R, cfg_.lora.scale(),
                  pv.lora_a[l][t], pv.lora_b[l][t]);
  }
}

template <class Fn>
void Transformer::with_bias(Fn&& fn, int B) {
  float* partial = nullptr;
  if (cfg_.position == PositionMethod::t5) {
    ensure(t5_partial_, static_cast<std::size_t>(B) * cfg_.n_head * kT5Buckets);
    partial = t5_partial_.data();
  }
  const ParamView pv = bind_param_view(cfg_, specs_, params_.data());
  with_position_bias(cfg_, alibi_slopes_.data(), pv.t5_bias, partial, fn);
}

void Transformer::linear_forward(float* out, const float* inp, const float* w, const float* b, int N, int C, int OC) {
  if (!bf16_products()) return matmul_forward(out, inp, w, b, N, C, OC);
  bf16_product(out, inp, w, b, N, C, OC);
}

void Transformer::infer_linear(float* out, const float* inp, const float* w, const float* b, int N, int C, int OC) {
  if (storage_ == WeightStorage::fp32) return matmul_forward(out, inp, w, b, N, C, OC);
  bf16_product(out, inp, w, b, N, C, OC);
}

void Transformer::bf16_product(float* out, const float* inp, const float* w, const float* b, int N, int C, int OC) {
  const std::size_t n = static_cast<std::size_t>(N) * C;
  if (x_bf16_.size() < n) x_bf16_.resize(n);
  to_bf16(x_bf16_.data(), inp, n);
  const bf16_t* wb = params_bf16_.data() + (w - params_.data());
  if (N <= kMatvecRows)  // decoding: a memory-bound stream of W (kernels/matvec_bf16.hpp)
    matvec_bf16(out, x_bf16_.data(), wb, b, N, C, OC);
  else
    matmul_forward_bf16(out, x_bf16_.data(), wb, b, N, C, OC);
}

void Transformer::linear_backward(float* dinp, float* dw, float* db, const float* dout, const float* inp,
                                  const float* w, int N, int C, int OC) {
  if (precision_ == Precision::fp32) return matmul_backward(dinp, dw, db, dout, inp, w, N, C, OC);
  const std::size_t nx = static_cast<std::size_t>(N) * C, nd = static_cast<std::size_t>(N) * OC;
  if (x_bf16_.size() < nx) x_bf16_.resize(nx);
  if (d_bf16_.size() < nd) d_bf16_.resize(nd);
  to_bf16(x_bf16_.data(), inp, nx);
  to_bf16(d_bf16_.data(), dout, nd);
  matmul_backward_bf16(dinp, dw, db, dout, d_bf16_.data(), x_bf16_.data(), params_bf16_.data() + (w - params_.data()),
                       N, C, OC);
}

void Transformer::set_shifted_groups(int group) {
  if (group < 0 || group == 1)
    throw ConfigError("shifted sparse attention: the group size must be 0 (off) or at least 2, got " +
                      std::to_string(group));
  s2_group_ = group;
}

bool Transformer::tiled_training(int B, int T) const {
  if (s2_group_ > 0) return true;  // only the tiled kernels have the group mask
  switch (training_attention_) {
    case TrainingAttention::materialized: return false;
    case TrainingAttention::tiled: return true;
    default:
      return static_cast<std::size_t>(B) * cfg_.n_head * T * T * sizeof(float) > kMaterializedLimitBytes;
  }
}

void Transformer::size_layer(LayerActs& a, std::size_t BT, std::size_t probs, std::size_t lse) const {
  const std::size_t C = cfg_.n_embd, F = cfg_.mlp_hidden, FW = cfg_.mlp_width();
  a.ln1.resize(BT * C);
  a.ln1_mean.resize(BT);
  a.ln1_rstd.resize(BT);
  a.qkv.resize(BT * 3 * C);
  if (probs) a.probs.resize(probs);
  if (lse) a.lse.resize(lse);
  a.atty.resize(BT * C);
  a.res2.resize(BT * C);
  a.ln2.resize(BT * C);
  a.ln2_mean.resize(BT);
  a.ln2_rstd.resize(BT);
  a.fch.resize(BT * FW);
  a.fch_gelu.resize(BT * F);
  a.res3.resize(BT * C);
}

void Transformer::ensure_acts(int B, int T) {
  const bool tiled = tiled_training(B, T);
  if (B == B_ && T == T_ && tiled == acts_tiled_ && acts_.size() == static_cast<std::size_t>(cfg_.n_layer)) return;
  acts_.assign(cfg_.n_layer, {});
  const std::size_t rows = static_cast<std::size_t>(B) * cfg_.n_head * T;
  for (auto& a : acts_)
    size_layer(a, static_cast<std::size_t>(B) * T, tiled ? 0 : rows * T, tiled ? rows : 0);
  B_ = B;
  T_ = T;
  acts_tiled_ = tiled;
}

void Transformer::ensure_infer_acts(int B, int T) {
  if (B == infer_B_ && T == infer_T_) return;
  infer_ = LayerActs{};
  size_layer(infer_, static_cast<std::size_t>(B) * T, 0);
  infer_B_ = B;
  infer_T_ = T;
}

double Transformer::forward(const std::int32_t* tokens, const std::int32_t* targets, const std::int32_t* pos, int B, int T,
                    const ForwardOptions& opt) {
  if (B < 1 || T < 1) throw ConfigError("forward: batch and length must be positive, got B=" + std::to_string(B) +
                                        " T=" + std::to_string(T));
  if (opt.need_grad && !targets) throw ConfigError("forward: need_grad requires targets");
  if (opt.need_grad) require_fp32_weights("training");
  if (opt.need_grad && !cfg_.extension.is_none())
    throw ConfigError("forward: " + cfg_.extension.to_string() + " is an evaluation and generation setting; a "
                      "training forward does not implement it (remove it from the config to train)");
  const int C = cfg_.n_embd, V = cfg_.vocab_size, NH = cfg_.n_head;
  const int QKV = cfg_.qkv_width(), NKV = cfg_.kv_heads();
  const int BT = B * T;
  const float p_drop = opt.training ? cfg_.dropout : 0.0f;
  const float lora_drop = opt.training ? cfg_.lora.dropout : 0.0f;
  if ((p_drop > 0.0f || lora_drop > 0.0f) && !opt.rng)
    throw ConfigError("forward: dropout in training needs a random generator");
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
  lora_drop_ = lora_drop;

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

  if (cfg_.position == PositionMethod::rope && cfg_.rope_scaling.depends_on_length())
    update_rope(*std::max_element(pos_.begin(), pos_.end()) + 1);  // dynamic NTK, LongRoPE: the current length
  ParamView pv = bind_param_view(cfg_, specs_, params_.data());
  if (precision_ == Precision::bf16 && storage_ == WeightStorage::fp32) {  // this forward's (and backward's) bf16 weights
    if (params_bf16_.size() != params_.size()) params_bf16_.resize(params_.size());
    TIMED("fwd.to_bf16", to_bf16(params_bf16_.data(), params_.data(), params_.size()));
  }
  const float scale = attention_scale();
  const int window = cfg_.attn_window;
  if (NKV != NH) ensure(qkvp_, static_cast<std::size_t>(BT) * QKV);
  // Self-Extend / ReRoPE of a rope model: a second, remapped score set (infer only; alibi and t5 remap the distance
  // in their bias instead, model/block.hpp)
  const bool far = !cfg_.extension.is_none() && cfg_.position == PositionMethod::rope;
  if (far) ensure(far_, static_cast<std::size_t>(BT) * 2 * C);

  // embeddings
  TIMED("fwd.embedding", embed(encoded_.data(), tokens_.data(), pos_.data(), BT));
  if (cfg_.embed_norm) {  // encoded = LayerNorm(the summed embeddings), which are kept for the backward pass
    ensure(emb_raw_, BTn * C);
    ensure(emb_mean_, BTn);
    ensure(emb_rstd_, BTn);
    std::copy(encoded_.data(), encoded_.data() + BTn * C, emb_raw_.data());
    TIMED("fwd.norm", layernorm_forward(encoded_.data(), emb_mean_.data(), emb_rstd_.data(), emb_raw_.data(),
                                        pv.ln_emb_w, pv.ln_emb_b, BT, C, cfg_.norm_eps));
  }
  if (p_drop > 0.0f) {
    fill_mask(mask_emb_, static_cast<std::size_t>(BT) * C, p_drop, *opt.rng);
    apply_mask(encoded_.data(), mask_emb_.data(), static_cast<std::size_t>(BT) * C);
  }

  ensure(dtmp_c_, static_cast<std::size_t>(BT) * C);
  const std::size_t BTC = static_cast<std::size_t>(BT) * C;
  const float* x = encoded_.data();
  for (int l = 0; l < cfg_.n_layer; l++) {
    LayerActs& a = infer ? infer_ : acts_[l];
    // grouped-query attention: the projection has NKV key / value heads (qkvp_); attend gives every query head its
    // kv head in a.qkv, which the backward pass reads
    const BlockRows rows{a.ln1.data(),  a.ln1_mean.data(), a.ln1_rstd.data(), NKV == NH ? a.qkv.data() : qkvp_.data(),
                         a.atty.data(), dtmp_c_.data(),    a.res2.data(),     a.ln2.data(),
                         a.ln2_mean.data(), a.ln2_rstd.data(), a.fch.data(),  a.fch_gelu.data(),
                         a.res3.data()};
    // fp32 or bf16, the adapter's sites, dropout on the branches' last products
    auto linear = [&](LoraMatrix m, float* out, const float* in, const float* wt, const float* b, int IC, int OC) {
      static constexpr const char* kLabel[] = {"fwd.matmul.qkv", "fwd.matmul.attproj", "fwd.matmul.fc",
                                               "fwd.matmul.fcproj"};
      TIMED(kLabel[static_cast<int>(m)], linear_forward(out, in, wt, b, BT, IC, OC));
      TIMED("fwd.lora", lora_forward_matrix(pv, m, l, a, out, OC, in, BT, lora_drop, opt.rng));
      if (p_drop > 0.0f && (m == LoraMatrix::attproj || m == LoraMatrix::fcproj)) {
        Buffer<float>& mask = m == LoraMatrix::attproj ? a.mask_attn : a.mask_mlp;
        fill_mask(mask, BTC, p_drop, *opt.rng);
        apply_mask(out, mask.data(), BTC);
      }
    };
    auto attend = [&](const float* qkv, float* att) {
      if (NKV != NH)
        TIMED("fwd.repeat_kv", repeat_kv_forward(a.qkv.data(), qkv, static_cast<std::size_t>(BT), C, NH, NKV));
      if (far) TIMED("fwd.rope", far_scores(a.qkv.data(), BT));
      if (cfg_.position == PositionMethod::rope)
        TIMED("fwd.rope", rope_forward(a.qkv.data(), pos_.data(), rope_inv_freq_.data(), B, T, C, NH));
      if (cfg_.logn != LognMode::off)
        logn_scale_queries(a.qkv.data(), pos_.data(), BT, 3 * C, C, cfg_.block_size, cfg_.logn);
      if (infer) {
        TIMED("fwd.attention", with_inference_bias(cfg_, alibi_slopes_.data(), pv.t5_bias, [&](auto& bias) {
          attention_forward_tiled(att, a.qkv.data(), pos_.data(), bias, B, T, C, NH, scale, window,
                                  static_cast<float*>(nullptr),
                                  FarScores<float>{far ? far_.data() : nullptr, cfg_.extension.window});
        }));
      } else if (acts_tiled_) {
        TIMED("fwd.attention", with_bias([&](auto& bias) {
          attention_forward_tiled(att, a.qkv.data(), pos_.data(), bias, B, T, C, NH, scale, window, a.lse.data(),
                                  FarScores<float>{}, s2_group_);
        }, B));
      } else {
        TIMED("fwd.attention", with_bias([&](auto& bias) {
          attention_forward(att, a.probs.data(), a.qkv.data(), pos_.data(), bias, B, T, C, NH, scale, window);
        }, B));
      }
    };
    block_forward(cfg_, pv.layers[l], x, rows, BT, linear, attend);
    x = a.res3.data();
  }
  TIMED("fwd.norm", norm_forward(cfg_, lnf_.data(), lnf_mean_.data(), lnf_rstd_.data(), x, pv.lnf_w, pv.lnf_b, BT));

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
  const ParamView gv = grad_view();
  double total = 0.0;
  for (int r0 = 0; r0 < BT; r0 += kClassifierChunk) {
    const int rows = std::min(kClassifierChunk, BT - r0);
    float* lg = opt.keep_logits ? logits_.data() + static_cast<std::size_t>(r0) * V : chunk_.data();
    TIMED("fwd.matmul.lm_head", linear_forward(lg, lnf_.data() + static_cast<std::size_t>(r0) * C, pv.lm_head, nullptr, rows, C, V));
    if (!targets) continue;
    TIMED("fwd.cross_entropy", cross_entropy_forward(losses_.data() + r0, lg, targets + r0, rows, V));
    for (int r = 0; r < rows; r++) total += losses_[r0 + r];
    if (opt.need_grad) {
      TIMED("bwd.cross_entropy", cross_entropy_backward(chunk_.data(), lg, targets + r0, dloss.data(), rows, V));
      TIMED("bwd.matmul.lm_head", linear_backward(dlnf_.data() + static_cast<std::size_t>(r0) * C, gv.lm_head, nullptr, chunk_.data(),
                      lnf_.data() + static_cast<std::size_t>(r0) * C, pv.lm_head, rows, C, V));
    }
  }
  if (!targets) std::fill(losses_.data(), losses_.data() + BT, 0.0f);
  have_grad_state_ = opt.need_grad;
  return scored_ > 0 ? total / scored_ : 0.0;
}

void Transformer::far_scores(const float* qkv, int BT) {
  far_positions_forward(far_.data(), qkv, pos_.data(), BT, cfg_, rope_inv_freq_.data());
  if (cfg_.logn != LognMode::off)
    logn_scale_queries(far_.data(), pos_.data(), BT, 2 * cfg_.n_embd, cfg_.n_embd, cfg_.block_size, cfg_.logn);
}

void Transformer::backward() {
  if (!have_grad_state_) throw ConfigError("backward: call forward with need_grad first");
  have_grad_state_ = false;
  const int B = B_, T = T_, BT = B * T;
  const int C = cfg_.n_embd, F = cfg_.mlp_hidden, NH = cfg_.n_head;
  const int FW = cfg_.mlp_width(), QKV = cfg_.qkv_width(), NKV = cfg_.kv_heads();
  const std::size_t BTC = static_cast<std::size_t>(BT) * C;
  const float scale = attention_scale();
  const int window = cfg_.attn_window;
  ParamView pv = bind_param_view(cfg_, specs_, params_.data());
  const ParamView gv = grad_view();
  ensure(dres_, BTC);
  ensure(dtmp_c_, BTC);
  ensure(dqkv_, 3 * BTC);
  ensure(dfch_, static_cast<std::size_t>(BT) * FW);
  if (NKV != NH) ensure(dqkvp_, static_cast<std::size_t>(BT) * QKV);
  ensure(dfch2_, static_cast<std::size_t>(BT) * F);

  const float* x_last = cfg_.n_layer > 0 ? acts_.back().res3.data() : encoded_.data();
  dres_.zero();
  TIMED("bwd.norm", norm_backward(cfg_, dres_.data(), gv.lnf_w, gv.lnf_b, dlnf_.data(), x_last, pv.lnf_w, lnf_mean_.data(),
                                   lnf_rstd_.data(), BT));

  if (dropout_ > 0.0f) ensure(dmasked_, BTC);
  auto masked = [&](const float* d, const Buffer<float>& mask) -> const float* {
    if (dropout_ <= 0.0f) return d;
    for (std::size_t i = 0; i < BTC; i++) dmasked_[i] = d[i] * mask[i];
    return dmasked_.data();
  };

  for (int l = cfg_.n_layer - 1; l >= 0; l--) {
    LayerActs& a = acts_[l];
    const LayerView& w = pv.layers[l];
    const LayerView& g = gv.layers[l];
    const float* x_in = l == 0 ? encoded_.data() : acts_[l - 1].res3.data();
    const BlockRows rows{a.ln1.data(),  a.ln1_mean.data(), a.ln1_rstd.data(), a.qkv.data(),
                         a.atty.data(), nullptr,           a.res2.data(),     a.ln2.data(),
                         a.ln2_mean.data(), a.ln2_rstd.data(), a.fch.data(),  a.fch_gelu.data(),
                         a.res3.data()};
    auto linear_back = [&](LoraMatrix m, float* dinp, const float* dout, const float* inp, int IC, int OC) {
      static constexpr const char* kLabel[] = {"bwd.matmul.qkv", "bwd.matmul.attproj", "bwd.matmul.fc",
                                               "bwd.matmul.fcproj"};
      if (m == LoraMatrix::attproj) dout = masked(dout, a.mask_attn);
      if (m == LoraMatrix::fcproj) dout = masked(dout, a.mask_mlp);
      const float* wt = matrix_of(w, m).first;
      const auto [gw, gb] = matrix_of(g, m);
      TIMED(kLabel[static_cast<int>(m)], linear_backward(dinp, gw, gb, dout, inp, wt, BT, IC, OC));
      TIMED("bwd.lora", lora_backward_matrix(pv, gv, m, l, a, dinp, dout, OC, inp, BT));
    };
    // back through attention, log-n, rope and the kv heads' repetition to the q | k | v projection
    auto attend_back = [&](const float* datt) -> const float* {
      dqkv_.zero();
      if (cfg_.position == PositionMethod::t5) t5_partial_.zero();
      if (acts_tiled_) {
        TIMED("bwd.attention", with_bias([&](auto& bias) {
          attention_backward_tiled(dqkv_.data(), datt, a.qkv.data(), a.atty.data(), a.lse.data(), pos_.data(), bias,
                                   B, T, C, NH, scale, window, s2_group_);
        }, B));
      } else {
        TIMED("bwd.attention", with_bias([&](auto& bias) {
          attention_backward(dqkv_.data(), datt, a.qkv.data(), a.probs.data(), pos_.data(), bias, B, T, C, NH,
                             scale, window);
        }, B));
      }
      if (gv.t5_bias) t5_reduce_grad(gv.t5_bias, t5_partial_.data(), B, NH);
      if (cfg_.logn != LognMode::off)
        logn_scale_query_grads(dqkv_.data(), pos_.data(), BT, 3 * C, C, cfg_.block_size, cfg_.logn);
      if (cfg_.position == PositionMethod::rope)
        TIMED("bwd.rope", rope_backward(dqkv_.data(), pos_.data(), rope_inv_freq_.data(), B, T, C, NH));
      if (NKV == NH) return dqkv_.data();
      dqkvp_.zero();
      TIMED("bwd.repeat_kv", repeat_kv_backward(dqkvp_.data(), dqkv_.data(), static_cast<std::size_t>(BT), C, NH, NKV));
      return dqkvp_.data();
    };
    block_backward(cfg_, w, g, x_in, rows, BT, dres_.data(), BlockGradRows{dtmp_c_.data(), dfch_.data(), dfch2_.data()},
                   linear_back, attend_back);
  }
  const float* denc = masked(dres_.data(), mask_emb_);
  if (cfg_.embed_norm) {  // back through the embedding LayerNorm to the summed embeddings
    ensure(demb_raw_, BTC);
    std::fill(demb_raw_.data(), demb_raw_.data() + BTC, 0.0f);
    TIMED("bwd.norm", layernorm_backward(demb_raw_.data(), gv.ln_emb_w, gv.ln_emb_b, denc, emb_raw_.data(), pv.ln_emb_w,
                                         emb_mean_.data(), emb_rstd_.data(), BT, C));
    denc = demb_raw_.data();
  }
  if (!gv.wte) {  // frozen token embeddings
  } else if (cfg_.embed_scale != 1.0f) {  // d wte = embed_scale * d x (the position table, if any, is unscaled)
    ensure(dtmp_c_, BTC);
    for (std::size_t i = 0; i < BTC; i++) dtmp_c_[i] = cfg_.embed_scale * denc[i];
    TIMED("bwd.embedding", embedding_backward(gv.wte, dtmp_c_.data(), tokens_.data(), BT, C, cfg_.vocab_size));
  } else {
    TIMED("bwd.embedding", embedding_backward(gv.wte, denc, tokens_.data(), BT, C, cfg_.vocab_size));
  }
  if (gv.wpe)
    TIMED("bwd.embedding", embedding_backward(gv.wpe, denc, pos_.data(), BT, C, cfg_.block_size));
}

}  // namespace stretch
