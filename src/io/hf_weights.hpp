// The weights of a Hugging Face model folder (transformers' save_pretrained layout):
//   model.safetensors                        one file, or
//   model.safetensors.index.json + shards    {"metadata": {...}, "weight_map": {"tensor name": "shard file", ...}}
//                                            with the shards (model-00001-of-00002.safetensors, ...) beside it
// Tensors may be F32, F16 or BF16 (converted to float on read); other dtypes are refused when read.
//
// Reading checks, before any tensor is touched, that: every shard the index names exists in the folder and is a
// plain file name (no path separators), every tensor the index maps is in the shard it names, and every tensor of
// a shard is in the index under that shard. Each problem is an InputError naming the file (and the key). A folder
// holding only pytorch_model.bin (pickle) is refused with a hint: stretch reads safetensors only (pickles can run
// code when loaded).
//
// Writing: one model.safetensors, or shards of at most `max_shard_bytes` each (tensor order kept, a tensor never
// split) named model-0000i-of-0000n.safetensors plus the index, as transformers writes them; every file atomic.
#pragma once
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "io/safetensors.hpp"

namespace stretch {

class HfWeights {
 public:
  // InputError naming the folder or file for anything missing or inconsistent (see above).
  static HfWeights open(const std::filesystem::path& dir);

  bool has(const std::string& name) const { return where_.count(name) != 0; }
  // InputError naming the folder when absent.
  const TensorEntry& entry(const std::string& name) const;
  // Converts the tensor to float into dst after checking its shape (InputError naming the shard file, the tensor,
  // the expected and the found shape), dropping the file's pages from memory as it goes (the shards are mapped:
  // an import peaks at about the float weights, not weights + file).
  void read_into(const std::string& name, const std::vector<std::int64_t>& shape, float* dst) const;
  std::vector<float> read(const std::string& name) const;
  // Every tensor name, sorted.
  std::vector<std::string> names() const;
  // The file holding `name` (for messages).
  std::string file_of(const std::string& name) const;
  std::size_t shard_count() const { return shards_.size(); }

 private:
  std::filesystem::path dir_;
  std::vector<std::unique_ptr<SafetensorsReader>> shards_;
  std::map<std::string, std::size_t> where_;  // tensor -> shard index
};

// One tensor to write: its name, shape, dtype in the file and its float values (converted on write).
struct HfTensorOut {
  std::string name;
  std::vector<std::int64_t> shape;
  std::vector<float> values;
};

// Writes `tensors` into dir as model.safetensors (max_shard_bytes == 0 or everything fits) or as shards plus
// model.safetensors.index.json. dtype F32, F16 or BF16 (ConfigError otherwise). IoError naming the file on failure.
void write_hf_weights(const std::filesystem::path& dir, const std::vector<HfTensorOut>& tensors, DType dtype,
                      std::size_t max_shard_bytes = 0);

}  // namespace stretch
