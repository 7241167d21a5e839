// Flags shared by the inference commands (eval, passkey, generate): how the weights and the key/value cache are kept.
#pragma once
#include <CLI/CLI.hpp>

#include "cli/flag_checks.hpp"
#include "core/error.hpp"
#include "kernels/matmul.hpp"
#include "model/decoder.hpp"
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

// --kv-type f32 | bf16 | f16: the decoder's key/value cache (model/decoder.hpp KvType), for the commands that decode.
inline void add_kv_type_flag(CLI::App& app, KvType& t) {
  app.add_option("--kv-type", t,
                 "Key/value cache: f32 | bf16 | f16 (16-bit: half the cache's memory and of what each decoded token "
                 "reads; keys and values rounded once, attention in fp32)")
      ->transform(one_of<KvType>({{"f32", KvType::f32}, {"bf16", KvType::bf16}, {"f16", KvType::f16}}))
      ->default_str("f32");
}

// Before any output: bf16 weights on a CPU without bf16 products are refused as a bad flag value (exit 2), as train
// refuses --precision bf16.
inline void check_weight_precision(WeightStorage s) {
  if (s != WeightStorage::bf16) return;
  if (const std::string why = bf16_products_missing(); !why.empty()) throw UsageError("`precision`: " + why);
}

}  // namespace stretch::cli
