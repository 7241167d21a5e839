// Fuzz target: GGUF files (io/gguf.hpp GgufReader::parse), every metadata value and tensor, then the import of
// files the reader accepts as a model (model/gguf_convert.hpp model_from_gguf). Input: a whole .gguf file.
#include <cstdint>
#include <string>

#include "fuzz_util.hpp"
#include "io/gguf.hpp"
#include "model/gguf_convert.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace stretch;
  fuzz::expect_clean([&] {
    const GgufReader r = GgufReader::parse(std::string(reinterpret_cast<const char*>(data), size), "fuzz.gguf");
    for (const auto& kv : r.metadata()) {
      (void)kv.value.describe();
      (void)kv.value.type_name();
      fuzz::expect_clean([&] { (void)r.get_uint(kv.key); });
      fuzz::expect_clean([&] { (void)r.get_int(kv.key); });
      fuzz::expect_clean([&] { (void)r.get_float(kv.key); });
      fuzz::expect_clean([&] { (void)r.get_string_array(kv.key); });
    }
    for (const auto& t : r.tensors()) {
      (void)r.raw(t.name);
      fuzz::expect_clean([&] { (void)r.read_f32(t.name); });
    }
    fuzz::expect_clean([&] { (void)model_from_gguf(r); });
  });
  return 0;
}
