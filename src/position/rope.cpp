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

template <class F>
void rope_angles(F* cs, F* sn, double pos, const float* inv_freq, int half) {
  for (int i = 0; i < half; i++) {
    const double a = pos * static_cast<double>(inv_freq[i]);
    cs[i] = static_cast<F>(std::cos(a));
    sn[i] = static_cast<F>(std::sin(a));
  }
}

namespace {

// Rotates q_heads heads at the start of every row and k_heads heads from k_offset on by sign * pos * inv_freq[i]
// on the interleaved pairs (2i, 2i+1). The angles are computed once per row and shared by all heads.
template <class F>
void rope_rotate_qk(F* x, const int* pos, const float* inv_freq, long rows, long stride, int q_heads, long k_offset,
                    int k_heads, int hd, double sign) {
  if (rows < 0 || q_heads < 0 || k_heads < 0 || hd < 2 || hd % 2 != 0 || k_offset < static_cast<long>(q_heads) * hd ||
      stride < k_offset + static_cast<long>(k_heads) * hd)
    throw ConfigError("rope: invalid rows=" + std::to_string(rows) + " stride=" + std::to_string(stride) +
                      " q_heads=" + std::to_string(q_heads) + " k_offset=" + std::to_string(k_offset) +
                      " k_heads=" + std::to_string(k_heads) + " hd=" + std::to_string(hd));
  const int half = hd / 2;
#pragma omp parallel
  {
    std::vector<F> cs(static_cast<std::size_t>(half)), sn(static_cast<std::size_t>(half));
#pragma omp for schedule(static)
    for (long n = 0; n < rows; n++) {
      rope_angles(cs.data(), sn.data(), static_cast<double>(pos[n]), inv_freq, half);
      if (sign < 0)
        for (auto& s : sn) s = -s;
      F* row = x + n * stride;
      for (int h = 0; h < q_heads; h++) rope_rotate_head(row + h * hd, row + h * hd, cs.data(), sn.data(), half);
      for (int h = 0; h < k_heads; h++)
        rope_rotate_head(row + k_offset + h * hd, row + k_offset + h * hd, cs.data(), sn.data(), half);
    }
  }
}

void check_shape(int B, int T, int C, int NH) {
  if (B < 0 || T < 0 || C <= 0 || NH <= 0 || C % NH != 0 || (C / NH) % 2 != 0)
    throw ConfigError("rope: invalid shape B=" + std::to_string(B) + " T=" + std::to_string(T) + " C=" +
                      std::to_string(C) + " NH=" + std::to_string(NH) +
                      " (expected C divisible by NH and an even head size)");
}

}  // namespace

template <class F>
void rope_forward(F* qkv, const int* pos, const float* inv_freq, int B, int T, int C, int NH) {
  check_shape(B, T, C, NH);
  rope_rotate_qk(qkv, pos, inv_freq, static_cast<long>(B) * T, 3L * C, NH, C, NH, C / NH, 1.0);
}

// The transpose of the forward rotation is the rotation by -angle: (g0, g1) -> (g0 c + g1 s, -g0 s + g1 c).
template <class F>
void rope_backward(F* dqkv, const int* pos, const float* inv_freq, int B, int T, int C, int NH) {
  check_shape(B, T, C, NH);
  rope_rotate_qk(dqkv, pos, inv_freq, static_cast<long>(B) * T, 3L * C, NH, C, NH, C / NH, -1.0);
}

template <class F>
void rope_forward_rows(F* x, const int* pos, const float* inv_freq, long rows, long stride, int q_heads,
                       long k_offset, int k_heads, int hd) {
  rope_rotate_qk(x, pos, inv_freq, rows, stride, q_heads, k_offset, k_heads, hd, 1.0);
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
      rope_angles(cs.data(), sn.data(), pos[n], inv_freq, half);
      for (int h = 0; h < heads; h++) {
        F* v = x + n * stride + static_cast<long>(h) * hd;
        rope_rotate_head(v, v, cs.data(), sn.data(), half);
      }
    }
  }
}

template void rope_angles<float>(float*, float*, double, const float*, int);
template void rope_angles<double>(double*, double*, double, const float*, int);
template void rope_forward_rows<float>(float*, const int*, const float*, long, long, int, long, int, int);
template void rope_forward_rows<double>(double*, const int*, const float*, long, long, int, long, int, int);
template void rope_rotate_rows<float>(float*, const double*, const float*, long, long, int, int);
template void rope_rotate_rows<double>(double*, const double*, const float*, long, long, int, int);
template void rope_forward<float>(float*, const int*, const float*, int, int, int, int);
template void rope_forward<double>(double*, const int*, const float*, int, int, int, int);
template void rope_backward<float>(float*, const int*, const float*, int, int, int, int);
template void rope_backward<double>(double*, const int*, const float*, int, int, int, int);

}  // namespace stretch
