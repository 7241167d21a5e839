// The product of a few rows with a bf16 weight matrix, for decoding (one new token per step): memory-bound, it
// streams W once and is as fast as the bytes it reads; oneDNN's bf16 matmul, built for many rows, reads them at half
// the rate at one row (docs/PERFORMANCE.md, "Inference at real size").
//
//   out (N, OC) = x (N, C) @ W^T + b     x (N, C) bf16, W (OC, C) bf16 row-major, b (OC) fp32 or null
// The operands are the same bf16 values as matmul_forward_bf16's and every product is exact in fp32, accumulated in
// fp32 (8 or 16 partial sums per row, then summed): only the summation order differs from oneDNN's.
//   matvec_bf16_ref: the plain loop (one sum per output), the reference
//   matvec_bf16:     rows of W in parallel (OpenMP over blocks of outputs), widened 16 (AVX-512, where core/cpu finds
//                    it) or 8 (the build target's AVX2) at a time and fused-multiply-added
//   matvec_bf16_portable: the same on 8-wide vectors whatever the CPU (what a CPU without AVX-512 runs; tested)
// For N up to kMatvecRows; the caller uses matmul_forward_bf16 for more.
#pragma once
#include "core/numeric.hpp"

namespace stretch {

inline constexpr int kMatvecRows = 4;

void matvec_bf16_ref(float* out, const bf16_t* x, const bf16_t* W, const float* b, int N, int C, int OC);
void matvec_bf16(float* out, const bf16_t* x, const bf16_t* W, const float* b, int N, int C, int OC);
void matvec_bf16_portable(float* out, const bf16_t* x, const bf16_t* W, const float* b, int N, int C, int OC);

}  // namespace stretch
