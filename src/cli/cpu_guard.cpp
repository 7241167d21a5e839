// Refuses to start on a CPU that lacks an instruction-set extension the build assumes everywhere (the x86-64-v3
// baseline, or the build host's with STRETCH_NATIVE=ON), with a message instead of an illegal-instruction crash
// somewhere later (for example on one host of an mpirun across several).
//
// It runs as an ELF constructor, before main() and before any static initialiser of ours, which may already use
// those extensions; so this file is compiled for plain x86-64 (CMakeLists.txt), calls nothing compiled for the
// build target (it only reads core/cpu.hpp's feature list, which is data), and is the one place outside main()
// that ends the process: main() could come too late to say why. It is linked into the stretch executable itself
// (CMakeLists.txt), as main.cpp is.
#include <unistd.h>

#include <cstdlib>
#include <cstring>

#include "core/cpu.hpp"

namespace stretch::cli {

namespace {

// __builtin_cpu_supports takes string literals only.
int supported(const char* f) {
#define STRETCH_FEATURE(name) \
  if (std::strcmp(f, name) == 0) return __builtin_cpu_supports(name);
#ifdef __clang__  // clang 14's __builtin_cpu_supports knows none of these: left unchecked (the product builds with g++)
#define STRETCH_FEATURE_GCC(name) \
  if (std::strcmp(f, name) == 0) return 1;
#else
#define STRETCH_FEATURE_GCC(name) STRETCH_FEATURE(name)
#endif
  STRETCH_FEATURE("sse4.2")
  STRETCH_FEATURE("popcnt")
  STRETCH_FEATURE("avx")
  STRETCH_FEATURE("avx2")
  STRETCH_FEATURE("fma")
  STRETCH_FEATURE("bmi")
  STRETCH_FEATURE("bmi2")
  STRETCH_FEATURE("avx512f")
  STRETCH_FEATURE("avx512bw")
  STRETCH_FEATURE("avx512dq")
  STRETCH_FEATURE("avx512vl")
  STRETCH_FEATURE("avx512cd")
  STRETCH_FEATURE("avx512vnni")
  STRETCH_FEATURE("avx512ifma")
  STRETCH_FEATURE("avx512vbmi")
  STRETCH_FEATURE("avx512vbmi2")
  STRETCH_FEATURE("avx512bitalg")
  STRETCH_FEATURE("avx512vpopcntdq")
  STRETCH_FEATURE_GCC("avx512bf16")
  STRETCH_FEATURE_GCC("avx512fp16")
  STRETCH_FEATURE_GCC("amx-tile")
  STRETCH_FEATURE_GCC("amx-bf16")
  STRETCH_FEATURE_GCC("amx-int8")
#undef STRETCH_FEATURE
#undef STRETCH_FEATURE_GCC
  return 0;  // a name this list does not know: treated as missing, so the list above must grow with cpu.cpp's
}

void say(const char* s) {
  for (std::size_t n = std::strlen(s); n > 0;) {
    const ssize_t w = ::write(2, s, n);
    if (w <= 0) return;
    s += w;
    n -= static_cast<std::size_t>(w);
  }
}

// (priority 101: before every constructor and static initialiser without one)
__attribute__((constructor(101))) void refuse_a_cpu_without_the_build_targets_extensions() {
  __builtin_cpu_init();
  bool any = false;
  // STRETCH_FAKE_MISSING_FEATURE names one feature to treat as absent, so the refusal can be tested on any CPU.
  const char* fake = ::getenv("STRETCH_FAKE_MISSING_FEATURE");
  for (const char* const* f = detail::kBuildTargetFeatures; *f != nullptr; f++) {
    if (supported(*f) && !(fake != nullptr && std::strcmp(fake, *f) == 0)) continue;
    if (!any) {
      say("stretch: this CPU cannot run this build: it was compiled for ");
      say(detail::kBuildTarget);
      say(" and the CPU lacks");
      any = true;
    }
    say(" ");
    say(*f);
  }
  if (!any) return;
  if (std::strcmp(detail::kBuildTarget, "native") == 0)
    say(".\nIt was built with STRETCH_NATIVE=ON for another CPU. Rebuild here (scripts/build.sh), or use the portable "
        "build (STRETCH_NATIVE=OFF, the default) on hosts that differ.\n");
  else
    say(".\nstretch needs an x86-64-v3 CPU (AVX2 and FMA: Intel Haswell, AMD Excavator or later).\n");
  ::_exit(1);
}

}  // namespace

}  // namespace stretch::cli
