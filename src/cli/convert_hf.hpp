// The Hugging Face side of `stretch import` / `stretch export` (cli/convert.cpp dispatches by format).
#pragma once
#include <filesystem>
#include <functional>
#include <string>

#include "io/tokenizer.hpp"
#include "model/hf_convert.hpp"

namespace stretch::cli {

// import hf DIR [--tokenizer TOKDIR] --out RUN
int import_hf(const std::filesystem::path& dir, const std::filesystem::path& tokenizer_dir,
              const std::filesystem::path& out);
// export hf CHECKPOINT --out DIR [--as auto|llama|mistral|qwen2|gpt2|mpt|bloom] [--dtype f32|f16|bf16]
//                               [--shard-size 0|2GB|...]
int export_hf(const std::filesystem::path& checkpoint, const std::filesystem::path& out, const std::string& as,
              const std::string& dtype, const std::string& shard_size);

// UsageError naming `flag` when `out` exists and is not an empty folder.
void check_new_folder(const std::filesystem::path& out, const std::string& flag);
// Creates the folder `out` whole or not at all: `fill` writes into a temporary folder beside it, which is renamed
// into place (removed on failure). UsageError naming `flag` when `out` exists and is not empty.
void write_new_folder(const std::filesystem::path& out, const std::string& flag,
                      const std::function<void(const std::filesystem::path&)>& fill);
// A Hugging Face folder for `model` (config.json, weights, tokenizer files, generation_config.json), written whole.
void write_hf_folder(const Transformer& model, const Tokenizer& tok, const std::filesystem::path& out,
                     const std::string& flag, HfExportOptions o);

}  // namespace stretch::cli
