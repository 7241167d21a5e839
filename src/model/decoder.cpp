#include "model/decoder.hpp"

#include <unistd.h>

#include <cstdio>

#include <algorithm>
#include <cmath>
#include <string>

#include "kernels/attention_tiled.hpp"
#include "kernels/layernorm.hpp"
#include "kernels/bf16.hpp"
#include "kernels/half.hpp"
#include "kernels/matmul.hpp"
#include "kernels/repeat_kv.hpp"
#include "kernels/vecmath.hpp"
#include "position/alibi.hpp"
#include "position/logn.hpp"
#include "model/block.hpp"
#include "position/rope.hpp"
#include "position/rope_scaling.hpp"
#include "position/t5.hpp"

namespace stretch {

namespace {
void ensure(Buffer<float>& b, std::size_t n) {
  if (b.size() < n) b.resize(n);
}
}  // namespace

std::size_t kv_type_bytes(KvType t) { return t == KvType::f32 ? 4 : 2; }

bool Decoder::can_slide(PositionMethod p) {
  return p == PositionMethod::alibi || p == PositionMethod::t5 || p == PositionMethod::none;
}

Decoder::Decoder(Transformer& model, int ctx, bool slide, int keep, const FieldNames& name, KvType kv)
    : m_(model), c_(model.config()), S_(ctx), slide_(slide), keep_(keep), kv_(kv) {
  auto n = [&](const char* field) { return name ? name(field) : field_ref(field); };
  if (ctx < 1) throw ConfigError(n("ctx") + ": expected a positive number of tokens, got " + std::to_string(ctx));
  if (c_.lora.enabled())
    throw ConfigError("the decoder runs base weights only; this model has an unmerged LoRA adapter (merge it into "
                      "the weights first: merge_lora, model/lora.hpp)");
  if (keep >= 0) {
    if (!slide)
      throw ConfigError(n("keep") + ": attention sinks are kept while the cache slides, and sliding is off (" +
                        n("slide") + ")");
    if (keep >= ctx)
      throw ConfigError(n("keep") + ": " + std::to_string(keep) + " sink tokens must be fewer than the " + n("ctx") +
                        " " + std::to_string(ctx) + " cache slots");
    if (c_.position == PositionMethod::sinusoidal || c_.position == PositionMethod::learned)
      throw ConfigError(n("keep") + ": a " + std::string(to_string(c_.position)) + " model adds each token's "
                        "position to its embedding once, so a token cannot move to its cache slot's position; "
                        "attention sinks need rope, alibi, t5 or none");
    if (c_.attn_window > 0)
      throw ConfigError(n("keep") + ": with attention sinks the cache's ring is the window; drop " +
                        n("attn_window") + " " + std::to_string(c_.attn_window));
  } else if (slide && !Decoder::can_slide(c_.position)) {
    throw ConfigError("sliding past the cache needs a model whose attention depends only on distances (alibi, t5 "
                      "or none), or attention sinks (" + n("keep") + " N); this one uses " +
                      std::string(to_string(c_.position)));
  }
  const std::size_t per_layer = static_cast<std::size_t>(S_) * c_.kv_dim();
  // a cache larger than the machine is refused by name, not left to fail as "out of memory" deep in a resize
  const double cache_bytes = 2.0 * static_cast<double>(per_layer) * c_.n_layer * static_cast<double>(kv_type_bytes(kv));
  const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGESIZE);
  const double memory = pages > 0 && page > 0 ? static_cast<double>(pages) * static_cast<double>(page) : 0.0;
  if (memory > 0 && cache_bytes > memory) {
    char b[256];
    std::snprintf(b, sizeof b, "%s %d: the key/value cache would take %.1f GB (2 x %d layers x %d tokens x %d "
                  "values x %zu bytes), more than this machine's %.1f GB of memory", n("ctx").c_str(), ctx, cache_bytes / 1e9,
                  c_.n_layer, ctx, c_.kv_dim(), kv_type_bytes(kv), memory / 1e9);
    throw ConfigError(b);
  }
  if (kv == KvType::f32) {
    k_.resize(per_layer * c_.n_layer);
    v_.resize(per_layer * c_.n_layer);
  } else {
    k16_.resize(per_layer * c_.n_layer);
    v16_.resize(per_layer * c_.n_layer);
  }
  const int hd = c_.head_dim();
  double factor = 1.0;
  if (c_.position == PositionMethod::rope) {
    RopeTables t = rope_tables(c_.rope_scaling, hd, c_.rope_base, c_.rope_train_length(), ctx);
    inv_freq_ = std::move(t.inv_freq);
    factor = t.attention_factor;
    positional_ = keep >= 0 || !c_.extension.is_none();
  }
  if (positional_) {  // positions never pass S - 1 here: the cache's positions, or indices of a cache that never slides
    const int half = hd / 2;
    const std::size_t n = static_cast<std::size_t>(S_) * half;
    cos_.resize(n);
    sin_.resize(n);
    fq_cos_.resize(n);
    fq_sin_.resize(n);
    fk_cos_.resize(n);
    fk_sin_.resize(n);
    for (int p = 0; p < S_; p++) {
      const std::size_t k = static_cast<std::size_t>(p) * half;
      rope_angles(cos_.data() + k, sin_.data() + k, p, inv_freq_.data(), half);
      rope_angles(fq_cos_.data() + k, fq_sin_.data() + k, c_.extension.far_query(p), inv_freq_.data(), half);
      rope_angles(fk_cos_.data() + k, fk_sin_.data() + k, c_.extension.far_key(p), inv_freq_.data(), half);
    }
  }
  scale_ = static_cast<float>(factor * factor / std::sqrt(static_cast<double>(hd)));
  if (c_.position == PositionMethod::alibi) alibi_ = alibi_slopes(c_.n_head, c_.alibi_max_bias, c_.alibi_slope_scale());
}

void Decoder::store(bool key, std::size_t at, const float* src, std::size_t n) {
  switch (kv_) {
    case KvType::f32: std::copy(src, src + n, (key ? k_ : v_).data() + at); break;
    case KvType::bf16: to_bf16((key ? k16_ : v16_).data() + at, src, n); break;
    case KvType::f16: to_f16((key ? k16_ : v16_).data() + at, src, n); break;
  }
}

std::pair<const float*, long> Decoder::rows(bool key, int l, long slot, long count, int g, float* scratch) const {
  const int KVD = c_.kv_dim(), hd = c_.head_dim();
  const std::size_t first = (static_cast<std::size_t>(l) * S_ + static_cast<std::size_t>(slot)) * KVD +
                            static_cast<std::size_t>(g) * hd;
  if (kv_ == KvType::f32) return {(key ? k_ : v_).data() + first, KVD};
  const std::uint16_t* src = (key ? k16_ : v16_).data() + first;
  for (long k = 0; k < count; k++) {
    if (kv_ == KvType::bf16) bf16_to_float(src + k * KVD, static_cast<std::size_t>(hd), scratch + k * hd);
    else widen_f16(scratch + k * hd, src + k * KVD, static_cast<std::size_t>(hd));
  }
  return {scratch, hd};
}

long Decoder::query_position(long a) const { return keep_ >= 0 ? std::min<long>(a, S_ - 1) : a; }

long Decoder::visible(long a, Run* runs, int& n_runs, long& qpos) const {
  n_runs = 0;
  qpos = query_position(a);
  auto ring = [&](long first_slot, long ring_lo, long ring_size, long n, long pos0) {
    // n consecutive tokens from ring slot first_slot on, in a ring of ring_size slots starting at ring_lo
    const long first = std::min(n, ring_lo + ring_size - first_slot);
    if (first > 0) runs[n_runs++] = {first_slot, first, pos0};
    if (n - first > 0) runs[n_runs++] = {ring_lo, n - first, pos0 + first};
  };
  if (keep_ < 0) {
    long lo = std::max(0L, a - S_ + 1);
    if (c_.attn_window > 0) lo = std::max(lo, a - c_.attn_window + 1);
    ring(lo % S_, 0, S_, a - lo + 1, lo);
    return a - lo + 1;
  }
  const long N = keep_, R = S_ - keep_;
  const long ns = std::min(N, a + 1);
  if (ns > 0) runs[n_runs++] = {0, ns, 0};
  if (a < N) return ns;
  const long lo = std::max(N, a - R + 1);  // the oldest window token still cached (and visible)
  ring(N + (lo - N) % R, N, R, a - lo + 1, N);
  return ns + a - lo + 1;
}

const float* Decoder::append(const std::int32_t* tokens, int n, bool all_logits) {
  if (n < 1) throw ConfigError("decoder: append needs at least one token");
  const int V = c_.vocab_size;
  for (int i = 0; i < n; i++)
    if (tokens[i] < 0 || tokens[i] >= V)
      throw InputError("token id " + std::to_string(tokens[i]) + " is outside the model's vocabulary [0, " +
                       std::to_string(V) + ")");
  if (!slide_ && seen_ + n > S_)
    throw ContextFull("the context is full: " + std::to_string(seen_ + n) + " tokens do not fit in `ctx` " +
                      std::to_string(S_) +
                      (Decoder::can_slide(c_.position)
                           ? " (raise `ctx`, or let the cache slide to drop the oldest tokens)"
                           : " (raise `ctx`; a " + std::string(to_string(c_.position)) +
                                 " model cannot slide past it" +
                                 (c_.position == PositionMethod::rope
                                      ? " without attention sinks (`keep` N); `rope_scaling` extends what it can reach)"
                                      : ")")));
  if (c_.position == PositionMethod::learned && seen_ + n > c_.block_size)
    throw ContextFull("learned positions: position " + std::to_string(seen_ + n - 1) + " is past the model's table of " +
                      std::to_string(c_.block_size) + " (use `ctx` <= " + std::to_string(c_.block_size) + ")");
  ensure(logits_, static_cast<std::size_t>(all_logits ? n : 1) * V);
  // as one chunk while nothing in the ring is overwritten that a query of the chunk still needs; else one by one
  int done = 0;
  while (done < n) {
    const long room = S_ - seen_;
    const int chunk = room > 1 ? static_cast<int>(std::min<long>(room, n - done)) : 1;
    const bool last = done + chunk == n;
    if (all_logits || last)
      forward_rows(tokens + done, chunk, all_logits ? logits_.data() + static_cast<std::size_t>(done) * V : logits_.data(),
                   all_logits);
    else
      forward_rows(tokens + done, chunk, nullptr, false);
    done += chunk;
  }
  return logits_.data();
}

// One task per (new row, kv head): the group of query heads sharing that kv head reads each cached key and value
// once. Scores, softmax and P V in fixed orders (the same result for any thread count).
void Decoder::attend_cached(int l, long a0, int n, const ParamView& pv) {
  const int C = c_.n_embd, NH = c_.n_head, NKV = c_.kv_heads(), hd = c_.head_dim();
  const int QKV = c_.qkv_width(), group = NH / NKV, half = hd / 2;
  const float* t5_table = pv.t5_bias;
  const bool wide = kv_ != KvType::f32;  // 16-bit cache: each run widened into scratch first
  const long tasks = static_cast<long>(n) * NKV;
  const bool far_set = positional_ && !c_.extension.is_none();
  const long wn = c_.extension.window;
  // src rotated by the angles of table row p into dst
  auto rotate = [half](float* dst, const float* src, const float* cs, const float* sn, long p) {
    rope_rotate_head(dst, src, cs + p * half, sn + p * half, half);
  };
  // Always inside a parallel region, even for one task: oneDNN then runs each small product on the calling
  // thread instead of starting threads of its own per call (which costs more than the product).
#pragma omp parallel
  {
    std::vector<float> sc(static_cast<std::size_t>(group) * S_);
    std::vector<long> kpos(static_cast<std::size_t>(S_));
    std::vector<float> kr(positional_ ? static_cast<std::size_t>(S_) * hd : 0);  // rotated keys
    std::vector<float> qn(positional_ ? static_cast<std::size_t>(group) * hd : 0), qf(qn.size());
    // a 16-bit cache is read in pieces of kPiece keys, each widened into kw (64 to 512 KB for head sizes 16 to 128:
    // stays in L2) and used at once; an f32 cache in whole runs, read where it lies
    constexpr long kPiece = 1024;
    std::vector<float> kw(wide ? static_cast<std::size_t>(kPiece) * hd : 0);
    struct Piece {
      long slot, count, off;  // cache slots [slot, slot + count): keys off .. off + count - 1 of this query
    };
    std::vector<Piece> pieces;
#pragma omp for schedule(dynamic, 1)
    for (long task = 0; task < tasks; task++) {
      const int r = static_cast<int>(task / NKV), g = static_cast<int>(task % NKV);
      const long a = a0 + r;
      Run runs[3];
      int n_runs = 0;
      long qp = 0;
      const std::size_t n_keys = static_cast<std::size_t>(visible(a, runs, n_runs, qp));
      for (int u = 0, c = 0; u < n_runs; u++)
        for (long k = 0; k < runs[u].count; k++) kpos[static_cast<std::size_t>(c++)] = runs[u].pos + k;
      pieces.clear();
      for (int u = 0, off = 0; u < n_runs; off += static_cast<int>(runs[u].count), u++)
        for (long k = 0; k < runs[u].count; k += wide ? kPiece : runs[u].count)
          pieces.push_back({runs[u].slot + k, wide ? std::min(kPiece, runs[u].count - k) : runs[u].count, off + k});
      const float* q0 = qkv_.data() + static_cast<std::size_t>(r) * QKV + static_cast<std::size_t>(g) * group * hd;
      if (!positional_) {
        // scores (group, n_keys) = scale * Q (group, hd) K^T, K a strided view of this kv head's cache column
        for (const Piece& pc : pieces) {
          const auto [k, ld] = rows(true, l, pc.slot, pc.count, g, kw.data());
          gemm('N', 'T', group, pc.count, hd, scale_, q0, hd, k, ld, 0.0f, sc.data() + pc.off,
               static_cast<long>(n_keys));
        }
      } else {
        // keys rotated at their positions (the first nf, beyond the neighbour window, at their far positions),
        // queries at the query's position and its far position
        std::size_t nf = 0;
        if (far_set)
          while (nf < n_keys && qp - kpos[nf] >= wn) nf++;
        for (const Piece& pc : pieces) {
          const auto [keys, ld] = rows(true, l, pc.slot, pc.count, g, kw.data());
          for (long k = 0, c = pc.off; k < pc.count; k++, c++) {
            const float* src = keys + k * ld;
            const long p = kpos[static_cast<std::size_t>(c)];
            if (static_cast<std::size_t>(c) < nf) rotate(kr.data() + c * hd, src, fk_cos_.data(), fk_sin_.data(), p);
            else rotate(kr.data() + c * hd, src, cos_.data(), sin_.data(), p);
          }
        }
        for (int u = 0; u < group; u++) {
          rotate(qn.data() + u * hd, q0 + u * hd, cos_.data(), sin_.data(), qp);
          if (nf > 0) rotate(qf.data() + u * hd, q0 + u * hd, fq_cos_.data(), fq_sin_.data(), qp);
        }
        if (nf > 0)
          gemm('N', 'T', group, static_cast<long>(nf), hd, scale_, qf.data(), hd, kr.data(), hd, 0.0f, sc.data(),
               static_cast<long>(n_keys));
        if (n_keys > nf)
          gemm('N', 'T', group, static_cast<long>(n_keys - nf), hd, scale_, qn.data(), hd, kr.data() + nf * hd, hd,
               0.0f, sc.data() + nf, static_cast<long>(n_keys));
      }
      for (int u = 0; u < group; u++) {
        const int h = g * group + u;
        float* s = sc.data() + u * n_keys;
        if (c_.position == PositionMethod::alibi || c_.position == PositionMethod::t5) {
          // the bias of block.hpp's functors (Self-Extend / ReRoPE distances for far keys, ExtendedBias)
          with_inference_bias(c_, alibi_.data(), t5_table, [&](const auto& bias) {
            for (std::size_t j = 0; j < n_keys; j++)
              s[j] += attention_bias_value<float>(bias, h, static_cast<int>(qp), static_cast<int>(kpos[j]));
          });
        }
        float mx = -INFINITY;
        for (std::size_t j = 0; j < n_keys; j++) mx = std::max(mx, s[j]);
        float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
        for (std::size_t j = 0; j < n_keys; j++) {
          s[j] = exp_fast(s[j] - mx);
          sum += s[j];
        }
        const float inv = 1.0f / sum;
        for (std::size_t j = 0; j < n_keys; j++) s[j] *= inv;
      }
      // out (group, hd) = P (group, n_keys) V
      float* o0 = att_.data() + static_cast<std::size_t>(r) * C + static_cast<std::size_t>(g) * group * hd;
      for (std::size_t i = 0; i < pieces.size(); i++) {
        const Piece& pc = pieces[i];
        const auto [v, ld] = rows(false, l, pc.slot, pc.count, g, kw.data());
        gemm('N', 'N', group, hd, pc.count, 1.0f, sc.data() + pc.off, static_cast<long>(n_keys), v, ld,
             i == 0 ? 0.0f : 1.0f, o0, hd);
      }
    }
  }
}

// The tiled kernel of the evaluation path (kernels/attention_tiled.hpp), on q | k | v with the kv heads repeated per
// query head. In positional mode q and k arrive unrotated: a copy at the far positions, then both at their own.
void Decoder::prefill_attention(float* att, const int* pos, int n, const ParamView& pv) {
  const int C = c_.n_embd, NH = c_.n_head, NKV = c_.kv_heads();
  const std::size_t nn = static_cast<std::size_t>(n);
  ensure(full_, nn * 3 * C);
  repeat_kv_forward(full_.data(), qkv_.data(), nn, C, NH, NKV);
  FarScores<float> far;
  if (positional_) {
    if (!c_.extension.is_none()) {
      ensure(far_, nn * 2 * C);
      far_positions_forward(far_.data(), full_.data(), pos, n, c_, inv_freq_.data());
      far = {far_.data(), c_.extension.window};
    }
    rope_forward(full_.data(), pos, inv_freq_.data(), 1, n, C, NH);
  }
  with_inference_bias(c_, alibi_.data(), pv.t5_bias, [&](const auto& bias) {
    attention_forward_tiled(att, full_.data(), pos, bias, 1, n, C, NH, scale_, c_.attn_window,
                            static_cast<float*>(nullptr), far);
  });
}

void Decoder::forward_rows(const std::int32_t* tokens, int n, float* out, bool all_logits) {
  const int C = c_.n_embd, NH = c_.n_head, NKV = c_.kv_heads(), hd = c_.head_dim(), KVD = c_.kv_dim();
  const int QKV = c_.qkv_width(), F = c_.mlp_hidden, FW = c_.mlp_width(), V = c_.vocab_size;
  const std::size_t nn = static_cast<std::size_t>(n);
  ensure(x_, nn * C);
  ensure(xn_, nn * C);
  ensure(mean_, nn);
  ensure(rstd_, nn);
  ensure(qkv_, nn * QKV);
  ensure(att_, nn * C);
  ensure(proj_, nn * C);
  ensure(fc_, nn * FW);
  ensure(act_, nn * F);
  const long a0 = seen_;
  // positions: the index (the cache position with sinks) of each new token
  std::vector<int> pos(nn);
  for (int r = 0; r < n; r++) pos[r] = static_cast<int>(query_position(a0 + r));

  ParamView pv = bind_param_view(c_, m_.specs(), m_.params().data());
  m_.embed(x_.data(), tokens, pos.data(), n);
  if (c_.embed_norm) {
    layernorm_forward(xn_.data(), mean_.data(), rstd_.data(), x_.data(), pv.ln_emb_w, pv.ln_emb_b, n, C, c_.norm_eps);
    std::copy(xn_.data(), xn_.data() + nn * C, x_.data());
  }

  // the residual stream stays in x_; one norm buffer serves both norms
  const BlockRows rows{xn_.data(),  mean_.data(),  rstd_.data(), qkv_.data(), att_.data(), proj_.data(), x_.data(),
                       xn_.data(),  mean_.data(),  rstd_.data(), fc_.data(),  act_.data(), x_.data()};
  // fp32, or bf16 products on the weights kept in bf16 (model/transformer.hpp WeightStorage)
  auto linear = [&](LoraMatrix, float* out, const float* in, const float* wt, const float* b, int IC, int OC) {
    m_.infer_linear(out, in, wt, b, n, IC, OC);
  };
  for (int l = 0; l < c_.n_layer; l++) {
    const std::size_t layer0 = static_cast<std::size_t>(l) * S_ * KVD;
    // positions, the new keys and values into the cache, then attention over what the cache holds
    auto attend = [&](float* qkv, float* att) {
      if (c_.position == PositionMethod::rope && !positional_)  // positional: rotated per query (attend_cached)
        rope_forward_rows(qkv, pos.data(), inv_freq_.data(), n, QKV, NH, C, NKV, hd);
      for (int r = 0; r < n; r++) {
        const float* row = qkv + static_cast<std::size_t>(r) * QKV;
        const long a = a0 + r;
        const std::size_t slot = static_cast<std::size_t>(
            keep_ < 0 || a < keep_ ? a % S_ : keep_ + (a - keep_) % (S_ - keep_));
        store(true, layer0 + slot * KVD, row + C, static_cast<std::size_t>(KVD));
        store(false, layer0 + slot * KVD, row + C + KVD, static_cast<std::size_t>(KVD));
      }
      if (c_.logn != LognMode::off) logn_scale_queries(qkv, pos.data(), n, QKV, C, c_.block_size, c_.logn);
      // query r (index a) sees indices [lo, a], lo = max(0, a - S + 1, a - window + 1)
      if (a0 == 0 && n > 1)
        prefill_attention(att, pos.data(), n, pv);
      else
        attend_cached(l, a0, n, pv);
    };
    block_forward(c_, pv.layers[l], x_.data(), rows, n, linear, attend);
  }
  norm_forward(c_, xn_.data(), mean_.data(), rstd_.data(), x_.data(), pv.lnf_w, pv.lnf_b, n);
  seen_ += n;
  if (!out) return;  // a prefill chunk whose logits nobody asked for
  if (all_logits) {
    m_.infer_linear(out, xn_.data(), pv.lm_head, nullptr, n, C, V);
  } else {
    m_.infer_linear(out, xn_.data() + static_cast<std::size_t>(n - 1) * C, pv.lm_head, nullptr, 1, C, V);
  }
}

}  // namespace stretch
