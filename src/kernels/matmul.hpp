// Linear layer: out = inp @ weight^T + bias. Fast path through oneDNN's sgemm; the plain reference beside it is
// the fallback and the test oracle.
//
//   inp    (N, C)      N = B*T rows
//   weight (OC, C)     PyTorch's Linear layout
//   bias   (OC)        may be null
//   out    (N, OC)
#pragma once

namespace stretch {

// out = inp @ weight^T + bias (overwrites out).
void matmul_forward(float* out, const float* inp, const float* weight, const float* bias, int N, int C, int OC);

// Accumulates (+=): dinp += dout @ weight; dweight += dout^T @ inp; dbias += sum over rows of dout.
// dinp and dbias may be null (not needed).
void matmul_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                     const float* weight, int N, int C, int OC);

// General row-major product with strides (oneDNN sgemm): C (M, N) = alpha op(A) op(B) + beta C, op = transpose
// when ta / tb is 'T'. For views into larger arrays (e.g. one head of a key/value cache). Reference: gemm_ref.
void gemm(char ta, char tb, long M, long N, long K, float alpha, const float* A, long lda, const float* B, long ldb,
          float beta, float* C, long ldc);
template <class F>
void gemm_ref(char ta, char tb, long M, long N, long K, F alpha, const F* A, long lda, const F* B, long ldb, F beta,
              F* C, long ldc);

// Plain loops, same contract. Instantiated for float and double.
template <class F>
void matmul_forward_ref(F* out, const F* inp, const F* weight, const F* bias, int N, int C, int OC);
template <class F>
void matmul_backward_ref(F* dinp, F* dweight, F* dbias, const F* dout, const F* inp, const F* weight, int N, int C,
                         int OC);

}  // namespace stretch
