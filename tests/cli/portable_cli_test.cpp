// One portable binary (core/cpu.hpp, docs/PERFORMANCE.md "One portable binary"): the build holds no AVX-512
// instruction outside the functions chosen at run time, `stretch info` says which paths this CPU gets, the
// STRETCH_MAX_ISA cap takes the portable paths with the same results to rounding, a CPU without one of the build
// target's extensions is refused before main(), and --precision bf16 is refused where oneDNN has no bf16 products.
#include <gtest/gtest.h>

#include <array>
#include <cctype>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "core/cpu.hpp"
#include "test_util.hpp"

namespace stretch {
namespace {
namespace fs = std::filesystem;
using test::TempDir;

std::string q(const fs::path& p) { return test::shell_quote(p); }

// The stretch binary with environment assignments `env` ("A=1 B=2") before it.
test::RunResult run_with(const std::string& env, const std::string& args) {
  return test::run_shell(env + " " + std::string(STRETCH_BINARY) + " " + args);
}

nlohmann::json info(const std::string& env) {
  const auto r = run_with(env, "info --json");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  return nlohmann::json::parse(r.output);
}

TEST(Portable, InfoSaysTheBuildTargetTheCpuAndThePathsItGets) {
  const auto j = info("");
#ifdef STRETCH_BUILD_NATIVE
  EXPECT_EQ(j["build_target"], "native");
#else
  EXPECT_EQ(j["build_target"], "x86-64-v3");
  const auto feats = j["build_target_features"].get<std::vector<std::string>>();
  EXPECT_EQ(std::set<std::string>(feats.begin(), feats.end()).count("avx2"), 1u);
  for (const auto& f : feats) EXPECT_EQ(f.rfind("avx512", 0), std::string::npos) << "the portable build assumes " << f;
#endif
  const CpuFeatures& c = cpu_features();  // this process's detection: the same CPU
  EXPECT_EQ(j["cpu_features"]["avx512"], c.avx512);
  EXPECT_EQ(j["cpu_features"]["avx512_bf16"], c.avx512_bf16);
  EXPECT_TRUE(j["max_isa"].is_null());
  EXPECT_EQ(j["paths"]["attention_materialized"], c.avx512 ? "avx512" : "portable");
  EXPECT_EQ(j["paths"]["to_bf16"], c.avx512_bf16 ? "avx512_bf16" : "scalar");
#ifndef STRETCH_BUILD_NATIVE
  EXPECT_EQ(j["paths"]["attention_tiled"], c.avx512 ? "avx512" : "avx2");
#endif
  // the table form says the same
  const auto t = run_with("", "info");
  EXPECT_EQ(t.exit_code, 0) << t.output;
  EXPECT_NE(t.output.find(std::string("build target   ") + j["build_target"].get<std::string>()), std::string::npos)
      << t.output;

  const auto capped = info("STRETCH_MAX_ISA=avx2");
  EXPECT_EQ(capped["max_isa"], "avx2");
  EXPECT_EQ(capped["paths"]["attention_materialized"], "portable");
  EXPECT_EQ(capped["paths"]["to_bf16"], "scalar");
#ifndef STRETCH_BUILD_NATIVE
  EXPECT_EQ(capped["paths"]["attention_tiled"], "avx2");
#endif
  const auto mid = info("STRETCH_MAX_ISA=avx512");
  EXPECT_EQ(mid["paths"]["attention_materialized"], c.avx512 ? "avx512" : "portable");
  EXPECT_EQ(mid["paths"]["to_bf16"], "scalar");
}

TEST(Portable, ABadIsaCapIsRefusedNamingTheVariable) {
  const auto r = run_with("STRETCH_MAX_ISA=avx1024", "info");
  EXPECT_EQ(r.exit_code, 4) << r.output;
  EXPECT_NE(r.output.find("STRETCH_MAX_ISA"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("avx1024"), std::string::npos) << r.output;
}

// cli/cpu_guard.cpp, made to see one of the build target's extensions as missing: the process stops before main()
// with a message naming it, and a train command creates nothing.
TEST(Portable, ACpuWithoutAnExtensionTheBuildAssumesIsRefusedBeforeMain) {
  const auto feats = build_target_features();
  ASSERT_FALSE(feats.empty());
  TempDir dir;
  test::write_text(dir / "c.txt", test::generated_text(5000));
  const std::string missing = feats.back();
  const auto r = run_with("STRETCH_FAKE_MISSING_FEATURE=" + missing,
                          "train --text " + q(dir / "c.txt") + " --out " + q(dir / "run") + " --steps 1");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("this CPU cannot run this build"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("lacks " + missing + "."), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(dir / "run"));
  // and a name the build does not assume changes nothing
  const auto ok = run_with("STRETCH_FAKE_MISSING_FEATURE=avx512vp2intersect", "info");
  EXPECT_EQ(ok.exit_code, 0) << ok.output;
}

TEST(Portable, Bf16PrecisionIsRefusedUpFrontWhereOneDnnHasNoBf16Products) {
  TempDir dir;
  test::write_text(dir / "c.txt", test::generated_text(5000));
  // oneDNN's own cap makes this CPU look like an AVX2 one to it
  const auto r = run_with("ONEDNN_MAX_CPU_ISA=AVX2", "train --text " + q(dir / "c.txt") + " --out " + q(dir / "run") +
                                                          " --steps 1 --precision bf16");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("--precision"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("runs avx2"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(dir / "run"));
  const auto i = run_with("ONEDNN_MAX_CPU_ISA=AVX2", "info --json");
  EXPECT_EQ(nlohmann::json::parse(i.output)["precision_bf16"], false);
  // and weights kept in bf16 for inference, before any output
  const auto t = run_with("", "train --text " + q(dir / "c.txt") + " --out " + q(dir / "ok") +
                                  " --layers 1 --width 16 --heads 2 --length 16 --batch 2 --steps 1 --quiet");
  ASSERT_EQ(t.exit_code, 0) << t.output;
  for (const std::string& cmd : {"eval " + q(dir / "ok") + " --text " + q(dir / "c.txt") + " --lengths 16",
                                "generate " + q(dir / "ok") + " -n 4", "passkey " + q(dir / "ok") + " --lengths 300"}) {
    const auto e = run_with("ONEDNN_MAX_CPU_ISA=AVX2", cmd + " --precision bf16");
    EXPECT_EQ(e.exit_code, 2) << cmd << ": " << e.output;
    // nothing before the error (a blank line aside): no table header, no generated text
    EXPECT_EQ(e.output.find("stretch: error: --precision: bf16 needs"), e.output.find_first_not_of('\n'))
        << cmd << ": " << e.output;
  }
}

// Training with the portable kernels (STRETCH_MAX_ISA=avx2) against the paths this CPU gets: the same losses to
// float rounding, and, on an AVX-512 CPU, not the same bits (the cap did change the path; optimized builds only).
TEST(Portable, TheIsaCapTrainsTheSameModelToRounding) {
  TempDir dir;
  test::write_text(dir / "c.txt", test::generated_text(60000));
  auto train = [&](const std::string& env, const std::string& name) {
    const auto r = run_with(env, "train --text " + q(dir / "c.txt") + " --out " + q(dir / name) + " --cache-dir " +
                                     q(dir / "cache") +
                                     " --position alibi --layers 2 --width 64 --heads 2 --length 64 --batch 4 "
                                     "--steps 12 --warmup 2 --log-interval 1 --attention materialized --quiet");
    EXPECT_EQ(r.exit_code, 0) << r.output;
    std::vector<double> losses;
    std::istringstream in(test::read_text(dir / name / "metrics.jsonl"));
    for (std::string line; std::getline(in, line);) {
      const auto j = nlohmann::json::parse(line);
      if (j.contains("loss")) losses.push_back(j["loss"].get<double>());
      if (j.contains("val_loss")) losses.push_back(j["val_loss"].get<double>());
    }
    return losses;
  };
  const auto base = train("", "a"), capped = train("STRETCH_MAX_ISA=avx2", "b");
  ASSERT_EQ(base.size(), capped.size());
  ASSERT_GE(base.size(), 12u);
  bool same_bits = true;
  for (std::size_t i = 0; i < base.size(); i++) {
    EXPECT_NEAR(base[i], capped[i], 1e-5 * std::abs(base[i])) << "record " << i;
    same_bits = same_bits && base[i] == capped[i];
  }
#ifndef __SANITIZE_ADDRESS__  // (sanitized build: see AttentionFast.DispatchFollowsTheCpuPaths)
  if (cpu_paths().avx512) {
    EXPECT_FALSE(same_bits) << "STRETCH_MAX_ISA=avx2 did not change the attention path";
  }
#else
  (void)same_bits;
#endif
}

// The portable build's machine code: every instruction that needs AVX-512 (a zmm or mask register, xmm16-31 /
// ymm16-31, an EVEX-only mnemonic) sits in a function that is only called after the CPU check: the register-blocked
// attention (stretch::attention_fast), the tiled attention's AVX-512 copy (stretch::tiled_avx512) and the bf16
// conversion (to_bf16_avx512_bf16). objdump is binutils', which g++ needs.
[[maybe_unused]] bool needs_avx512(const std::string& line) {
  const auto tab = line.rfind('\t');
  if (tab == std::string::npos) return false;
  const std::string insn = line.substr(tab + 1);
  if (insn.find("%zmm") != std::string::npos || insn.find("{%k") != std::string::npos) return true;
  for (std::size_t at = insn.find('%'); at != std::string::npos; at = insn.find('%', at + 1)) {
    const std::string reg = insn.substr(at + 1, 5);
    if (reg.size() >= 2 && reg[0] == 'k' && reg[1] >= '0' && reg[1] <= '7' &&
        (reg.size() == 2 || !std::isalnum(static_cast<unsigned char>(reg[2]))))
      return true;  // a mask register
    if ((reg.rfind("xmm", 0) == 0 || reg.rfind("ymm", 0) == 0) && reg.size() == 5 && std::isdigit(reg[3]) &&
        std::isdigit(reg[4]) && std::stoi(reg.substr(3)) >= 16)
      return true;  // xmm16-31 / ymm16-31: EVEX only
  }
  static const char* const kEvexOnly[] = {"vpternlog", "vpermt2", "vpermi2", "vcvtne2ps2bf16", "vcvtneps2bf16",
                                          "vdpbf16ps", "kmov",    "kortest", "vrndscale",      "vscalef",
                                          "vpcompress", "vpexpand", "vblendm", "tileload",     "tdpbf16ps"};
  for (const char* m : kEvexOnly)
    if (insn.rfind(m, 0) == 0) return true;
  return false;
}

TEST(Portable, TheBinaryHoldsAvx512OnlyInTheFunctionsChosenAtRunTime) {
#ifdef STRETCH_BUILD_NATIVE
  GTEST_SKIP() << "a native build (STRETCH_NATIVE=ON) may use this CPU's instructions anywhere";
#else
  const std::string cmd = "objdump -d --no-show-raw-insn -C " + std::string(STRETCH_BINARY) + " 2>&1";
  FILE* p = ::popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::array<char, 8192> buf;
  std::string function, leftover;
  std::set<std::string> offenders;
  long allowed_lines = 0, lines = 0;
  auto on_line = [&](const std::string& line) {
    lines++;
    // "0000000000401000 <name>:" starts a function
    const auto lt = line.find(" <");
    if (!line.empty() && line.back() == ':' && lt != std::string::npos && line.find('\t') == std::string::npos) {
      function = line.substr(lt + 2, line.size() - lt - 4);
      return;
    }
    if (line.find('\t') == std::string::npos || !needs_avx512(line)) return;
    if (function.find("stretch::attention_fast::") != std::string::npos ||
        function.find("stretch::tiled_avx512::") != std::string::npos ||
        function.find("stretch::matvec_avx512::") != std::string::npos ||
        function.find("to_bf16_avx512_bf16") != std::string::npos)
      allowed_lines++;
    else
      offenders.insert(function);
  };
  std::size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) {
    leftover.append(buf.data(), n);
    std::size_t start = 0;
    for (std::size_t nl; (nl = leftover.find('\n', start)) != std::string::npos; start = nl + 1)
      on_line(leftover.substr(start, nl - start));
    leftover.erase(0, start);
  }
  EXPECT_EQ(::pclose(p), 0) << "objdump failed";
  EXPECT_GT(lines, 100000) << "objdump printed too little to be the disassembly";
  EXPECT_GT(allowed_lines, 100) << "no AVX-512 code found even in the dispatched kernels: is the pattern right?";
  std::string list;
  for (const auto& f : offenders) list += "\n  " + f.substr(0, 300);
  EXPECT_TRUE(offenders.empty()) << offenders.size() << " functions outside the dispatched kernels use AVX-512:"
                                 << list;
#endif
}

}  // namespace
}  // namespace stretch
