// ALiBi (Press, Smith & Lewis): head h adds -m_h * (pos_i - pos_j) to the score of query i, key j. Not learned.
// Slopes: for n a power of two, m_h = 2^(-8h/n), h = 1..n (8 heads: 1/2, 1/4, ..., 1/256). Otherwise the
// slopes for p = 2^floor(log2 n), followed by every other slope of the 2p sequence, the first n - p of them
// (the reference implementation's rule; 12 heads: 1/2 .. 1/256, then 2^-0.5, 2^-1.5, 2^-2.5, 2^-3.5).
#pragma once
#include <vector>

namespace stretch {

std::vector<float> alibi_slopes(int n_heads);

struct AlibiBias {
  static constexpr bool kLearned = false;
  const float* slopes = nullptr;  // (NH)
  template <class F = float>
  F operator()(int h, int pos_i, int pos_j) const {
    return -static_cast<F>(slopes[h]) * static_cast<F>(pos_i - pos_j);
  }
};

}  // namespace stretch
