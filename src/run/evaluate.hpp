// Loss of a model on a token stream, nonoverlapping windows (every token scored once):
//   windows k = 0, 1, ...: inputs tokens[kT .. kT+T), targets tokens[kT+1 .. kT+T+1)
//   mean NLL = (sum over scored targets of -log p(target)) / count, accumulated in double.
// The last partial window is scored too (with its own shorter length).
#pragma once
#include <cstdint>
#include <vector>

#include "model/gpt.hpp"

namespace stretch {

struct LossResult {
  double sum_nll = 0.0;  // nats
  long count = 0;
  double mean() const { return count ? sum_nll / static_cast<double>(count) : 0.0; }
};

// max_tokens > 0 limits the number of scored tokens (from the start of the stream).
LossResult evaluate_nonoverlapping(Gpt& model, const std::vector<std::int32_t>& tokens, int T, int batch,
                                   long max_tokens = 0);

}  // namespace stretch
