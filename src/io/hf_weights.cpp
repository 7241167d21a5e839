// Hugging Face weight folders (see hf_weights.hpp).
#include "io/hf_weights.hpp"

#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <set>

#include "core/error.hpp"
#include "core/fs.hpp"
#include "core/numeric.hpp"
#include "core/shape.hpp"

namespace stretch {
namespace fs = std::filesystem;

namespace {

constexpr const char* kSingle = "model.safetensors";
constexpr const char* kIndex = "model.safetensors.index.json";

// A shard name from the index: a plain file name in the folder (no separators, not "." or "..").
bool plain_file_name(const std::string& n) {
  return !n.empty() && n != "." && n != ".." && n.find('/') == std::string::npos &&
         n.find('\\') == std::string::npos && n.find('\0') == std::string::npos;
}

}  // namespace

HfWeights HfWeights::open(const fs::path& dir) {
  HfWeights w;
  w.dir_ = dir;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) throw InputError(dir.string() + ": not a folder (expected a Hugging Face model folder)");
  const fs::path index = dir / kIndex, single = dir / kSingle;
  if (fs::exists(index, ec)) {
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(read_file(index));
    } catch (const nlohmann::json::exception& e) {
      throw InputError(index.string() + ": not valid JSON: " + e.what());
    }
    if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
      throw InputError(index.string() + ": missing 'weight_map' (expected {\"weight_map\": {\"tensor\": \"shard file\"}})");
    const auto& map = j["weight_map"];
    if (map.empty()) throw InputError(index.string() + ": 'weight_map' is empty");
    std::map<std::string, std::size_t> shard_of_file;
    for (auto it = map.begin(); it != map.end(); ++it) {
      if (!it.value().is_string())
        throw InputError(index.string() + ": weight_map['" + it.key() + "'] must be a file name (got " +
                         it.value().dump() + ")");
      const std::string file = it.value().get<std::string>();
      if (!plain_file_name(file))
        throw InputError(index.string() + ": weight_map['" + it.key() + "'] = \"" + file +
                         "\" is not a file name in the model folder");
      auto [pos, fresh] = shard_of_file.try_emplace(file, w.shards_.size());
      if (fresh) {
        const fs::path p = dir / file;
        if (!fs::is_regular_file(p, ec))
          throw InputError(index.string() + ": shard '" + file + "' (named for tensor '" + it.key() +
                           "') is missing from " + dir.string());
        w.shards_.push_back(std::make_unique<SafetensorsReader>(SafetensorsReader::open(p)));
      }
      w.where_[it.key()] = pos->second;
    }
    // each mapped tensor is in its shard; each shard's tensors are mapped to it
    for (const auto& [name, s] : w.where_)
      if (!w.shards_[s]->has(name))
        throw InputError(index.string() + ": tensor '" + name + "' is mapped to " + w.shards_[s]->source() +
                         ", which does not hold it");
    for (std::size_t s = 0; s < w.shards_.size(); s++)
      for (const auto& t : w.shards_[s]->tensors()) {
        auto it = w.where_.find(t.name);
        if (it == w.where_.end())
          throw InputError(w.shards_[s]->source() + ": tensor '" + t.name + "' is not in " + index.string());
        if (it->second != s)
          throw InputError(w.shards_[s]->source() + ": tensor '" + t.name + "' is also here, but " +
                           index.string() + " maps it to " + w.shards_[it->second]->source());
      }
    return w;
  }
  if (fs::exists(single, ec)) {
    w.shards_.push_back(std::make_unique<SafetensorsReader>(SafetensorsReader::open(single)));
    for (const auto& t : w.shards_[0]->tensors()) w.where_[t.name] = 0;
    return w;
  }
  std::string hint;
  for (const char* f : {"pytorch_model.bin", "pytorch_model.bin.index.json", "model.pt"})
    if (fs::exists(dir / f, ec))
      hint = " (it holds " + std::string(f) + ": PyTorch pickles are not read, since loading one can run code; "
             "convert it with transformers: from_pretrained(dir).save_pretrained(out, safe_serialization=True))";
  throw InputError(dir.string() + ": no " + kSingle + " or " + kIndex + hint);
}

const TensorEntry& HfWeights::entry(const std::string& name) const {
  auto it = where_.find(name);
  if (it == where_.end()) throw InputError(dir_.string() + ": the weights hold no tensor '" + name + "'");
  return shards_[it->second]->entry(name);
}

void HfWeights::read_into(const std::string& name, const std::vector<std::int64_t>& shape, float* dst) const {
  auto it = where_.find(name);
  if (it == where_.end()) throw InputError(dir_.string() + ": the weights hold no tensor '" + name + "'");
  shards_[it->second]->read_into(name, shape, dst, SourcePages::release);
}

std::vector<float> HfWeights::read(const std::string& name) const {
  const TensorEntry& e = entry(name);
  std::vector<float> v(static_cast<std::size_t>(e.numel()));
  read_into(name, e.shape, v.data());
  return v;
}

std::vector<std::string> HfWeights::names() const {
  std::vector<std::string> n;
  for (const auto& [k, s] : where_) n.push_back(k);
  return n;
}

std::string HfWeights::file_of(const std::string& name) const {
  auto it = where_.find(name);
  return it == where_.end() ? dir_.string() : shards_[it->second]->source();
}

void write_hf_weights(const fs::path& dir, const std::vector<HfTensorOut>& tensors, DType dtype,
                      std::size_t max_shard_bytes) {
  if (dtype != DType::F32 && dtype != DType::F16 && dtype != DType::BF16)
    throw ConfigError(std::string("Hugging Face export: weights dtype ") + dtype_name(dtype) +
                      " (expected F32, F16 or BF16)");
  const std::size_t esize = dtype_size(dtype);
  // group consecutive tensors into shards
  std::vector<std::vector<const HfTensorOut*>> groups(1);
  std::size_t in_group = 0, total = 0;
  for (const auto& t : tensors) {
    const std::size_t bytes = t.values.size() * esize;
    if (max_shard_bytes > 0 && in_group > 0 && in_group + bytes > max_shard_bytes) {
      groups.emplace_back();
      in_group = 0;
    }
    groups.back().push_back(&t);
    in_group += bytes;
    total += bytes;
  }
  const std::size_t n = groups.size();
  nlohmann::ordered_json map = nlohmann::ordered_json::object();
  for (std::size_t g = 0; g < n; g++) {
    char name[64];
    std::snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", g + 1, n);
    const std::string file = n == 1 ? std::string(kSingle) : std::string(name);
    SafetensorsWriter w;
    w.set_metadata("format", "pt");  // what transformers writes and checks for
    std::vector<std::uint16_t> half;
    for (const HfTensorOut* t : groups[g]) {
      if (dtype == DType::F32) {
        w.add(t->name, DType::F32, t->shape, t->values.data());
      } else {
        half.resize(t->values.size());
        for (std::size_t i = 0; i < half.size(); i++)
          half[i] = dtype == DType::F16 ? float_to_half(t->values[i]) : float_to_bf16(t->values[i]);
        w.add(t->name, dtype, t->shape, half.data());
      }
      map[t->name] = file;
    }
    w.write(dir / file);
  }
  if (n > 1) {
    nlohmann::ordered_json index = {{"metadata", {{"total_size", total}}}, {"weight_map", map}};
    write_file_atomic(dir / kIndex, index.dump(2) + "\n");
  }
}

}  // namespace stretch
