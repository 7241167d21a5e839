// What this CPU can run, detected once at run time, and which instruction-set paths of the kernels this process
// takes. One binary runs on every x86-64 host from the build's baseline up (docs/PERFORMANCE.md, "One portable
// binary"):
//
//   build target   -march=x86-64-v3 (AVX2, FMA, BMI2: the default, STRETCH_NATIVE=OFF) or -march=native
//                  (STRETCH_NATIVE=ON: the build host's instructions everywhere, the fastest on that host, and
//                  refused with a message on a CPU that lacks any of them: cli/cpu_guard.cpp)
//   kernel paths   the hand-written AVX-512 / AVX-512 BF16 code (kernels/attention_fast.hpp, kernels/bf16.cpp,
//                  bench/bench_peak.cpp) is compiled for its instructions with a function target attribute
//                  (STRETCH_TARGET_AVX512, STRETCH_TARGET_AVX512_BF16) whatever the build target, and called only
//                  when cpu_paths() says this CPU has them; otherwise the portable code runs (the reference kernels).
//
// The attribute, not a translation unit built with -mavx512f: the AVX-512 attention path is a template over the
// position-bias functor, instantiated where the model calls it, and a translation unit built with -mavx512f would
// also hold AVX-512 copies of every inline function it uses (std::vector, std::max ...), which the linker may pick
// for the whole program. Functions with the attribute carry it alone; what they call keeps the baseline.
//
//   STRETCH_MAX_ISA=avx2 | avx512 | avx512_bf16   caps the paths, like oneDNN's ONEDNN_MAX_CPU_ISA (avx2: the
//                                                  portable kernels only), to run or test what a CPU without
//                                                  AVX-512 gets. Any other value throws ConfigError naming it.
#pragma once
#include <string>
#include <vector>

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define STRETCH_X86 1
#define STRETCH_TARGET_AVX512 __attribute__((target("avx2,fma,avx512f,avx512bw,avx512dq,avx512vl")))
#define STRETCH_TARGET_AVX512_BF16 \
  __attribute__((target("avx2,fma,avx512f,avx512bw,avx512dq,avx512vl,avx512bf16")))
#else
#define STRETCH_X86 0
#define STRETCH_TARGET_AVX512
#define STRETCH_TARGET_AVX512_BF16
#endif

namespace stretch {

// The CPU's features that the kernels choose on (cpuid and the OS's saved register state, via libgcc).
struct CpuFeatures {
  bool avx2 = false, fma = false;
  bool avx512 = false;       // AVX-512 F + BW + DQ + VL (oneDNN's avx512_core)
  bool avx512_bf16 = false;  // and AVX-512 BF16 (vcvtne2ps2bf16, vdpbf16ps)
  bool amx = false;          // AMX tiles with bf16 (oneDNN uses them; no kernel of ours does)
};

// The paths this process takes: the CPU's features capped by STRETCH_MAX_ISA.
struct CpuPaths {
  bool avx512 = false;       // kernels/attention_fast.hpp (register-blocked attention with probabilities)
  bool avx512_bf16 = false;  // kernels/bf16.cpp (vector fp32 -> bf16 conversion)
  std::string cap;           // the STRETCH_MAX_ISA value, "" when unset
};

const CpuFeatures& cpu_features();
// Detected and capped on the first call (thread-safe); throws ConfigError for a bad STRETCH_MAX_ISA, so main()
// calls it before any work.
const CpuPaths& cpu_paths();

// "model name" of /proc/cpuinfo ("unknown" where there is none).
std::string cpu_model_name();

// The build's target ("x86-64-v3" or "native") and the instruction-set extensions it was compiled to assume
// (names as GCC's __builtin_cpu_supports spells them), for `stretch info` and cli/cpu_guard.cpp.
const char* build_target();
std::vector<std::string> build_target_features();

namespace detail {
// build_target_features() as data, ending with nullptr: read before main() by cli/cpu_guard.cpp, which must not
// call code compiled for the build target.
extern const char* const kBuildTargetFeatures[];
extern const char* const kBuildTarget;  // build_target()
}  // namespace detail

}  // namespace stretch
