#include "run/evaluator.hpp"

#include <algorithm>
#include <chrono>
#include <limits>
#include <memory>
#include <cmath>

#include "core/error.hpp"
#include "core/rng.hpp"
#include "kernels/cross_entropy.hpp"
#include "model/decoder.hpp"
#include "run/generate.hpp"

namespace stretch {

namespace {
constexpr std::pair<EvalProtocol, std::string_view> kProtocols[] = {
    {EvalProtocol::nonoverlapping, "nonoverlapping"},
    {EvalProtocol::sliding, "sliding"},
    {EvalProtocol::chunked, "chunked"},
    {EvalProtocol::llamacpp, "llamacpp"},
};
}  // namespace

std::string_view to_string(EvalProtocol p) {
  for (auto& [v, n] : kProtocols)
    if (v == p) return n;
  return "?";
}

EvalProtocol parse_eval_protocol(std::string_view name, std::string_view what) {
  for (auto& [v, n] : kProtocols)
    if (n == name) return v;
  throw UsageError(std::string(what) + ": unknown protocol '" + std::string(name) +
                   "' (expected nonoverlapping, sliding, chunked or llamacpp)");
}

double LengthResult::perplexity() const { return std::exp(mean_nll()); }

double LengthResult::stderr_nll() const {
  if (tokens < 2) return 0.0;
  const double n = static_cast<double>(tokens);
  const double mean = sum_nll / n;
  const double var = std::max(0.0, (sum_sq / n - mean * mean) * n / (n - 1));
  return std::sqrt(var / n);
}

std::vector<Window> plan_windows(long n_tokens, int T, EvalProtocol protocol, int stride) {
  if (T < 1) throw UsageError("length must be at least 1, got " + std::to_string(T));
  const long n_targets = n_tokens - 1;  // x_1 .. x_{N-1}
  std::vector<Window> w;
  switch (protocol) {
    case EvalProtocol::nonoverlapping: {
      if (n_targets < T)
        throw InputError("text has " + std::to_string(n_tokens) + " tokens; length " + std::to_string(T) +
                         " needs at least " + std::to_string(static_cast<long>(T) + 1));
      for (long s = 0; s < n_targets; s += T) {
        const int len = static_cast<int>(std::min<long>(T, n_targets - s));
        w.push_back({s, len, 0, len});
      }
      break;
    }
    case EvalProtocol::sliding: {
      if (stride < 1 || stride > T)
        throw UsageError("`stride`: expected an integer in [1, length " + std::to_string(T) + "], got " +
                         std::to_string(stride));
      if (n_targets < T)
        throw InputError("text has " + std::to_string(n_tokens) + " tokens; length " + std::to_string(T) +
                         " needs at least " + std::to_string(static_cast<long>(T) + 1));
      long scored_end = 0;  // targets x_1 .. x_{scored_end} are done (as positions: start + j + 1 <= scored_end)
      for (long s = 0;; s += stride) {
        const long e = std::min(n_targets, s + T);  // inputs x_s .. x_{e-1}, targets up to x_e
        const int len = static_cast<int>(e - s);
        const int from = static_cast<int>(std::max<long>(0, scored_end - s));
        if (from < len) w.push_back({s, len, from, len});
        scored_end = e;
        if (e == n_targets) break;
      }
      break;
    }
    case EvalProtocol::chunked: {
      if (T < 2) throw UsageError("chunked protocol: length must be at least 2, got " + std::to_string(T));
      if (n_tokens < T)
        throw InputError("text has " + std::to_string(n_tokens) + " tokens; the chunked protocol at length " +
                         std::to_string(T) + " needs at least " + std::to_string(T));
      for (long s = 0; s + 1 < n_tokens; s += T) {
        const int len = static_cast<int>(std::min<long>(T, n_tokens - s));
        w.push_back({s, len, 0, len - 1});
      }
      break;
    }
    case EvalProtocol::llamacpp: {
      if (T < 4) throw UsageError("llamacpp protocol: length must be at least 4, got " + std::to_string(T));
      if (n_tokens < 2L * T)
        throw InputError("text has " + std::to_string(n_tokens) + " tokens; the llamacpp protocol at length " +
                         std::to_string(T) + " needs at least " + std::to_string(2L * T));
      for (long s = 0; s + T <= n_tokens; s += T) w.push_back({s, T, T / 2, T - 1});
      break;
    }
  }
  return w;
}

namespace {

// The NLL of each scored token (y >= 0; 0 for the others) of one window (x, y of length len) fed to the decoder from
// empty, by the training path's cross-entropy kernel. (Chunks of at most kStreamChunk tokens bound the logits kept at
// once; the decoder splits them further itself.)
constexpr int kStreamChunk = 256;
const float* stream_losses(Transformer& model, const std::vector<std::int32_t>& x, const std::vector<std::int32_t>& y,
                           int len, Decoder& decoder, std::vector<float>& out) {
  decoder.reset();
  const int V = model.config().vocab_size;
  out.assign(static_cast<std::size_t>(len), 0.0f);
  for (int t0 = 0; t0 < len; t0 += kStreamChunk) {
    const int n = std::min(kStreamChunk, len - t0);
    const float* logits = decoder.append(x.data() + t0, n, true);
    cross_entropy_forward(out.data() + t0, logits, y.data() + t0, n, V);
  }
  return out.data();
}

}  // namespace

LengthResult evaluate_length(Transformer& model, const std::vector<std::int32_t>& tokens, int T, const EvalSettings& s) {
  const auto t0 = std::chrono::steady_clock::now();
  const ModelConfig& c = model.config();
  if (c.position == PositionMethod::learned && T > c.block_size && !s.clamp_positions)
    throw UsageError("the model uses learned absolute positions, a table of " + std::to_string(c.block_size) +
                     " rows; length " + std::to_string(T) + " needs positions up to " + std::to_string(T - 1) +
                     ", which it never learned. Pass `clamp_positions` to reuse the last row for them");
  const int stride = s.protocol == EvalProtocol::sliding ? (s.stride > 0 ? std::min(s.stride, T) : std::max(1, T / 2)) : 0;
  std::vector<Window> plan = plan_windows(static_cast<long>(tokens.size()), T, s.protocol, stride);
  const int nb = std::max(1, s.buckets);
  LengthResult r;
  r.length = T;
  r.bucket_nll.assign(nb, 0.0);
  r.bucket_tokens.assign(nb, 0);
  std::vector<std::int32_t> x, y, pos;
  Rng rng(s.seed);
  std::unique_ptr<Decoder> decoder;
  std::vector<float> losses;
  if (s.keep >= 0) {
    if (s.positions.kind != PositionIdsKind::plain)
      throw UsageError("`keep`: attention sinks place tokens at cache positions; position ids " +
                       s.positions.to_string() + " cannot be combined with it");
    try {  // the model or the cache cannot take sinks: a usage error naming the flag
      decoder = std::make_unique<Decoder>(model, s.cache, true, s.keep);
    } catch (const ConfigError& e) {
      throw UsageError(e.what());
    }
  }
  if (s.shards < 1 || s.shard < 0 || s.shard >= s.shards)
    throw UsageError("evaluation shard " + std::to_string(s.shard) + " of " + std::to_string(s.shards) +
                     ": expected 0 <= shard < shards");
  std::size_t i = 0;
  long batch_index = 0, scored_all = 0;  // every shard's batches and scored tokens so far
  while (i < plan.size()) {
    // batch consecutive windows of the same length
    const int len = plan[i].length;
    const int max_b = s.keep >= 0 ? 1 : std::max(1, s.batch_tokens / len);
    // with --max-tokens, the batch ends at the window that reaches the cap, and that window's scored range is cut
    // so that exactly min(cap, all) tokens are scored (the cap is "at most", whatever --batch-tokens holds)
    const long left = s.max_tokens > 0 ? s.max_tokens - scored_all : std::numeric_limits<long>::max();
    long planned = 0;
    std::size_t j = i;
    while (j < plan.size() && plan[j].length == len && static_cast<int>(j - i) < max_b && planned < left) {
      planned += plan[j].score_to - plan[j].score_from;
      j++;
    }
    long budget = left;
    const int B = static_cast<int>(j - i);
    x.resize(static_cast<std::size_t>(B) * len);
    y.resize(x.size());
    pos.resize(x.size());
    fill_position_ids(s.positions, pos.data(), B, len, rng);
    for (int b = 0; b < B; b++) {
      const Window& w = plan[i + b];
      for (int t = 0; t < len; t++) {
        const std::size_t k = static_cast<std::size_t>(b) * len + t;
        x[k] = tokens[w.start + t];
        if (t == 0 && s.bos >= 0 && s.protocol == EvalProtocol::llamacpp) x[k] = s.bos;
        const bool scored = t >= w.score_from && t < w.score_to && budget > 0;
        budget -= scored;
        y[k] = scored ? tokens[w.start + t + 1] : -1;
        if (s.clamp_positions) pos[k] = std::min(pos[k], c.block_size - 1);
      }
    }
    for (std::size_t k = 0; k < x.size(); k++) scored_all += y[k] >= 0;
    if (batch_index++ % s.shards != s.shard) {  // another shard's batch
      i = j;
      if (s.max_tokens > 0 && scored_all >= s.max_tokens) break;
      continue;
    }
    const float* l = nullptr;
    if (s.keep >= 0) {
      l = stream_losses(model, x, y, len, *decoder, losses);
    } else {
      model.forward(x.data(), y.data(), pos.data(), B, len);
      l = model.token_losses();
    }
    for (int b = 0; b < B; b++)
      for (int t = 0; t < len; t++) {
        const std::size_t k = static_cast<std::size_t>(b) * len + t;
        if (y[k] < 0) continue;
        const double v = l[k];
        r.sum_nll += v;
        r.sum_sq += v * v;
        r.tokens++;
        const int bucket = static_cast<int>(static_cast<long>(t) * nb / T);
        r.bucket_nll[bucket] += v;
        r.bucket_tokens[bucket]++;
      }
    i = j;
    if (s.max_tokens > 0 && scored_all >= s.max_tokens) break;
  }
  for (int b = 0; b < nb; b++)
    if (r.bucket_tokens[b]) r.bucket_nll[b] /= static_cast<double>(r.bucket_tokens[b]);
  if (s.byte_level) r.bits_per_byte = r.mean_nll() / std::log(2.0);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

LengthResult evaluate_length(Transformer& model, const std::vector<std::int32_t>& tokens, int T, EvalSettings s,
                             Comm& comm) {
  if (comm.size() == 1) return evaluate_length(model, tokens, T, s);
  const auto t0 = std::chrono::steady_clock::now();
  s.shard = comm.rank();
  s.shards = comm.size();
  LengthResult r = evaluate_length(model, tokens, T, s);
  // one all-reduce: tokens, sum_nll, sum_sq, then per bucket its NLL sum and token count
  const std::size_t nb = r.bucket_nll.size();
  std::vector<double> sums{static_cast<double>(r.tokens), r.sum_nll, r.sum_sq};
  for (std::size_t b = 0; b < nb; b++) sums.push_back(r.bucket_nll[b] * static_cast<double>(r.bucket_tokens[b]));
  for (std::size_t b = 0; b < nb; b++) sums.push_back(static_cast<double>(r.bucket_tokens[b]));
  comm.allreduce_sum(sums.data(), sums.size());
  r.tokens = static_cast<long>(sums[0]);
  r.sum_nll = sums[1];
  r.sum_sq = sums[2];
  for (std::size_t b = 0; b < nb; b++) {
    r.bucket_tokens[b] = static_cast<long>(sums[3 + nb + b]);
    r.bucket_nll[b] = r.bucket_tokens[b] ? sums[3 + b] / static_cast<double>(r.bucket_tokens[b]) : 0.0;
  }
  r.bits_per_byte = s.byte_level ? r.mean_nll() / std::log(2.0) : 0.0;
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

}  // namespace stretch
