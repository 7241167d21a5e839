#include "kernels/paths.hpp"

#include "core/cpu.hpp"
#include "kernels/attention_tiled.hpp"
#include "kernels/matmul.hpp"

namespace stretch {

std::vector<KernelPath> kernel_paths() {
  const CpuPaths& p = cpu_paths();
  const MatmulBackend& mb = matmul_backend();
#if STRETCH_TILED_AVX512_COPY
  const char* tiled = p.avx512 ? "avx512" : "avx2";  // attention_tiled.hpp's two copies
#else
  const char* tiled = "avx512";  // the build target itself has AVX-512: one copy
#endif
  return {
      {"attention_materialized", "attention with probabilities (training, short T)", p.avx512 ? "avx512" : "portable"},
      {"attention_tiled", "tiled attention (long T, eval, prefill)", tiled},
      {"to_bf16", "fp32 -> bf16 conversion", p.avx512_bf16 ? "avx512_bf16" : "scalar"},
      {"matmul", "matrix products", "onednn " + mb.version + " " + mb.isa},
  };
}

}  // namespace stretch
