// Fuzz target: llama2.c checkpoints (io/llama2c.hpp parse_llama2c), then the conversion to our llama model
// (model/llama2c_convert.hpp) for files the reader accepts. Input: a whole .bin file.
#include <cstdint>
#include <string>

#include "fuzz_util.hpp"
#include "io/llama2c.hpp"
#include "model/llama2c_convert.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace stretch;
  fuzz::expect_clean([&] {
    const Llama2cWeights w = parse_llama2c(std::string(reinterpret_cast<const char*>(data), size), "fuzz.bin");
    (void)llama2c_file_bytes(w.config);
    fuzz::expect_clean([&] { (void)model_from_llama2c(w); });
  });
  return 0;
}
