#include "kernels/matvec_bf16.hpp"

#include <immintrin.h>

#include <cstddef>
#include <vector>

#include "core/cpu.hpp"
#include "core/error.hpp"

namespace stretch {

void matvec_bf16_ref(float* out, const bf16_t* x, const bf16_t* W, const float* b, int N, int C, int OC) {
  for (int n = 0; n < N; n++)
    for (int o = 0; o < OC; o++) {
      const bf16_t* w = W + static_cast<std::size_t>(o) * C;
      const bf16_t* xr = x + static_cast<std::size_t>(n) * C;
      float s = 0.0f;
      for (int c = 0; c < C; c++) s += bf16_to_float(w[c]) * bf16_to_float(xr[c]);
      out[static_cast<std::size_t>(n) * OC + o] = s + (b ? b[o] : 0.0f);
    }
}

namespace {

// xs (N, C) widened to fp32 once; rows [o0, o1) of W, each dotted with the N rows of xs
__m256 widen8(const bf16_t* p) {
  return _mm256_castsi256_ps(
      _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))), 16));
}

float hsum8(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
  return _mm_cvtss_f32(s);
}

void rows_avx2(float* out, const float* xs, const bf16_t* W, const float* b, int N, int C, int OC, int o0, int o1) {
  const int C8 = C / 8 * 8;
  for (int o = o0; o < o1; o++) {
    const bf16_t* w = W + static_cast<std::size_t>(o) * C;
    __m256 acc[kMatvecRows];
    for (int n = 0; n < N; n++) acc[n] = _mm256_setzero_ps();
    for (int c = 0; c < C8; c += 8) {
      const __m256 wv = widen8(w + c);
      for (int n = 0; n < N; n++)
        acc[n] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(xs + static_cast<std::size_t>(n) * C + c), acc[n]);
    }
    for (int n = 0; n < N; n++) {
      float s = hsum8(acc[n]);
      for (int c = C8; c < C; c++) s += bf16_to_float(w[c]) * xs[static_cast<std::size_t>(n) * C + c];
      out[static_cast<std::size_t>(n) * OC + o] = s + (b ? b[o] : 0.0f);
    }
  }
}

}  // namespace

// The AVX-512 code, called only where core/cpu finds AVX-512 (its own namespace: tests/cli/portable_cli_test.cpp
// checks that no other function of the binary holds AVX-512 instructions).
namespace matvec_avx512 {
// GCC 12's AVX-512 headers start these intrinsics from _mm512_undefined_epi32(), which -Wmaybe-uninitialized
// reports as a use of an uninitialized value (a false positive: the instruction writes every lane).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
STRETCH_TARGET_AVX512 inline __m512 widen16(const bf16_t* p) {
  return _mm512_castsi512_ps(
      _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))), 16));
}

// out[n, o] = the sum in acc + the tail of row o past C16 + its bias
STRETCH_TARGET_AVX512 inline void finish16(float* out, const float* xs, const bf16_t* W, const float* b, int C, int OC,
                                           int C16, int o, int n, __m512 acc) {
  const bf16_t* w = W + static_cast<std::size_t>(o) * C;
  float s = _mm512_reduce_add_ps(acc);
  for (int c = C16; c < C; c++) s += bf16_to_float(w[c]) * xs[static_cast<std::size_t>(n) * C + c];
  out[static_cast<std::size_t>(n) * OC + o] = s + (b ? b[o] : 0.0f);
}

// NR rows of xs, four rows of W at a time (four independent streams keep more loads in flight), then the rest
template <int NR>
STRETCH_TARGET_AVX512 void rows_avx512_n(float* out, const float* xs, const bf16_t* W, const float* b, int C, int OC,
                                         int o0, int o1) {
  const int C16 = C / 16 * 16;
  int o = o0;
  for (; o + 4 <= o1; o += 4) {
    const bf16_t* w = W + static_cast<std::size_t>(o) * C;
    __m512 acc[4][NR];
    for (int r = 0; r < 4; r++)
      for (int n = 0; n < NR; n++) acc[r][n] = _mm512_setzero_ps();
    for (int c = 0; c < C16; c += 16) {
      __m512 xv[NR];
      for (int n = 0; n < NR; n++) xv[n] = _mm512_loadu_ps(xs + static_cast<std::size_t>(n) * C + c);
      for (int r = 0; r < 4; r++) {
        const __m512 wv = widen16(w + static_cast<std::size_t>(r) * C + c);
        for (int n = 0; n < NR; n++) acc[r][n] = _mm512_fmadd_ps(wv, xv[n], acc[r][n]);
      }
    }
    for (int r = 0; r < 4; r++)
      for (int n = 0; n < NR; n++) finish16(out, xs, W, b, C, OC, C16, o + r, n, acc[r][n]);
  }
  for (; o < o1; o++) {
    const bf16_t* w = W + static_cast<std::size_t>(o) * C;
    __m512 acc[NR];
    for (int n = 0; n < NR; n++) acc[n] = _mm512_setzero_ps();
    for (int c = 0; c < C16; c += 16) {
      const __m512 wv = widen16(w + c);
      for (int n = 0; n < NR; n++)
        acc[n] = _mm512_fmadd_ps(wv, _mm512_loadu_ps(xs + static_cast<std::size_t>(n) * C + c), acc[n]);
    }
    for (int n = 0; n < NR; n++) finish16(out, xs, W, b, C, OC, C16, o, n, acc[n]);
  }
}

STRETCH_TARGET_AVX512 void rows_avx512(float* out, const float* xs, const bf16_t* W, const float* b, int N, int C,
                                       int OC, int o0, int o1) {
  switch (N) {
    case 1: return rows_avx512_n<1>(out, xs, W, b, C, OC, o0, o1);
    case 2: return rows_avx512_n<2>(out, xs, W, b, C, OC, o0, o1);
    case 3: return rows_avx512_n<3>(out, xs, W, b, C, OC, o0, o1);
    default: return rows_avx512_n<4>(out, xs, W, b, C, OC, o0, o1);
  }
}
#pragma GCC diagnostic pop
}  // namespace matvec_avx512

namespace {
void run(float* out, const bf16_t* x, const bf16_t* W, const float* b, int N, int C, int OC, bool wide) {
  if (N < 1 || N > kMatvecRows)
    throw ConfigError("matvec_bf16: " + std::to_string(N) + " rows, expected 1 to " + std::to_string(kMatvecRows));
  std::vector<float> xs(static_cast<std::size_t>(N) * C);
  bf16_to_float(x, xs.size(), xs.data());
  constexpr int kBlock = 16;  // outputs per task: 16 rows of W (C = 2048: 64 KB) per scheduling step
  const int blocks = (OC + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static) if (static_cast<long>(OC) * C >= (1L << 16))
  for (int k = 0; k < blocks; k++) {
    const int o0 = k * kBlock, o1 = o0 + kBlock < OC ? o0 + kBlock : OC;
    if (wide)
      matvec_avx512::rows_avx512(out, xs.data(), W, b, N, C, OC, o0, o1);
    else
      rows_avx2(out, xs.data(), W, b, N, C, OC, o0, o1);
  }
}
}  // namespace

void matvec_bf16(float* out, const bf16_t* x, const bf16_t* W, const float* b, int N, int C, int OC) {
  run(out, x, W, b, N, C, OC, cpu_paths().avx512);
}

void matvec_bf16_portable(float* out, const bf16_t* x, const bf16_t* W, const float* b, int N, int C, int OC) {
  run(out, x, W, b, N, C, OC, false);
}

}  // namespace stretch
