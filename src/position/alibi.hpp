// ALiBi (Press, Smith & Lewis): head h adds -m_h * (pos_i - pos_j) to the score of query i, key j. Not learned.
//
// Slopes, for n heads and a maximum bias b (8 in the paper; MPT's `attn_config.alibi_bias_max`, 8 by default):
//   n a power of two: m_h = 2^(-b (h+1) / n), h = 0..n-1 (8 heads: 1/2, 1/4, ..., 1/256).
//   otherwise (the paper's reference code, BLOOM, ggml): the n' = 2^floor(log2 n) slopes for n' heads, then every
//   other slope of the 2n' sequence, the first n - n' of them:
//     h < n':  m_h = 2^(-b (h+1) / n'),   h >= n':  m_h = 2^(-(b/2) (2 (h - n') + 1) / n')
//   (12 heads: 1/2 .. 1/256, then 2^-0.5, 2^-1.5, 2^-2.5, 2^-3.5).
// MPT (transformers' build_mpt_alibi_tensor) writes it differently: the N = 2^ceil(log2 n) slopes s_k = 2^(-b k/N),
// k = 1..N, reordered as concat(s[1::2], s[::2]), the first n. For n not a power of two N = 2n', so the even k = 2(h+1)
// give 2^(-b (h+1)/n') and the odd k = 2j+1 give 2^(-(b/2)(2j+1)/n'): the same slopes in the same order, for every
// n and b (tests/position/test_alibi.cpp checks both forms for n = 1..64). One rule therefore serves both formats.
// Computed in double, rounded once to float.
//
// ALiBi interpolation (Al-Khateeb et al. 2023, "Position Interpolation Improves ALiBi Extrapolation"): run at a
// target length L' > L_train with every slope multiplied by L_train / L' (`scale`), so the bias spread over L'
// tokens is the one the model saw over L_train: -m_h (L_train / L') (pos_i - pos_j). scale 1 is plain ALiBi.
#pragma once
#include <vector>

namespace stretch {

// ConfigError for n_heads < 1 or a max_bias or scale that is not a positive finite number. Each slope is
// scale * m_h in double, rounded once.
std::vector<float> alibi_slopes(int n_heads, double max_bias = 8.0, double scale = 1.0);

struct AlibiBias {
  static constexpr bool kLearned = false;
  const float* slopes = nullptr;  // (NH)
  template <class F = float>
  F operator()(int h, int pos_i, int pos_j) const {
    return -static_cast<F>(slopes[h]) * static_cast<F>(pos_i - pos_j);
  }
  // the bias at a (remapped, possibly fractional) relative position (position/extension.hpp)
  template <class F = float>
  F at_distance(int h, double distance) const {
    return -static_cast<F>(slopes[h]) * static_cast<F>(distance);
  }
};

}  // namespace stretch
