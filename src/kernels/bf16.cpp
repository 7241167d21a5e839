#include "kernels/bf16.hpp"

#include <immintrin.h>

#include "core/cpu.hpp"

namespace stretch {

namespace {

// dst[i0 .. i1) from src with vcvtne2ps2bf16, 32 at a time; returns where the vector loop stopped.
STRETCH_TARGET_AVX512_BF16 std::size_t to_bf16_avx512_bf16(bf16_t* dst, const float* src, std::size_t i0,
                                                           std::size_t i1) {
  std::size_t i = i0;
  for (; i + 32 <= i1; i += 32) {
    const __m512bh v = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(src + i + 16), _mm512_loadu_ps(src + i));
    _mm512_storeu_si512(dst + i, reinterpret_cast<const __m512i&>(v));
  }
  return i;
}

}  // namespace

void to_bf16(bf16_t* dst, const float* src, std::size_t n) {
  constexpr std::size_t kChunk = 1 << 14;  // elements per parallel chunk
  const std::size_t chunks = (n + kChunk - 1) / kChunk;
  const bool vector = cpu_paths().avx512_bf16;
#pragma omp parallel for schedule(static) if (chunks > 1)
  for (std::size_t c = 0; c < chunks; c++) {
    const std::size_t i0 = c * kChunk, i1 = i0 + kChunk < n ? i0 + kChunk : n;
    std::size_t i = vector ? to_bf16_avx512_bf16(dst, src, i0, i1) : i0;
    for (; i < i1; i++) dst[i] = float_to_bf16(src[i]);
  }
}

}  // namespace stretch
