#include "run/evaluate.hpp"

#include <algorithm>

#include "core/error.hpp"

namespace stretch {

LossResult evaluate_nonoverlapping(Gpt& model, const std::vector<std::int32_t>& tokens, int T, int batch,
                                   long max_tokens) {
  if (T < 1) throw UsageError("evaluation length must be at least 1, got " + std::to_string(T));
  if (tokens.size() < 2)
    throw InputError("evaluation text has " + std::to_string(tokens.size()) + " tokens; at least 2 are needed");
  long n_targets = static_cast<long>(tokens.size()) - 1;
  if (max_tokens > 0) n_targets = std::min(n_targets, max_tokens);
  LossResult r;
  std::vector<std::int32_t> x, y;
  long start = 0;
  while (start < n_targets) {
    // a batch of full windows, or one final partial window
    const long full = (n_targets - start) / T;
    const int B = full > 0 ? static_cast<int>(std::min<long>(batch, full)) : 1;
    const int len = full > 0 ? T : static_cast<int>(n_targets - start);
    x.resize(static_cast<std::size_t>(B) * len);
    y.resize(x.size());
    for (int b = 0; b < B; b++)
      for (int t = 0; t < len; t++) {
        const long i = start + static_cast<long>(b) * len + t;
        x[static_cast<std::size_t>(b) * len + t] = tokens[i];
        y[static_cast<std::size_t>(b) * len + t] = tokens[i + 1];
      }
    model.forward(x.data(), y.data(), nullptr, B, len);
    const float* l = model.token_losses();
    for (std::size_t i = 0; i < x.size(); i++) r.sum_nll += l[i];
    r.count += static_cast<long>(x.size());
    start += static_cast<long>(B) * len;
  }
  return r;
}

}  // namespace stretch
