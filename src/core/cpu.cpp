#include "core/cpu.hpp"

#include <cstdlib>
#include <fstream>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

#include "core/error.hpp"

namespace stretch {

namespace detail {
// The extensions the compiler was told it may use everywhere (the predefined macros of the build's -march).
extern const char* const kBuildTargetFeatures[] = {
#ifdef __SSE4_2__
    "sse4.2",
#endif
#ifdef __POPCNT__
    "popcnt",
#endif
#ifdef __AVX__
    "avx",
#endif
#ifdef __AVX2__
    "avx2",
#endif
#ifdef __FMA__
    "fma",
#endif
#ifdef __BMI__
    "bmi",
#endif
#ifdef __BMI2__
    "bmi2",
#endif
#ifdef __AVX512F__
    "avx512f",
#endif
#ifdef __AVX512BW__
    "avx512bw",
#endif
#ifdef __AVX512DQ__
    "avx512dq",
#endif
#ifdef __AVX512VL__
    "avx512vl",
#endif
#ifdef __AVX512CD__
    "avx512cd",
#endif
#ifdef __AVX512VNNI__
    "avx512vnni",
#endif
#ifdef __AVX512IFMA__
    "avx512ifma",
#endif
#ifdef __AVX512VBMI__
    "avx512vbmi",
#endif
#ifdef __AVX512VBMI2__
    "avx512vbmi2",
#endif
#ifdef __AVX512BITALG__
    "avx512bitalg",
#endif
#ifdef __AVX512VPOPCNTDQ__
    "avx512vpopcntdq",
#endif
#ifdef __AVX512BF16__
    "avx512bf16",
#endif
#ifdef __AVX512FP16__
    "avx512fp16",
#endif
#ifdef __AMXTILE__
    "amx-tile",
#endif
#ifdef __AMXBF16__
    "amx-bf16",
#endif
#ifdef __AMXINT8__
    "amx-int8",
#endif
    nullptr};

#ifdef STRETCH_BUILD_NATIVE
extern const char* const kBuildTarget = "native";
#else
extern const char* const kBuildTarget = "x86-64-v3";
#endif
}  // namespace detail

#if STRETCH_X86
namespace {

// cpuid (Intel SDM vol. 2A, CPUID) and the register state the OS saves (XCR0): a feature is usable only when both
// say so. (Not __builtin_cpu_supports: clang 14's knows no avx512bf16 or amx names, and the fuzz build uses clang.)
struct Cpuid {
  unsigned a = 0, b = 0, c = 0, d = 0;
};
Cpuid cpuid(unsigned leaf, unsigned sub) {
  Cpuid r;
  if (static_cast<unsigned>(__get_cpuid_max(0, nullptr)) < leaf) return r;
  __cpuid_count(leaf, sub, r.a, r.b, r.c, r.d);
  return r;
}
bool bit(unsigned v, int i) { return ((v >> i) & 1u) != 0; }

CpuFeatures detect() {
  CpuFeatures f;
  const Cpuid l1 = cpuid(1, 0);
  if (!bit(l1.c, 27)) return f;  // no OSXSAVE: the OS saves no vector state beyond SSE
  unsigned lo = 0, hi = 0;
  __asm__("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  const bool ymm_state = (lo & 0x6u) == 0x6u;                // XMM, YMM
  const bool zmm_state = ymm_state && (lo & 0xE0u) == 0xE0u;  // opmask, ZMM_Hi256, Hi16_ZMM
  const bool tile_state = ((lo >> 17) & 3u) == 3u;           // XTILECFG, XTILEDATA
  const Cpuid l7 = cpuid(7, 0), l71 = cpuid(7, 1);
  f.avx2 = ymm_state && bit(l1.c, 28) && bit(l7.b, 5);
  f.fma = ymm_state && bit(l1.c, 12);
  f.avx512 = zmm_state && f.avx2 && f.fma && bit(l7.b, 16) && bit(l7.b, 17) && bit(l7.b, 30) && bit(l7.b, 31);
  f.avx512_bf16 = f.avx512 && bit(l71.a, 5);
  f.amx = tile_state && bit(l7.d, 24) && bit(l7.d, 22);  // AMX-TILE, AMX-BF16
  (void)hi;
  return f;
}

}  // namespace
#endif

const CpuFeatures& cpu_features() {
#if STRETCH_X86
  static const CpuFeatures f = detect();
#else
  static const CpuFeatures f;
#endif
  return f;
}

namespace {

CpuPaths capped_paths() {
  const CpuFeatures& f = cpu_features();
  CpuPaths p;
  p.avx512 = f.avx512;
  p.avx512_bf16 = f.avx512_bf16;
  const char* cap = std::getenv("STRETCH_MAX_ISA");
  if (cap == nullptr || *cap == '\0') return p;
  p.cap = cap;
  if (p.cap == "avx2") {
    p.avx512 = p.avx512_bf16 = false;
  } else if (p.cap == "avx512") {
    p.avx512_bf16 = false;
  } else if (p.cap != "avx512_bf16") {
    throw ConfigError("environment variable STRETCH_MAX_ISA: expected avx2, avx512 or avx512_bf16 (the most "
                      "capable kernel paths to use), got '" + p.cap + "'");
  }
  return p;
}

}  // namespace

const CpuPaths& cpu_paths() {
  static const CpuPaths p = capped_paths();  // a throw leaves it uninitialised: the next call throws again
  return p;
}

std::string cpu_model_name() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) != 0) continue;
    const auto colon = line.find(':');
    if (colon == std::string::npos) break;
    const auto start = line.find_first_not_of(" \t", colon + 1);
    return start == std::string::npos ? std::string("unknown") : line.substr(start);
  }
  return "unknown";
}

const char* build_target() { return detail::kBuildTarget; }

std::vector<std::string> build_target_features() {
  std::vector<std::string> v;
  for (const char* const* f = detail::kBuildTargetFeatures; *f != nullptr; f++) v.emplace_back(*f);
  return v;
}

}  // namespace stretch
