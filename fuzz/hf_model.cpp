// Fuzz target: a Hugging Face model folder (model/hf_convert.hpp model_from_hf, io/hf_weights.hpp). Input: a
// little-endian u32 n, then n bytes of config.json, then model.safetensors.index.json (the rest; absent when empty).
// The folder also holds, written once, the weights of a tiny LlamaForCausalLM (vocab 16, width 8, 1 layer, 2 heads)
// as model.safetensors and as shard-1.safetensors, so a config and an index that agree with them import whole.
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <string_view>

#include "fuzz_util.hpp"
#include "model/hf_convert.hpp"

namespace {

const std::filesystem::path& weights_dir() {
  static const std::filesystem::path dir = [] {
    using namespace stretch;
    const auto d = fuzz::scratch_dir() / "weights";
    std::filesystem::create_directories(d);
    ModelConfig c;
    c.arch = Arch::llama;
    c.bias = false;
    c.position = PositionMethod::rope;
    c.vocab_size = 16;
    c.n_layer = 1;
    c.n_head = 2;
    c.n_embd = 8;
    c.mlp_hidden = 12;
    c.block_size = 32;
    Transformer m(c);
    m.init_weights(1);
    model_to_hf(m, d, {});
    std::filesystem::copy_file(d / "model.safetensors", d / "shard-1.safetensors");
    return d;
  }();
  return dir;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace stretch;
  const auto parts = fuzz::split_two(std::string_view(reinterpret_cast<const char*>(data), size));
  const auto& w = weights_dir();
  const auto dir = fuzz::scratch_dir() / "model";
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  std::filesystem::create_directories(dir);
  std::filesystem::copy_file(w / "shard-1.safetensors", dir / "shard-1.safetensors");
  if (parts.second.empty()) std::filesystem::copy_file(w / "model.safetensors", dir / "model.safetensors");
  fuzz::scratch_file("model/config.json", parts.first);
  if (!parts.second.empty()) fuzz::scratch_file("model/model.safetensors.index.json", parts.second);
  fuzz::expect_clean([&] {
    HfImport imp = model_from_hf(dir);
    if (imp.model->num_parameters() == 0) std::abort();
  });
  return 0;
}
