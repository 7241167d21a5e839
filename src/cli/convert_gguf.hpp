// The GGUF side of `stretch export` shared with `stretch lora extract --format gguf`.
#pragma once
#include <cstdint>
#include <string>

namespace stretch::cli {

// --type f32 | f16 | bf16 | q8_0 -> ggml_type (io/gguf.hpp); UsageError naming --type otherwise.
std::uint32_t parse_ggml_type(const std::string& t);

}  // namespace stretch::cli
