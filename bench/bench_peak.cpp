// The machine's arithmetic peaks, measured, for the profile table of docs/PERFORMANCE.md (achieved GFLOP/s per op
// against what the cores can do):
//   fp32 FMA   vfmadd231ps on 12 independent accumulators (2 FLOP per lane), per core and on all threads: on zmm
//              (AVX-512) when the CPU has it, and on ymm (AVX2), the portable build's vector width
//   bf16 dot   AVX-512 BF16 vdpbf16ps on 12 accumulators (32 pairs per instruction: 64 FLOP), when the CPU has it
// (The loops carry target attributes, core/cpu.hpp, and run only where the CPU has the instructions, whatever the
// build target.)
//   sgemm      oneDNN's sgemm (kernels/matmul.hpp gemm) on the reference config's matrix products
//   bf16 gemm  oneDNN's bf16 matmul (kernels/matmul.hpp gemm_bf16, fp32 accumulation) on the same products
//   read GB/s  a streaming read of 1 GB (sums of 8-float vectors, 4 independent per thread), far beyond any cache: the
//              memory bandwidth that bounds decoding, where every token reads all the weights
// Prints one JSON line per measurement. Each figure is the best of --repeats runs (the machine is shared).
//   bench_peak [--seconds 0.3] [--repeats 5]
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "core/cpu.hpp"
#include "core/rng.hpp"
#include "kernels/bf16.hpp"
#include "kernels/matmul.hpp"

using namespace stretch;

namespace {

using Clock = std::chrono::steady_clock;

// (not _mm512_reduce_add_ps: GCC 12 warns inside its header, -Wuninitialized)
STRETCH_TARGET_AVX512 float lane_sum(const __m512& v) {
  alignas(64) float x[16];
  _mm512_store_ps(x, v);
  float s = 0;
  for (float f : x) s += f;
  return s;
}

// FLOP done by `iters` rounds of 12 vfmadd231ps on zmm registers: 12 * 16 lanes * 2.
STRETCH_TARGET_AVX512 double fma_loop(long iters, float* sink) {
  __m512 a[12];
  for (int i = 0; i < 12; i++) a[i] = _mm512_set1_ps(0.001f * static_cast<float>(i));
  const __m512 x = _mm512_set1_ps(0.9999f), y = _mm512_set1_ps(1e-7f);
  for (long n = 0; n < iters; n++)
    for (int i = 0; i < 12; i++) a[i] = _mm512_fmadd_ps(a[i], x, y);
  __m512 s = a[0];
  for (int i = 1; i < 12; i++) s = _mm512_add_ps(s, a[i]);
  *sink += lane_sum(s);
  return static_cast<double>(iters) * 12 * 16 * 2;
}

// The same on ymm registers: 12 * 8 lanes * 2.
__attribute__((target("avx2,fma"))) double fma_loop_avx2(long iters, float* sink) {
  __m256 a[12];
  for (int i = 0; i < 12; i++) a[i] = _mm256_set1_ps(0.001f * static_cast<float>(i));
  const __m256 x = _mm256_set1_ps(0.9999f), y = _mm256_set1_ps(1e-7f);
  for (long n = 0; n < iters; n++)
    for (int i = 0; i < 12; i++) a[i] = _mm256_fmadd_ps(a[i], x, y);
  __m256 s = a[0];
  for (int i = 1; i < 12; i++) s = _mm256_add_ps(s, a[i]);
  alignas(32) float v[8];
  _mm256_store_ps(v, s);
  for (float f : v) *sink += f;
  return static_cast<double>(iters) * 12 * 8 * 2;
}

// FLOP done by `iters` rounds of 12 vdpbf16ps: each multiplies 32 bf16 pairs and adds them in pairs into 16 fp32
// lanes, 64 FLOP.
STRETCH_TARGET_AVX512_BF16 double bf16_loop(long iters, float* sink) {
  __m512 a[12];
  for (int i = 0; i < 12; i++) a[i] = _mm512_setzero_ps();
  const __m512bh x = _mm512_cvtne2ps_pbh(_mm512_set1_ps(0.5f), _mm512_set1_ps(0.25f));
  const __m512bh y = _mm512_cvtne2ps_pbh(_mm512_set1_ps(1e-3f), _mm512_set1_ps(2e-3f));
  for (long n = 0; n < iters; n++)
    for (int i = 0; i < 12; i++) a[i] = _mm512_dpbf16_ps(a[i], x, y);
  __m512 s = a[0];
  for (int i = 1; i < 12; i++) s = _mm512_add_ps(s, a[i]);
  *sink += lane_sum(s);
  return static_cast<double>(iters) * 12 * 64;
}

// GFLOP/s of `loop` on `threads` threads, each running for about `seconds`, best of `repeats`.
template <class Loop>
double peak(Loop loop, int threads, double seconds, int repeats) {
  float sink = 0;
  long iters = 1 << 16;
  for (;;) {  // calibrate on one thread
    auto t0 = Clock::now();
    loop(iters, &sink);
    if (std::chrono::duration<double>(Clock::now() - t0).count() > seconds / 4) break;
    iters *= 2;
  }
  iters *= 4;
  double best = 0;
  for (int r = 0; r < repeats; r++) {
    double flop = 0;
    auto t0 = Clock::now();
#pragma omp parallel num_threads(threads) reduction(+ : flop)
    {
      float s = 0;
      flop += loop(iters, &s);
#pragma omp critical
      sink += s;
    }
    const double dt = std::chrono::duration<double>(Clock::now() - t0).count();
    best = std::max(best, flop / dt / 1e9);
  }
  if (sink == 12345.0f) std::printf(" ");  // keep the work
  return best;
}

}  // namespace

// GB/s of summing n floats with `threads` threads, the best of `repeats`
double read_bandwidth(const std::vector<float>& a, int threads, int repeats) {
  double best = 0.0;
  float sink = 0.0f;
  for (int r = 0; r < repeats; r++) {
    const auto t0 = std::chrono::steady_clock::now();
    float total = 0.0f;
    const long n = static_cast<long>(a.size()) / 32 * 32;
#pragma omp parallel num_threads(threads) reduction(+ : total)
    {
      __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
#pragma omp for schedule(static)
      for (long i = 0; i < n; i += 32) {
        s0 = _mm256_add_ps(s0, _mm256_loadu_ps(&a[i]));
        s1 = _mm256_add_ps(s1, _mm256_loadu_ps(&a[i + 8]));
        s2 = _mm256_add_ps(s2, _mm256_loadu_ps(&a[i + 16]));
        s3 = _mm256_add_ps(s3, _mm256_loadu_ps(&a[i + 24]));
      }
      float t[8];
      _mm256_storeu_ps(t, _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
      for (float v : t) total += v;
    }
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::max(best, static_cast<double>(n) * sizeof(float) / s / 1e9);
    sink += total;
  }
  if (sink == 12345.0f) std::printf(" ");  // keep the work
  return best;
}

int main(int argc, char** argv) {
  double seconds = 0.3;
  int repeats = 5;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--seconds") seconds = std::atof(v.c_str());
    else if (k == "--repeats") repeats = std::atoi(v.c_str());
    else {
      std::fprintf(stderr, "bench_peak: unknown option %s\n", k.c_str());
      return 2;
    }
  }
  const int all = omp_get_max_threads();
  const CpuFeatures& cpu = cpu_features();
  std::printf("{\"what\":\"host\",\"cpu\":\"%s\",\"build_target\":\"%s\",\"avx512\":%s,\"avx512_bf16\":%s,"
              "\"amx\":%s,\"threads\":%d}\n", cpu_model_name().c_str(), build_target(), cpu.avx512 ? "true" : "false",
              cpu.avx512_bf16 ? "true" : "false", cpu.amx ? "true" : "false", all);
  if (cpu.avx512)
    for (int t : {1, all})
      std::printf("{\"what\":\"fp32_fma_peak\",\"isa\":\"avx512\",\"threads\":%d,\"gflops\":%.1f}\n", t,
                  peak(fma_loop, t, seconds, repeats));
  if (cpu.avx2 && cpu.fma)
    for (int t : {1, all})
      std::printf("{\"what\":\"fp32_fma_peak\",\"isa\":\"avx2\",\"threads\":%d,\"gflops\":%.1f}\n", t,
                  peak(fma_loop_avx2, t, seconds, repeats));
  if (cpu.avx512_bf16)
    for (int t : {1, all})
      std::printf("{\"what\":\"bf16_dot_peak\",\"threads\":%d,\"gflops\":%.1f}\n", t,
                  peak(bf16_loop, t, seconds, repeats));
  else
    std::printf("{\"what\":\"bf16_dot_peak\",\"error\":\"this CPU has no AVX-512 BF16\"}\n");
  {
    const std::vector<float> a(std::size_t{1} << 28, 1.0f);  // 1 GB
    for (int t : {1, all})
      std::printf("{\"what\":\"read_bandwidth\",\"threads\":%d,\"gb_per_s\":%.1f}\n", t,
                  read_bandwidth(a, t, repeats));
  }
  // the reference config's products (B*T = 4096 rows, C = 256, MLP 1024, vocabulary 256): forward shapes
  struct Shape {
    const char* name;
    long M, N, K;
  };
  const Shape shapes[] = {{"qkv", 4096, 768, 256}, {"attproj", 4096, 256, 256}, {"fc", 4096, 1024, 256},
                          {"fcproj", 4096, 256, 1024}, {"classifier", 4096, 256, 256}};
  Rng rng(1);
  for (const Shape& s : shapes) {
    std::vector<float> A(static_cast<std::size_t>(s.M * s.K)), B(static_cast<std::size_t>(s.N * s.K)),
        C(static_cast<std::size_t>(s.M * s.N));
    for (auto& x : A) x = rng.normal();
    for (auto& x : B) x = rng.normal();
    std::vector<bf16_t> Ab(A.size()), Bb(B.size());
    to_bf16(Ab.data(), A.data(), A.size());
    to_bf16(Bb.data(), B.data(), B.size());
    for (int t : {1, all}) {
      omp_set_num_threads(t);
      double best = 0;
      for (int r = 0; r < repeats + 2; r++) {
        auto t0 = Clock::now();
        gemm('N', 'T', s.M, s.N, s.K, 1.0f, A.data(), s.K, B.data(), s.K, 0.0f, C.data(), s.N);
        const double dt = std::chrono::duration<double>(Clock::now() - t0).count();
        if (r >= 2) best = std::max(best, 2.0 * s.M * s.N * s.K / dt / 1e9);
      }
      std::printf("{\"what\":\"sgemm\",\"shape\":\"%s\",\"M\":%ld,\"N\":%ld,\"K\":%ld,\"threads\":%d,\"gflops\":%.1f}\n",
                  s.name, s.M, s.N, s.K, t, best);
      best = 0;
      for (int r = 0; r < repeats + 2; r++) {
        auto t0 = Clock::now();
        gemm_bf16('N', 'T', s.M, s.N, s.K, 1.0f, Ab.data(), s.K, Bb.data(), s.K, 0.0f, C.data(), s.N);
        const double dt = std::chrono::duration<double>(Clock::now() - t0).count();
        if (r >= 2) best = std::max(best, 2.0 * s.M * s.N * s.K / dt / 1e9);
      }
      std::printf("{\"what\":\"bf16_gemm\",\"shape\":\"%s\",\"M\":%ld,\"N\":%ld,\"K\":%ld,\"threads\":%d,"
                  "\"gflops\":%.1f}\n", s.name, s.M, s.N, s.K, t, best);
    }
    omp_set_num_threads(all);
  }
  return 0;
}
