// Linear layer: out = inp @ weight^T + bias. The fast path calls oneDNN's row-major sgemm; the templated plain
// loops below it are the fallback and the test oracle.
//
//   inp    (N, C)
//   weight (OC, C)
//   bias   (OC), may be null
//   out    (N, OC)
#include "kernels/matmul.hpp"

#include <oneapi/dnnl/dnnl.h>
#include <oneapi/dnnl/dnnl_debug.h>

#include <oneapi/dnnl/dnnl.hpp>

#include <algorithm>
#include <cstring>
#include <string>

#include "core/cpu.hpp"
#include "core/error.hpp"

namespace stretch {

namespace {

// C (M, Nn) = alpha * op(A) (M, K) @ op(B) (K, Nn) + beta * C, all row-major; throws on failure.
void sgemm(char ta, char tb, long M, long Nn, long K, const float* A, long lda, const float* B, long ldb, float beta,
           float* C, long ldc, const char* what) {
  const dnnl_status_t st = dnnl_sgemm(ta, tb, M, Nn, K, 1.0f, A, std::max(lda, 1L), B, std::max(ldb, 1L), beta, C,
                                      std::max(ldc, 1L));
  if (st != dnnl_success) {
    throw Error(std::string("matmul: dnnl_sgemm failed (") + what + ", M=" + std::to_string(M) +
                " N=" + std::to_string(Nn) + " K=" + std::to_string(K) + "): " + dnnl_status2str(st));
  }
}

void check_shape(int N, int C, int OC, const char* what) {
  if (N < 0 || C < 0 || OC < 0) {
    throw Error(std::string(what) + ": negative shape N=" + std::to_string(N) + " C=" + std::to_string(C) +
                " OC=" + std::to_string(OC));
  }
}

// dbias (OC) += column sums of dout (N, OC). Columns are split into blocks across threads; every column is summed
// over rows in order, so the result does not depend on the thread count.
template <class F>
void column_sums_add(F* dbias, const F* dout, int N, int OC) {
  constexpr int kBlock = 32;
  const int nblocks = (OC + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static)
  for (int blk = 0; blk < nblocks; blk++) {
    const int o0 = blk * kBlock;
    const int o1 = std::min(OC, o0 + kBlock);
    F acc[kBlock] = {};
    for (int n = 0; n < N; n++) {
      const F* row = dout + static_cast<long>(n) * OC;
      for (int o = o0; o < o1; o++) acc[o - o0] += row[o];
    }
    for (int o = o0; o < o1; o++) dbias[o] += acc[o - o0];
  }
}

}  // namespace

void gemm(char ta, char tb, long M, long N, long K, float alpha, const float* A, long lda, const float* B, long ldb,
          float beta, float* C, long ldc) {
  if (M <= 0 || N <= 0) return;
  const dnnl_status_t st = dnnl_sgemm(ta, tb, M, N, K, alpha, A, std::max(lda, 1L), B, std::max(ldb, 1L), beta, C,
                                      std::max(ldc, 1L));
  if (st != dnnl_success)
    throw Error(std::string("gemm: dnnl_sgemm failed (M=") + std::to_string(M) + " N=" + std::to_string(N) +
                " K=" + std::to_string(K) + "): " + dnnl_status2str(st));
}

template <class F>
void gemm_ref(char ta, char tb, long M, long N, long K, F alpha, const F* A, long lda, const F* B, long ldb, F beta,
              F* C, long ldc) {
  for (long i = 0; i < M; i++)
    for (long j = 0; j < N; j++) {
      F acc = 0;
      for (long k = 0; k < K; k++) {
        const F a = ta == 'T' ? A[k * lda + i] : A[i * lda + k];
        const F b = tb == 'T' ? B[j * ldb + k] : B[k * ldb + j];
        acc += a * b;
      }
      C[i * ldc + j] = alpha * acc + (beta == F(0) ? F(0) : beta * C[i * ldc + j]);
    }
}
template void gemm_ref<float>(char, char, long, long, long, float, const float*, long, const float*, long, float,
                              float*, long);
template void gemm_ref<double>(char, char, long, long, long, double, const double*, long, const double*, long, double,
                               double*, long);

// ---------------------------------------------------------------------------------------------------------------
// oneDNN path (float)

void matmul_forward(float* out, const float* inp, const float* weight, const float* bias, int N, int C, int OC) {
  check_shape(N, C, OC, "matmul_forward");
  if (N == 0 || OC == 0) return;
  float beta = 0.0f;
  if (bias) {  // start from the broadcast bias and let the gemm add onto it
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) std::memcpy(out + static_cast<long>(n) * OC, bias, sizeof(float) * OC);
    beta = 1.0f;
  }
  if (C == 0) {  // empty product
    if (!bias) std::memset(out, 0, sizeof(float) * static_cast<std::size_t>(N) * OC);
    return;
  }
  // out (N, OC) = inp (N, C) @ weight^T (C, OC)
  sgemm('N', 'T', N, OC, C, inp, C, weight, C, beta, out, OC, "forward");
}

void matmul_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                     const float* weight, int N, int C, int OC) {
  check_shape(N, C, OC, "matmul_backward");
  if (N == 0 || OC == 0) return;
  if (C > 0) {
    // dinp (N, C) += dout (N, OC) @ weight (OC, C)
    if (dinp) sgemm('N', 'N', N, C, OC, dout, OC, weight, C, 1.0f, dinp, C, "backward dinp");
    // dweight (OC, C) += dout^T (OC, N) @ inp (N, C)
    if (dweight) sgemm('T', 'N', OC, C, N, dout, OC, inp, C, 1.0f, dweight, C, "backward dweight");
  }
  if (dbias) column_sums_add(dbias, dout, N, OC);
}

// ---------------------------------------------------------------------------------------------------------------
// oneDNN path (bf16 operands, fp32 accumulation and results)

namespace {

dnnl::engine& cpu_engine() {
  static dnnl::engine e(dnnl::engine::kind::cpu, 0);
  return e;
}

std::string isa_name(dnnl_cpu_isa_t isa) {
  switch (isa) {
    case dnnl_cpu_isa_all: return "all";
    case dnnl_cpu_isa_sse41: return "sse41";
    case dnnl_cpu_isa_avx: return "avx";
    case dnnl_cpu_isa_avx2: return "avx2";
    case dnnl_cpu_isa_avx2_vnni: return "avx2_vnni";
    case dnnl_cpu_isa_avx512_mic: return "avx512_mic";
    case dnnl_cpu_isa_avx512_mic_4ops: return "avx512_mic_4ops";
    case dnnl_cpu_isa_avx512_core: return "avx512_core";
    case dnnl_cpu_isa_avx512_core_vnni: return "avx512_core_vnni";
    case dnnl_cpu_isa_avx512_core_bf16: return "avx512_core_bf16";
    case dnnl_cpu_isa_avx512_core_amx: return "avx512_core_amx";
    default: return "unknown (" + std::to_string(static_cast<int>(isa)) + ")";
  }
}

}  // namespace

const MatmulBackend& matmul_backend() {
  static const MatmulBackend b = [] {
    MatmulBackend m;
    const dnnl_version_t* v = dnnl_version();
    m.version = std::to_string(v->major) + "." + std::to_string(v->minor) + "." + std::to_string(v->patch);
    const dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa();
    m.isa = isa_name(isa);
    // the ISA values are bit sets: each includes the bits of the ones below it
    m.bf16 = (static_cast<unsigned>(isa) & dnnl_cpu_isa_avx512_core) == dnnl_cpu_isa_avx512_core;
    return m;
  }();
  return b;
}

std::string bf16_products_missing() {
  const MatmulBackend& mb = matmul_backend();
  if (mb.bf16) return {};
  return "bf16 needs a CPU with AVX-512, where oneDNN has bf16 matrix products (its avx512_core and up); on this CPU (" +
         cpu_model_name() + ") oneDNN " + mb.version + " runs " + mb.isa + ": use `precision` fp32";
}

void gemm_bf16(char ta, char tb, long M, long N, long K, float alpha, const bf16_t* A, long lda, const bf16_t* B,
               long ldb, float beta, float* C, long ldc) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0) {  // empty product: C = beta C
    for (long i = 0; i < M; i++)
      for (long j = 0; j < N; j++) C[i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[i * ldc + j];
    return;
  }
  using dnnl::memory;
  using dt = memory::data_type;
  try {
    const memory::desc a_md({M, K}, dt::bf16, ta == 'T' ? memory::dims{1, lda} : memory::dims{lda, 1});
    const memory::desc b_md({K, N}, dt::bf16, tb == 'T' ? memory::dims{1, ldb} : memory::dims{ldb, 1});
    const memory::desc c_md({M, N}, dt::f32, memory::dims{ldc, 1});
    dnnl::primitive_attr attr;
    if (alpha != 1.0f) attr.set_output_scales(0, {alpha});
    if (beta != 0.0f) {
      dnnl::post_ops po;
      po.append_sum(beta);
      attr.set_post_ops(po);
    }
    dnnl::engine& eng = cpu_engine();
    const dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(a_md, b_md, c_md), attr, eng);
    dnnl::stream s(eng);
    dnnl::matmul(pd).execute(s, {{DNNL_ARG_SRC, memory(a_md, eng, const_cast<bf16_t*>(A))},
                                 {DNNL_ARG_WEIGHTS, memory(b_md, eng, const_cast<bf16_t*>(B))},
                                 {DNNL_ARG_DST, memory(c_md, eng, C)}});
    s.wait();
  } catch (const dnnl::error& e) {
    throw Error(std::string("gemm_bf16: oneDNN matmul failed (M=") + std::to_string(M) + " N=" + std::to_string(N) +
                " K=" + std::to_string(K) + "): " + e.what());
  }
}

void gemm_bf16_ref(char ta, char tb, long M, long N, long K, float alpha, const bf16_t* A, long lda, const bf16_t* B,
                   long ldb, float beta, float* C, long ldc) {
#pragma omp parallel for schedule(static)
  for (long i = 0; i < M; i++)
    for (long j = 0; j < N; j++) {
      float acc = 0;
      for (long k = 0; k < K; k++) {
        const float a = bf16_to_float(ta == 'T' ? A[k * lda + i] : A[i * lda + k]);
        const float b = bf16_to_float(tb == 'T' ? B[j * ldb + k] : B[k * ldb + j]);
        acc += a * b;
      }
      C[i * ldc + j] = alpha * acc + (beta == 0.0f ? 0.0f : beta * C[i * ldc + j]);
    }
}

void matmul_forward_bf16(float* out, const bf16_t* inp, const bf16_t* weight, const float* bias, int N, int C,
                         int OC) {
  check_shape(N, C, OC, "matmul_forward_bf16");
  if (N == 0 || OC == 0) return;
  float beta = 0.0f;
  if (bias) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) std::memcpy(out + static_cast<long>(n) * OC, bias, sizeof(float) * OC);
    beta = 1.0f;
  }
  gemm_bf16('N', 'T', N, OC, C, 1.0f, inp, C, weight, C, beta, out, OC);
}

void matmul_backward_bf16(float* dinp, float* dweight, float* dbias, const float* dout, const bf16_t* dout_bf,
                          const bf16_t* inp, const bf16_t* weight, int N, int C, int OC) {
  check_shape(N, C, OC, "matmul_backward_bf16");
  if (N == 0 || OC == 0) return;
  if (C > 0) {
    if (dinp) gemm_bf16('N', 'N', N, C, OC, 1.0f, dout_bf, OC, weight, C, 1.0f, dinp, C);
    if (dweight) gemm_bf16('T', 'N', OC, C, N, 1.0f, dout_bf, OC, inp, C, 1.0f, dweight, C);
  }
  if (dbias) column_sums_add(dbias, dout, N, OC);
}

// ---------------------------------------------------------------------------------------------------------------
// Plain reference

template <class F>
void matmul_forward_ref(F* out, const F* inp, const F* weight, const F* bias, int N, int C, int OC) {
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; n++) {
    const F* x = inp + static_cast<long>(n) * C;
    F* y = out + static_cast<long>(n) * OC;
    for (int o = 0; o < OC; o++) {
      const F* w = weight + static_cast<long>(o) * C;
      F acc = bias ? bias[o] : F(0);
      for (int c = 0; c < C; c++) acc += x[c] * w[c];
      y[o] = acc;
    }
  }
}

template <class F>
void matmul_backward_ref(F* dinp, F* dweight, F* dbias, const F* dout, const F* inp, const F* weight, int N, int C,
                         int OC) {
  // dinp (N, C) += dout (N, OC) @ weight (OC, C); one row per task
  if (dinp) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
      const F* d = dout + static_cast<long>(n) * OC;
      F* dx = dinp + static_cast<long>(n) * C;
      for (int o = 0; o < OC; o++) {
        const F* w = weight + static_cast<long>(o) * C;
        for (int c = 0; c < C; c++) dx[c] += d[o] * w[c];
      }
    }
  }
  // dweight (OC, C) += dout^T (OC, N) @ inp (N, C); one output row per task, rows n in order
#pragma omp parallel for schedule(static) if (dweight)
  for (int o = 0; o < (dweight ? OC : 0); o++) {
    F* dw = dweight + static_cast<long>(o) * C;
    for (int n = 0; n < N; n++) {
      const F d = dout[static_cast<long>(n) * OC + o];
      const F* x = inp + static_cast<long>(n) * C;
      for (int c = 0; c < C; c++) dw[c] += d * x[c];
    }
  }
  if (dbias) column_sums_add(dbias, dout, N, OC);
}

template void matmul_forward_ref<float>(float*, const float*, const float*, const float*, int, int, int);
template void matmul_forward_ref<double>(double*, const double*, const double*, const double*, int, int, int);
template void matmul_backward_ref<float>(float*, float*, float*, const float*, const float*, const float*, int, int,
                                         int);
template void matmul_backward_ref<double>(double*, double*, double*, const double*, const double*, const double*, int,
                                          int, int);

}  // namespace stretch
