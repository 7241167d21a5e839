// Fuzz target: safetensors files (io/safetensors.hpp), header and tensors. Input: a whole .safetensors file.
#include <cstdint>
#include <string>
#include <vector>

#include "fuzz_util.hpp"
#include "io/safetensors.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace stretch;
  fuzz::expect_clean([&] {
    const auto r = SafetensorsReader::parse(std::string(reinterpret_cast<const char*>(data), size), "fuzz.safetensors");
    for (const auto& [k, v] : r.metadata()) (void)k.size(), (void)v.size();
    for (const auto& t : r.tensors()) {
      (void)t.numel();
      (void)r.entry(t.name);
      fuzz::expect_clean([&] { (void)r.read_f32(t.name); });
      fuzz::expect_clean([&] { (void)r.read_f64(t.name); });
      fuzz::expect_clean([&] { (void)r.read_i32(t.name); });
      fuzz::expect_clean([&] {
        std::vector<float> dst(static_cast<std::size_t>(t.numel()) + 1);
        r.read_into(t.name, t.shape, dst.data());
      });
    }
  });
  return 0;
}
