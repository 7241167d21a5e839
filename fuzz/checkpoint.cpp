// Fuzz target: a checkpoint's config.json (run/checkpoint.hpp read_checkpoint_meta -> ModelConfig::from_json).
// Input: the config.json file; it is written into a scratch checkpoint folder beside an empty model.safetensors
// (read_checkpoint_meta reads only the JSON). A config that is accepted must survive to_json -> from_json.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "fuzz_util.hpp"
#include "run/checkpoint.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace stretch;
  static const bool init = [] {
    std::filesystem::create_directories(fuzz::scratch_dir() / "ckpt");
    fuzz::scratch_file("ckpt/model.safetensors", "");
    return true;
  }();
  (void)init;
  fuzz::scratch_file("ckpt/config.json", std::string_view(reinterpret_cast<const char*>(data), size));
  fuzz::expect_clean([&] {
    const CheckpointMeta meta = read_checkpoint_meta(fuzz::scratch_dir() / "ckpt");
    // what was accepted serializes to a config that is accepted again, unchanged
    const ModelConfig again = ModelConfig::from_json(meta.model.to_json(), "round trip");
    if (again.to_json() != meta.model.to_json()) std::abort();
  });
  return 0;
}
