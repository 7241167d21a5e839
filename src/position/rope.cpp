#include "position/rope.hpp"

#include <cmath>
#include <cstdint>
#include <string>

#include "core/error.hpp"

namespace stretch {

std::vector<float> rope_inv_freq(int head_dim, double base) {
  if (head_dim <= 0 || head_dim % 2 != 0)
    throw ConfigError("rope: the head size must be positive and even (got " + std::to_string(head_dim) + ")");
  if (!(base > 0.0)) throw ConfigError("rope: the base must be positive (got " + std::to_string(base) + ")");
  const int n = head_dim / 2;
  std::vector<float> f(static_cast<std::size_t>(n));
  for (int i = 0; i < n; i++)
    f[static_cast<std::size_t>(i)] = static_cast<float>(std::pow(base, -2.0 * i / head_dim));
  return f;
}

namespace {

// Rotates the q and k thirds of every (b, t) row of qkv by sign * pos * inv_freq[i] on the interleaved pairs
// (2i, 2i+1) of every head. cos and sin are computed in double from (double)pos * inv_freq[i] (accurate at
// large positions) and rounded to F once, then shared by all heads and by q and k.
template <class F>
void rope_rotate(F* qkv, const int* pos, const float* inv_freq, int B, int T, int C, int NH, double sign) {
  if (B < 0 || T < 0 || C <= 0 || NH <= 0 || C % NH != 0 || (C / NH) % 2 != 0)
    throw ConfigError("rope: invalid shape B=" + std::to_string(B) + " T=" + std::to_string(T) + " C=" +
                      std::to_string(C) + " NH=" + std::to_string(NH) +
                      " (expected C divisible by NH and an even head size)");
  const int hd = C / NH;
  const int half = hd / 2;
  const std::int64_t N = static_cast<std::int64_t>(B) * T;
  const std::int64_t C3 = 3 * static_cast<std::int64_t>(C);
#pragma omp parallel
  {
    std::vector<F> cs(static_cast<std::size_t>(half)), sn(static_cast<std::size_t>(half));
#pragma omp for schedule(static)
    for (std::int64_t n = 0; n < N; n++) {
      const double p = static_cast<double>(pos[n]);
      for (int i = 0; i < half; i++) {
        const double a = p * static_cast<double>(inv_freq[i]);
        cs[static_cast<std::size_t>(i)] = static_cast<F>(std::cos(a));
        sn[static_cast<std::size_t>(i)] = static_cast<F>(sign * std::sin(a));
      }
      F* row = qkv + n * C3;
      for (int part = 0; part < 2; part++) {  // q, then k
        for (int h = 0; h < NH; h++) {
          F* x = row + static_cast<std::int64_t>(part) * C + static_cast<std::int64_t>(h) * hd;
          for (int i = 0; i < half; i++) {
            const F c = cs[static_cast<std::size_t>(i)], s = sn[static_cast<std::size_t>(i)];
            const F x0 = x[2 * i], x1 = x[2 * i + 1];
            x[2 * i] = x0 * c - x1 * s;
            x[2 * i + 1] = x0 * s + x1 * c;
          }
        }
      }
    }
  }
}

}  // namespace

template <class F>
void rope_forward(F* qkv, const int* pos, const float* inv_freq, int B, int T, int C, int NH) {
  rope_rotate(qkv, pos, inv_freq, B, T, C, NH, 1.0);
}

// The transpose of the forward rotation is the rotation by -angle: (g0, g1) -> (g0 c + g1 s, -g0 s + g1 c).
template <class F>
void rope_backward(F* dqkv, const int* pos, const float* inv_freq, int B, int T, int C, int NH) {
  rope_rotate(dqkv, pos, inv_freq, B, T, C, NH, -1.0);
}

template <class F>
void rope_rotate_rows(F* x, const double* pos, const float* inv_freq, long rows, long stride, int heads, int hd) {
  if (rows < 0 || heads < 1 || hd < 2 || hd % 2 != 0 || stride < static_cast<long>(heads) * hd)
    throw ConfigError("rope: invalid rows=" + std::to_string(rows) + " stride=" + std::to_string(stride) +
                      " heads=" + std::to_string(heads) + " hd=" + std::to_string(hd));
  const int half = hd / 2;
#pragma omp parallel
  {
    std::vector<F> cs(static_cast<std::size_t>(half)), sn(static_cast<std::size_t>(half));
#pragma omp for schedule(static)
    for (long n = 0; n < rows; n++) {
      for (int i = 0; i < half; i++) {
        const double a = pos[n] * static_cast<double>(inv_freq[i]);
        cs[static_cast<std::size_t>(i)] = static_cast<F>(std::cos(a));
        sn[static_cast<std::size_t>(i)] = static_cast<F>(std::sin(a));
      }
      for (int h = 0; h < heads; h++) {
        F* v = x + n * stride + static_cast<long>(h) * hd;
        for (int i = 0; i < half; i++) {
          const F c = cs[static_cast<std::size_t>(i)], s = sn[static_cast<std::size_t>(i)];
          const F x0 = v[2 * i], x1 = v[2 * i + 1];
          v[2 * i] = x0 * c - x1 * s;
          v[2 * i + 1] = x0 * s + x1 * c;
        }
      }
    }
  }
}

template void rope_rotate_rows<float>(float*, const double*, const float*, long, long, int, int);
template void rope_rotate_rows<double>(double*, const double*, const float*, long, long, int, int);
template void rope_forward<float>(float*, const int*, const float*, int, int, int, int);
template void rope_forward<double>(double*, const int*, const float*, int, int, int, int);
template void rope_backward<float>(float*, const int*, const float*, int, int, int, int);
template void rope_backward<double>(double*, const int*, const float*, int, int, int, int);

}  // namespace stretch
