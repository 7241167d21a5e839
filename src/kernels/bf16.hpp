// bfloat16 storage for mixed-precision training (kernels/matmul.hpp's *_bf16 products): the upper 16 bits of an
// IEEE float, converted with round-to-nearest-even (NaN stays NaN, quieted; fp32 subnormals flush to signed zero).
// Values are only stored in bf16; all arithmetic and accumulation stays fp32. The scalar conversions
// (float_to_bf16, bf16_to_float) and their exact rules are core/numeric.hpp's.
//
//   to_bf16(dst, src, n)    dst[i] = float_to_bf16(src[i]), OpenMP-parallel for large n; AVX-512 BF16's
//                           vcvtne2ps2bf16 when the CPU has it (core/cpu.hpp), else the scalar rounding (both round to nearest
//                           even and flush subnormals, so the results are identical: tested)
#pragma once
#include <cstddef>

#include "core/numeric.hpp"

namespace stretch {

void to_bf16(bf16_t* dst, const float* src, std::size_t n);

}  // namespace stretch
