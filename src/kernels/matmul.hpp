// Linear layer: out = inp @ weight^T + bias. Fast path through oneDNN's sgemm; the plain reference beside it is
// the fallback and the test oracle.
//
//   inp    (N, C)      N = B*T rows
//   weight (OC, C)     PyTorch's Linear layout
//   bias   (OC)        may be null
//   out    (N, OC)
//
// Mixed precision (*_bf16): the operands of the products in bfloat16 (kernels/bf16.hpp), accumulation and results
// in fp32 (oneDNN's matmul primitive: AVX-512 BF16 dot products where the CPU has them). Biases, the bias gradient
// and everything outside the products stay fp32. Reference: the same products with the bf16 values widened to
// float (gemm_bf16_ref), so only the accumulation order differs.
#pragma once
#include <string>

#include "kernels/bf16.hpp"

namespace stretch {

// What runs the products on this CPU: oneDNN's version ("2.6.3") and the instruction set it dispatches to here
// ("avx512_core_bf16", ...; capped by ONEDNN_MAX_CPU_ISA). bf16 is true where its bf16 matmul has a native kernel
// (avx512_core and up): elsewhere the bf16 products have no fast path and --precision bf16 is refused.
struct MatmulBackend {
  std::string version, isa;
  bool bf16 = false;
};
const MatmulBackend& matmul_backend();
// Why bf16 products (`precision` bf16: training, or weights kept in bf16) cannot run on this CPU, naming the CPU and
// what oneDNN runs here; empty where they can. Every command refuses bf16 up front with this text.
std::string bf16_products_missing();

// out = inp @ weight^T + bias (overwrites out).
void matmul_forward(float* out, const float* inp, const float* weight, const float* bias, int N, int C, int OC);

// Accumulates (+=): dinp += dout @ weight; dweight += dout^T @ inp; dbias += sum over rows of dout.
// dinp, dweight and dbias may each be null (not needed: a frozen weight has no gradient).
void matmul_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                     const float* weight, int N, int C, int OC);

// General row-major product with strides (oneDNN sgemm): C (M, N) = alpha op(A) op(B) + beta C, op = transpose
// when ta / tb is 'T'. For views into larger arrays (e.g. one head of a key/value cache). Reference: gemm_ref.
void gemm(char ta, char tb, long M, long N, long K, float alpha, const float* A, long lda, const float* B, long ldb,
          float beta, float* C, long ldc);
template <class F>
void gemm_ref(char ta, char tb, long M, long N, long K, F alpha, const F* A, long lda, const F* B, long ldb, F beta,
              F* C, long ldc);

// C (M, N) = alpha op(A) op(B) + beta C with bf16 A and B (row-major, strides as gemm), fp32 C.
void gemm_bf16(char ta, char tb, long M, long N, long K, float alpha, const bf16_t* A, long lda, const bf16_t* B,
               long ldb, float beta, float* C, long ldc);
void gemm_bf16_ref(char ta, char tb, long M, long N, long K, float alpha, const bf16_t* A, long lda, const bf16_t* B,
                   long ldb, float beta, float* C, long ldc);

// out (N, OC) = inp (N, C) @ weight^T + bias, inp and weight in bf16 (overwrites out).
void matmul_forward_bf16(float* out, const bf16_t* inp, const bf16_t* weight, const float* bias, int N, int C, int OC);
// dinp += dout @ weight; dweight += dout^T @ inp (products in bf16: dout_bf = bf16(dout), given by the caller);
// dbias += column sums of the fp32 dout. dinp, dweight and dbias may be null.
void matmul_backward_bf16(float* dinp, float* dweight, float* dbias, const float* dout, const bf16_t* dout_bf,
                          const bf16_t* inp, const bf16_t* weight, int N, int C, int OC);

// Plain loops, same contract. Instantiated for float and double.
template <class F>
void matmul_forward_ref(F* out, const F* inp, const F* weight, const F* bias, int N, int C, int OC);
template <class F>
void matmul_backward_ref(F* dinp, F* dweight, F* dbias, const F* dout, const F* inp, const F* weight, int N, int C,
                         int OC);

}  // namespace stretch
