// stretch info [--json]: what this binary was built for, what this CPU has, and which instruction-set path each
// kernel with several takes here (core/cpu.hpp), so a figure can be read beside its host and a cluster's hosts
// compared before an mpirun.
#include <omp.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli/commands.hpp"
#include "core/cpu.hpp"
#include "kernels/matmul.hpp"
#include "kernels/paths.hpp"

namespace stretch::cli {

namespace {

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : " ") + x;
  return s;
}

nlohmann::ordered_json describe() {
  const CpuFeatures& f = cpu_features();
  const CpuPaths& p = cpu_paths();
  nlohmann::ordered_json j;
  j["version"] = kVersion;
  j["cpu"] = cpu_model_name();
  j["build_target"] = build_target();
  j["build_target_features"] = build_target_features();
  j["cpu_features"] = {{"avx2", f.avx2}, {"fma", f.fma}, {"avx512", f.avx512}, {"avx512_bf16", f.avx512_bf16},
                       {"amx", f.amx}};
  j["max_isa"] = p.cap.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(p.cap);
  j["paths"] = nlohmann::ordered_json::object();
  for (const KernelPath& k : kernel_paths()) j["paths"][k.kernel] = k.path;
  j["precision_bf16"] = matmul_backend().bf16;
  j["threads"] = omp_get_max_threads();
  return j;
}

}  // namespace

Runner add_info(CLI::App& app) {
  auto json = std::make_shared<bool>(false);
  app.add_flag("--json", *json, "One JSON object instead of the table");
  return [json]() {
    const auto j = describe();
    if (*json) {
      std::printf("%s\n", j.dump().c_str());
      return 0;
    }
    const auto yes = [](bool b) { return b ? "yes" : "no"; };
    const auto& f = j["cpu_features"];
    std::printf("stretch %s\n", j["version"].get<std::string>().c_str());
    std::printf("cpu            %s\n", j["cpu"].get<std::string>().c_str());
    std::printf("build target   %s (assumes: %s)\n", build_target(), join(build_target_features()).c_str());
    std::printf("cpu features   avx2 %s, fma %s, avx512 (f bw dq vl) %s, avx512_bf16 %s, amx %s\n",
                yes(f["avx2"].get<bool>()), yes(f["fma"].get<bool>()), yes(f["avx512"].get<bool>()),
                yes(f["avx512_bf16"].get<bool>()), yes(f["amx"].get<bool>()));
    std::printf("STRETCH_MAX_ISA %s\n", j["max_isa"].is_null() ? "(unset)" : j["max_isa"].get<std::string>().c_str());
    const char* label = "paths";
    for (const KernelPath& k : kernel_paths()) {
      std::printf("%-15s%s: %s\n", label, k.what, k.path.c_str());
      label = "";
    }
    std::printf("--precision bf16 %s\n", j["precision_bf16"].get<bool>()
                                             ? "available"
                                             : "refused (oneDNN has no bf16 matrix products on this CPU)");
    std::printf("threads        %d (OpenMP)\n", j["threads"].get<int>());
    return 0;
  };
}

}  // namespace stretch::cli
