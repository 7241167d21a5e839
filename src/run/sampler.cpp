#include "run/sampler.hpp"

#include <algorithm>
#include <cmath>
#include <string>

#include "core/error.hpp"

namespace stretch {

void SamplingOptions::validate() const {
  if (!(temperature >= 0.0 && temperature <= 100.0))
    throw UsageError("`temperature`: expected a value in [0, 100] (0: greedy), got " + std::to_string(temperature));
  if (top_k < 0) throw UsageError("`top_k`: expected an integer >= 0 (0: no limit), got " + std::to_string(top_k));
  if (!(top_p > 0.0 && top_p <= 1.0))
    throw UsageError("`top_p`: expected a value in (0, 1] (1: no limit), got " + std::to_string(top_p));
}

Sampler::Sampler(const SamplingOptions& o) : o_(o), rng_(o.seed) { o_.validate(); }

std::int32_t Sampler::next(const float* logits, int V) {
  if (o_.temperature == 0.0) return static_cast<std::int32_t>(std::max_element(logits, logits + V) - logits);
  cand_.resize(static_cast<std::size_t>(V));
  for (int i = 0; i < V; i++) cand_[static_cast<std::size_t>(i)] = {logits[i], i};
  auto by_logit = [](const auto& a, const auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); };
  std::size_t n = cand_.size();
  if (o_.top_k > 0 && static_cast<std::size_t>(o_.top_k) < n) {
    std::partial_sort(cand_.begin(), cand_.begin() + o_.top_k, cand_.end(), by_logit);
    n = static_cast<std::size_t>(o_.top_k);
  } else {
    std::sort(cand_.begin(), cand_.end(), by_logit);
  }
  // softmax over the kept candidates (sorted, so the first is the max), in double
  const double mx = cand_[0].first;
  std::vector<double> p(n);
  double sum = 0.0;
  for (std::size_t i = 0; i < n; i++) {
    p[i] = std::exp((cand_[i].first - mx) / o_.temperature);
    sum += p[i];
  }
  if (o_.top_p < 1.0) {
    double acc = 0.0;
    std::size_t keep = n;
    for (std::size_t i = 0; i < n; i++) {
      acc += p[i] / sum;
      if (acc >= o_.top_p) {
        keep = i + 1;
        break;
      }
    }
    n = keep;
    sum = 0.0;
    for (std::size_t i = 0; i < n; i++) sum += p[i];
  }
  const double u = static_cast<double>(rng_.next_u64() >> 11) * (1.0 / 9007199254740992.0) * sum;  // 53 bits
  double acc = 0.0;
  for (std::size_t i = 0; i < n; i++) {
    acc += p[i];
    if (u < acc) return cand_[i].second;
  }
  return cand_[n - 1].second;
}

}  // namespace stretch
