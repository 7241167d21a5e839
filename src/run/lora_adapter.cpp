#include "run/lora_adapter.hpp"

#include <xxhash.h>

#include <nlohmann/json.hpp>
#include <algorithm>
#include <new>
#include <string>

#include "core/error.hpp"
#include "core/hex.hpp"
#include "core/number_list.hpp"
#include "io/safetensors.hpp"
#include "model/lora.hpp"

namespace stretch {
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

constexpr const char* kFormat = "stretch-lora";
// the config fields an adapter carries with it: how positions become attention, which it was trained with
constexpr const char* kContextFields[] = {"block_size", "rope_scaling", "attn_window", "logn", "position_ids"};

ModelConfig without_adapter(ModelConfig c) {
  c.lora = LoraConfig{};
  return c;
}

// The base's architecture: its config without the adapter and the context fields.
json architecture(const ModelConfig& c) {
  json j = without_adapter(c).to_json();
  for (const char* f : kContextFields) j.erase(f);
  j.erase("extension");
  j.erase("alibi_interp");
  return j;
}

json context(const ModelConfig& c) {
  const json all = c.to_json();
  json j = json::object();
  for (const char* f : kContextFields)
    if (all.contains(f)) j[f] = all[f];
  return j;
}

bool is_adapter(const ParamSpec& s) { return s.kind == ParamKind::lora_a || s.kind == ParamKind::lora_b; }

// XXH3-64 of the base tensors of `model` that `saved` (one flag per spec) does not mark, in table order.
std::uint64_t frozen_hash(const Transformer& model, const std::vector<char>& saved) {
  XXH3_state_t* st = XXH3_createState();
  if (!st) throw std::bad_alloc();
  XXH3_64bits_reset(st);
  for (std::size_t i = 0; i < model.specs().size(); i++) {
    const ParamSpec& s = model.specs()[i];
    if (is_adapter(s) || saved[i]) continue;
    XXH3_64bits_update(st, model.params().data() + s.offset, s.numel() * sizeof(float));
  }
  const std::uint64_t h = XXH3_64bits_digest(st);
  XXH3_freeState(st);
  return h;
}

}  // namespace

TrainAlso parse_train_also(std::string_view list) {
  TrainAlso t;
  if (list.empty()) return t;
  for (const std::string_view name : split_comma_list(list)) {
    bool& flag = name == "embed" ? t.embed : t.norm;
    if (name != "embed" && name != "norm")
      throw UsageError("`train_also`: unknown group '" + std::string(name) +
                       "' (expected a comma-separated list of embed, norm)");
    if (flag) throw UsageError("`train_also`: '" + std::string(name) + "' is listed twice");
    flag = true;
  }
  return t;
}


// Which tensors train: all without an adapter (empty); with one, the adapter and the --train-also groups.
// "norm" takes a norm's bias with its weight (the tensor named like the weight, ".bias" for ".weight").
std::vector<char> lora_trainable(const Transformer& m, const TrainAlso& also) {
  if (!m.config().lora.enabled()) return {};
  const auto& specs = m.specs();
  std::vector<char> t(specs.size(), 0);
  std::vector<std::string> norm_biases;
  for (std::size_t i = 0; i < specs.size(); i++) {
    switch (specs[i].kind) {
      case ParamKind::lora_a:
      case ParamKind::lora_b: t[i] = 1; break;
      case ParamKind::embedding:
      case ParamKind::position: t[i] = also.embed; break;
      case ParamKind::norm: {
        t[i] = also.norm;
        const std::string& n = specs[i].name;
        if (n.size() > 7 && n.compare(n.size() - 7, 7, ".weight") == 0) norm_biases.push_back(n.substr(0, n.size() - 7) + ".bias");
        break;
      }
      default: break;
    }
  }
  if (also.norm)
    for (std::size_t i = 0; i < specs.size(); i++)
      if (specs[i].kind == ParamKind::bias &&
          std::find(norm_biases.begin(), norm_biases.end(), specs[i].name) != norm_biases.end())
        t[i] = 1;
  return t;
}


void save_adapter(const Transformer& model, const std::string& train_also, const fs::path& file) {
  const ModelConfig& c = model.config();
  if (!c.lora.enabled()) throw ConfigError("save_adapter: the model has no LoRA adapter");
  const std::vector<char> trained = lora_trainable(model, parse_train_also(train_also));
  SafetensorsWriter w;
  w.set_metadata("format", kFormat);
  w.set_metadata("version", "1");
  w.set_metadata("lora", c.lora.to_json().dump());
  w.set_metadata("base_model", without_adapter(c).to_json().dump());
  w.set_metadata("train_also", train_also);
  w.set_metadata("base_xxh3", hex64(frozen_hash(model, trained)));
  w.set_metadata("context", context(c).dump());
  for (std::size_t i = 0; i < model.specs().size(); i++)
    if (trained[i]) w.add_f32_ref(model.specs()[i].name, model.specs()[i].shape, model.params().data() + model.specs()[i].offset);
  w.write(file);
}

std::unique_ptr<Transformer> apply_adapter(const Transformer& base, const fs::path& file, bool allow_other_base) {
  const std::string src = file.string();
  if (base.config().lora.enabled())
    throw InputError(src + ": the base model already holds an unmerged adapter (merge it first: stretch lora merge)");
  SafetensorsReader r = SafetensorsReader::open(file);
  auto meta = [&](const char* key) -> const std::string& {
    auto it = r.metadata().find(key);
    if (it == r.metadata().end())
      throw InputError(src + ": metadata '" + key + "' is missing (not a stretch adapter: stretch lora extract "
                       "writes one)");
    return it->second;
  };
  if (meta("format") != kFormat)
    throw InputError(src + ": metadata 'format' is \"" + meta("format") + "\", expected \"" + kFormat + "\"");
  if (meta("version") != "1")
    throw InputError(src + ": metadata 'version' is \"" + meta("version") + "\", this build reads version 1");
  auto parse = [&](const char* key) {
    try {
      return json::parse(meta(key));
    } catch (const json::exception& e) {
      throw InputError(src + ": metadata '" + key + "' is not JSON: " + e.what());
    }
  };
  const LoraConfig lora = LoraConfig::from_json(parse("lora"), src + ": metadata 'lora'");
  const ModelConfig trained_on = ModelConfig::from_json(parse("base_model"), src + ": metadata 'base_model'");
  const json want = architecture(trained_on), have = architecture(base.config());
  if (want != have) {
    std::string field;
    for (auto& [k, v] : want.items())
      if (!have.contains(k) || have[k] != v) field += (field.empty() ? "" : ", ") + k;
    for (auto& [k, v] : have.items())
      if (!want.contains(k)) field += (field.empty() ? "" : ", ") + k;
    throw InputError(src + ": the adapter was trained on another architecture (the base differs in: " + field + ")");
  }
  // the base tensors the file holds (trained beside the adapter) replace the base's; the others must be the ones
  // the adapter was trained on
  std::vector<char> saved(base.specs().size(), 0);
  std::size_t saved_count = 0;
  for (std::size_t i = 0; i < base.specs().size(); i++)
    if (r.has(base.specs()[i].name)) {
      saved[i] = 1;
      saved_count++;
    }
  const std::string have_hash = hex64(frozen_hash(base, saved));
  if (!allow_other_base && meta("base_xxh3") != have_hash)
    throw InputError(src + ": the adapter was trained on other base weights (metadata 'base_xxh3' " +
                     meta("base_xxh3") + ", this base's " + have_hash + "); pass `other_base` if that is intended");
  // the adapted model: the base's weights, the adapter's context settings and adapter
  json cj = base.config().to_json();
  for (const char* f : kContextFields) cj.erase(f);
  const json ctx = parse("context");
  if (!ctx.is_object()) throw InputError(src + ": metadata 'context' must be a JSON object");
  for (auto& [k, v] : ctx.items()) cj[k] = v;
  cj["lora"] = lora.to_json();
  const ModelConfig c = ModelConfig::from_json(cj, src + ": the adapted model");
  auto model = std::make_unique<Transformer>(c);
  std::copy(base.params().data(), base.params().data() + base.params().size(), model->params().data());
  std::size_t expected = saved_count;
  for (std::size_t i = 0; i < base.specs().size(); i++)
    if (saved[i]) r.read_into(base.specs()[i].name, base.specs()[i].shape, model->params().data() + base.specs()[i].offset);
  for (const ParamSpec& s : model->specs()) {
    if (!is_adapter(s)) continue;
    if (!r.has(s.name)) throw InputError(src + ": missing tensor '" + s.name + "' of a rank-" +
                                         std::to_string(lora.rank) + " adapter on " + lora.targets_string());
    r.read_into(s.name, s.shape, model->params().data() + s.offset);
    expected++;
  }
  if (r.tensors().size() != expected)
    for (const TensorEntry& t : r.tensors()) {
      bool known = false;
      for (const ParamSpec& s : model->specs()) known |= s.name == t.name;
      if (!known) throw InputError(src + ": unexpected tensor '" + t.name + "' (neither the adapter's nor the base's)");
    }
  return model;
}

}  // namespace stretch
