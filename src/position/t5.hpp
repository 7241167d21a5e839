// T5's relative position bias, causal (one direction): one learned scalar per (bucket, head), shared by all
// layers. Distance n = max(0, pos_i - pos_j); 32 buckets, max_exact 16, max_distance 128:
//   bucket(n) = n                                                  if n < 16
//             = min(31, 16 + floor(log(n / 16) / log(128 / 16) * 16))  otherwise
//
//   table  (NB, NH)        the parameter t5_bias
//   partial (B, NH, NB)    per-(b, h) gradient partial sums filled by accumulate(); t5_reduce_grad sums them
#pragma once
#include <array>
#include <cmath>

namespace stretch {

inline constexpr int kT5Buckets = 32;
inline constexpr int kT5MaxExact = 16;
inline constexpr int kT5MaxDistance = 128;

// The bucket of each distance 0 .. kT5MaxDistance-1 (filled at start-up from the formula, in double).
extern const std::array<unsigned char, kT5MaxDistance> kT5BucketTable;

// Causal: a negative distance (a key after the query, only possible if the caller bypasses the mask or
// positions decrease) is treated as 0. Inline: the attention kernels call it once per score.
inline int t5_bucket(int distance) {
  if (distance <= 0) return 0;
  if (distance >= kT5MaxDistance) return kT5Buckets - 1;
  return kT5BucketTable[static_cast<std::size_t>(distance)];
}

template <class F>
struct T5Bias {
  static constexpr bool kLearned = true;
  const F* table = nullptr;  // (NB, NH)
  F* partial = nullptr;      // (B, NH, NB), zeroed by the caller before the backward pass
  int NH = 0;
  template <class G = F>
  G operator()(int h, int pos_i, int pos_j) const {
    return static_cast<G>(table[t5_bucket(pos_i - pos_j) * NH + h]);
  }
  // the bias at a (remapped, possibly fractional) relative position: the bucket of its floor (position/extension.hpp)
  template <class G = F>
  G at_distance(int h, double distance) const {
    const double d = std::floor(distance);
    return static_cast<G>(table[t5_bucket(d >= kT5MaxDistance ? kT5MaxDistance : static_cast<int>(d)) * NH + h]);
  }
  void accumulate(int b, int h, int pos_i, int pos_j, F d) {
    partial[(static_cast<long>(b) * NH + h) * kT5Buckets + t5_bucket(pos_i - pos_j)] += d;
  }
};

// dtable (NB, NH) += sum over b of partial (B, NH, NB), in a fixed order.
template <class F>
void t5_reduce_grad(F* dtable, const F* partial, int B, int NH);

}  // namespace stretch
