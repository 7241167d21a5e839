// core/cpu.hpp's detection (cpuid and XCR0, decoded by hand) against the kernel's view of the same CPU: the flags
// line of /proc/cpuinfo, which Linux fills from cpuid and clears for what the OS does not enable.
#include <gtest/gtest.h>

#include <fstream>
#include <set>
#include <sstream>
#include <string>

#include "core/cpu.hpp"

namespace stretch {
namespace {

std::set<std::string> proc_flags() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("flags", 0) == 0) {
      std::istringstream words(line.substr(line.find(':') + 1));
      std::set<std::string> s;
      for (std::string w; words >> w;) s.insert(w);
      return s;
    }
  return {};
}

TEST(Cpu, DetectionAgreesWithTheKernelsFlags) {
  const auto flags = proc_flags();
  if (flags.empty()) GTEST_SKIP() << "no flags line in /proc/cpuinfo here";
  const auto has = [&](const char* f) { return flags.count(f) == 1; };
  const CpuFeatures& c = cpu_features();
  EXPECT_EQ(c.avx2, has("avx2"));
  EXPECT_EQ(c.fma, has("fma"));
  EXPECT_EQ(c.avx512, has("avx2") && has("fma") && has("avx512f") && has("avx512bw") && has("avx512dq") &&
                          has("avx512vl"));
  EXPECT_EQ(c.avx512_bf16, c.avx512 && has("avx512_bf16"));
  EXPECT_EQ(c.amx, has("amx_tile") && has("amx_bf16"));
}

TEST(Cpu, PathsNeverExceedTheCpu) {
  const CpuFeatures& c = cpu_features();
  const CpuPaths& p = cpu_paths();
  EXPECT_TRUE(!p.avx512 || c.avx512);
  EXPECT_TRUE(!p.avx512_bf16 || (c.avx512_bf16 && p.avx512));
  if (p.cap.empty()) {  // uncapped: the paths are the CPU's
    EXPECT_EQ(p.avx512, c.avx512);
    EXPECT_EQ(p.avx512_bf16, c.avx512_bf16);
  }
}

TEST(Cpu, TheBuildTargetsFeaturesAreNamedAndPresentHere) {
  const auto f = build_target_features();
  const std::set<std::string> s(f.begin(), f.end());
  EXPECT_EQ(s.size(), f.size()) << "a feature named twice";
  EXPECT_EQ(s.count("avx2"), 1u) << "every build target of stretch assumes AVX2";
  // this test runs, so the CPU has everything the build assumed: the AVX-512 names agree with the detection
  EXPECT_TRUE(!s.count("avx512f") || cpu_features().avx512);
  EXPECT_TRUE(!s.count("avx512bf16") || cpu_features().avx512_bf16);
  EXPECT_FALSE(cpu_model_name().empty());
}

}  // namespace
}  // namespace stretch
