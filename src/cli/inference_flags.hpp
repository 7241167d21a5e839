// Flags shared by the inference commands (eval, passkey, generate): how the weights are kept.
#pragma once
#include <CLI/CLI.hpp>

#include "cli/flag_checks.hpp"
#include "model/transformer.hpp"

namespace stretch::cli {

// --precision fp32 | bf16: the matrices in fp32, or in bfloat16 only (half the memory, bf16 products with fp32
// accumulation; model/transformer.hpp WeightStorage). Refused up front on a CPU without bf16 products.
inline void add_weight_precision_flag(CLI::App& app, WeightStorage& s) {
  app.add_option("--precision", s,
                 "Weights: fp32 | bf16 (the matrices kept in bfloat16 only: half the memory, bf16 products with fp32 "
                 "accumulation; norms, biases, attention and softmax stay fp32)")
      ->transform(one_of<WeightStorage>({{"fp32", WeightStorage::fp32}, {"bf16", WeightStorage::bf16}}))
      ->default_str("fp32");
}

inline const char* to_string(WeightStorage s) { return s == WeightStorage::bf16 ? "bf16" : "fp32"; }

}  // namespace stretch::cli
