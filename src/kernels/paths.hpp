// Which instruction-set path each kernel with several takes in this process: from core/cpu.hpp's cpu_paths(), the
// build target and oneDNN's own dispatch. One list for `stretch info` and for the ranks of a training job, which
// must compute alike (run/trainer.cpp).
#pragma once
#include <string>
#include <vector>

namespace stretch {

struct KernelPath {
  const char* kernel;  // "attention_materialized", "attention_tiled", "to_bf16", "matmul"
  const char* what;    // what it is, for people
  std::string path;    // "avx512", "avx2", "portable", "scalar", "onednn 2.6.3 avx512_core_bf16", ...
};

std::vector<KernelPath> kernel_paths();

}  // namespace stretch
