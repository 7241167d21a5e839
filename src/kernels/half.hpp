// Rows of 16-bit floats for the key/value cache (model/decoder.hpp KvType): narrowed once as a key or value enters
// the cache, widened to fp32 where attention reads them. The scalar rules are core/numeric.hpp's.
//
//   to_f16(dst, src, n)      dst[i] = float_to_half(src[i]): F16C's vcvtps2ph (part of the x86-64-v3 baseline), round
//                            to nearest even; the same bits as the scalar rule for every non-NaN value (tested), a
//                            quiet NaN for a NaN
//   widen_f16(dst, src, n)   dst[i] = half_to_float(src[i]), exact (vcvtph2ps)
// Single-threaded: the cache's rows are short and the callers run inside their own parallel regions. bf16 rows need
// nothing here: core/numeric.hpp's bf16_to_float(src, n, dst) widens them (a shift, which the compiler vectorizes)
// and kernels/bf16.hpp's to_bf16 narrows them.
#pragma once
#include <cstddef>

#include "core/numeric.hpp"

namespace stretch {

void to_f16(f16_t* dst, const float* src, std::size_t n);
void widen_f16(float* dst, const f16_t* src, std::size_t n);

}  // namespace stretch
