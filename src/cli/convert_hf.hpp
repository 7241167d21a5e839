// The Hugging Face side of `stretch import` / `stretch export` (cli/convert.cpp dispatches by format).
#pragma once
#include <filesystem>
#include <string>

namespace stretch::cli {

// import hf DIR [--tokenizer TOKDIR] --out RUN
int import_hf(const std::filesystem::path& dir, const std::filesystem::path& tokenizer_dir,
              const std::filesystem::path& out);
// export hf CHECKPOINT --out DIR [--as auto|llama|mistral|qwen2|gpt2|mpt|bloom] [--dtype f32|f16|bf16]
//                               [--shard-size 0|2GB|...]
int export_hf(const std::filesystem::path& checkpoint, const std::filesystem::path& out, const std::string& as,
              const std::string& dtype, const std::string& shard_size);

}  // namespace stretch::cli
