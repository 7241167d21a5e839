#include "position/t5.hpp"

#include <algorithm>
#include <array>
#include <cmath>

namespace stretch {

// Buckets for distances 0 .. kT5MaxDistance - 1, from the formula in double (every distance >= 128 is in the
// last bucket). No distance in 16..127 lies near a floor boundary (16 log(n/16)/log 8 is an integer only for
// n = 128), so float and double evaluations of the formula agree on every bucket.
std::array<unsigned char, kT5MaxDistance> make_bucket_table() {
  std::array<unsigned char, kT5MaxDistance> t{};
  for (int n = 0; n < kT5MaxDistance; n++) {
    int b = n;
    if (n >= kT5MaxExact) {
      const double v = std::log(static_cast<double>(n) / kT5MaxExact) /
                       std::log(static_cast<double>(kT5MaxDistance) / kT5MaxExact) * (kT5Buckets - kT5MaxExact);
      b = std::min(kT5Buckets - 1, kT5MaxExact + static_cast<int>(std::floor(v)));
    }
    t[static_cast<std::size_t>(n)] = static_cast<unsigned char>(b);
  }
  return t;
}

const std::array<unsigned char, kT5MaxDistance> kT5BucketTable = make_bucket_table();

template <class F>
void t5_reduce_grad(F* dtable, const F* partial, int B, int NH) {
  for (int k = 0; k < kT5Buckets; k++) {
    for (int h = 0; h < NH; h++) {
      F s = F(0);
      for (int b = 0; b < B; b++) s += partial[(static_cast<long>(b) * NH + h) * kT5Buckets + k];
      dtable[k * NH + h] += s;
    }
  }
}

template void t5_reduce_grad<float>(float*, const float*, int, int);
template void t5_reduce_grad<double>(double*, const double*, int, int);

}  // namespace stretch
