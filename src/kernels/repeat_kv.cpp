// Grouped-query attention: repeat packed k/v heads to full width (forward) and sum over groups (backward).
//
//   packed, dpacked  (BT, C + 2*KVD) rows [q | k (NKV heads) | v (NKV heads)]
//   full, dfull      (BT, 3*C)       rows [q | k (NH heads)  | v (NH heads) ]
//   full head h of k (and v) = packed head h / (NH / NKV)
#include "kernels/repeat_kv.hpp"

#include <algorithm>
#include <string>

#include "core/error.hpp"

namespace stretch {

namespace {
// Returns hd after validating the shape.
int check_shape(int C, int NH, int NKV) {
  if (C <= 0 || NH <= 0 || NKV <= 0)
    throw ConfigError("repeat_kv: C, n_head and n_kv_head must be positive (got C " + std::to_string(C) +
                      ", n_head " + std::to_string(NH) + ", n_kv_head " + std::to_string(NKV) + ")");
  if (C % NH != 0)
    throw ConfigError("repeat_kv: n_embd " + std::to_string(C) + " is not a multiple of n_head " +
                      std::to_string(NH));
  if (NH % NKV != 0)
    throw ConfigError("repeat_kv: n_head " + std::to_string(NH) + " is not a multiple of n_kv_head " +
                      std::to_string(NKV));
  return C / NH;
}
}  // namespace

template <class F>
void repeat_kv_forward(F* full, const F* packed, std::size_t BT, int C, int NH, int NKV) {
  const int hd = check_shape(C, NH, NKV);
  const int G = NH / NKV;
  const long KVD = static_cast<long>(NKV) * hd;
  const long pw = C + 2 * KVD;  // packed row width
  const long fw = 3L * C;       // full row width
  const long nn = static_cast<long>(BT);
#pragma omp parallel for schedule(static)
  for (long n = 0; n < nn; n++) {
    const F* p = packed + n * pw;
    F* f = full + n * fw;
    std::copy(p, p + C, f);  // q
    for (int kv = 0; kv < 2; kv++) {
      const F* src = p + C + kv * KVD;
      F* dst = f + C + static_cast<long>(kv) * C;
      for (int h = 0; h < NH; h++) {
        const F* s = src + static_cast<long>(h / G) * hd;
        std::copy(s, s + hd, dst + static_cast<long>(h) * hd);
      }
    }
  }
}

// dpacked[q] += dfull[q]; dpacked[k head j] += sum_{h: h / G == j} dfull[k head h] (same for v), heads summed in
// increasing order (deterministic).
template <class F>
void repeat_kv_backward(F* dpacked, const F* dfull, std::size_t BT, int C, int NH, int NKV) {
  const int hd = check_shape(C, NH, NKV);
  const int G = NH / NKV;
  const long KVD = static_cast<long>(NKV) * hd;
  const long pw = C + 2 * KVD;
  const long fw = 3L * C;
  const long nn = static_cast<long>(BT);
#pragma omp parallel for schedule(static)
  for (long n = 0; n < nn; n++) {
    F* p = dpacked + n * pw;
    const F* f = dfull + n * fw;
    for (int c = 0; c < C; c++) p[c] += f[c];
    for (int kv = 0; kv < 2; kv++) {
      F* dst = p + C + kv * KVD;
      const F* src = f + C + static_cast<long>(kv) * C;
      for (int j = 0; j < NKV; j++) {
        F* d = dst + static_cast<long>(j) * hd;
        for (int i = 0; i < hd; i++) {
          F acc = F(0);
          for (int g = 0; g < G; g++) acc += src[static_cast<long>(j * G + g) * hd + i];
          d[i] += acc;
        }
      }
    }
  }
}

template void repeat_kv_forward<float>(float*, const float*, std::size_t, int, int, int);
template void repeat_kv_forward<double>(double*, const double*, std::size_t, int, int, int);
template void repeat_kv_backward<float>(float*, const float*, std::size_t, int, int, int);
template void repeat_kv_backward<double>(double*, const double*, std::size_t, int, int, int);

}  // namespace stretch
