// Choosing the next token from logits.
//   temperature 0: greedy (argmax; the lowest id on ties)
//   otherwise p_i = softmax(logits / temperature), restricted to the top_k most likely tokens (0: all) and then
//   to the smallest set of most likely tokens whose probability reaches top_p (1: all), renormalised, and
//   sampled with the seeded generator (xoshiro256**): the same seed gives the same text.
#pragma once
#include <cstdint>
#include <utility>
#include <vector>

#include "core/rng.hpp"

namespace stretch {

struct SamplingOptions {
  double temperature = 0.8;
  int top_k = 0;
  double top_p = 0.95;
  std::uint64_t seed = 42;
  // UsageError naming --temperature, --top-k or --top-p for a value out of range.
  void validate() const;
};

class Sampler {
 public:
  explicit Sampler(const SamplingOptions& o);
  std::int32_t next(const float* logits, int V);

 private:
  SamplingOptions o_;
  Rng rng_;
  std::vector<std::pair<float, std::int32_t>> cand_;
};

}  // namespace stretch
