#include "run/checkpoint.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "core/error.hpp"
#include "core/fs.hpp"
#include "io/safetensors.hpp"

namespace stretch {
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

std::string step_name(long step) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "step-%08ld", step);
  return buf;
}

bool is_complete(const fs::path& d) {
  std::error_code ec;
  for (const char* f : {"config.json", "model.safetensors", "optimizer.safetensors", "state.json"})
    if (!fs::is_regular_file(d / f, ec)) return false;
  return true;
}

void write_tensors(const fs::path& path, const Transformer& model, const Buffer<float>& slab, const std::string& prefix,
                   const json& config) {
  SafetensorsWriter w;
  w.set_metadata("format", "pt");
  w.set_metadata("stretch_config", config.dump());
  for (auto& s : model.specs()) w.add_f32(prefix + s.name, s.shape, slab.data() + s.offset);
  w.write(path);
}

void read_tensors(const fs::path& path, const Transformer& model, Buffer<float>& slab, const std::string& prefix) {
  SafetensorsReader r = SafetensorsReader::open(path);
  std::vector<std::string> expected;
  for (auto& s : model.specs()) {
    if (!r.has(prefix + s.name))
      throw InputError(path.string() + ": missing tensor '" + prefix + s.name + "' required by the model config");
    r.read_into(prefix + s.name, s.shape, slab.data() + s.offset);
    expected.push_back(prefix + s.name);
  }
  for (auto& t : r.tensors())
    if (std::find(expected.begin(), expected.end(), t.name) == expected.end())
      throw InputError(path.string() + ": unexpected tensor '" + t.name + "' (not part of the model config)");
}

}  // namespace

void save_checkpoint(const fs::path& run_dir, const Transformer& model, const json& tokenizer, int train_length,
                     const TrainState& state, const Buffer<float>& m, const Buffer<float>& v, int keep) {
  const fs::path root = run_dir / "checkpoints";
  std::error_code ec;
  fs::create_directories(root, ec);
  if (ec) throw IoError(root.string() + ": cannot create folder: " + ec.message());
  const std::string name = step_name(state.step);
  const fs::path tmp = root / (".tmp-" + name + "-" + std::to_string(::getpid()));
  fs::remove_all(tmp, ec);
  fs::create_directory(tmp, ec);
  if (ec) throw IoError(tmp.string() + ": cannot create folder: " + ec.message());
  try {
    json config = {{"format", "stretch-checkpoint"},
                   {"version", 1},
                   {"model", model.config().to_json()},
                   {"tokenizer", tokenizer},
                   {"train_length", train_length}};
    write_file_atomic(tmp / "config.json", config.dump(2) + "\n");
    write_tensors(tmp / "model.safetensors", model, model.params(), "", config["model"]);
    SafetensorsWriter ow;
    for (auto& s : model.specs()) {
      ow.add_f32("m." + s.name, s.shape, m.data() + s.offset);
      ow.add_f32("v." + s.name, s.shape, v.data() + s.offset);
    }
    ow.write(tmp / "optimizer.safetensors");
    auto hex = [](std::uint64_t x) {
      char b[20];
      std::snprintf(b, sizeof b, "%016llx", static_cast<unsigned long long>(x));
      return std::string(b);
    };
    json st = {{"step", state.step},
               {"tokens_seen", state.tokens_seen},
               {"data_rng", {hex(state.data_rng[0]), hex(state.data_rng[1]), hex(state.data_rng[2]),
                             hex(state.data_rng[3])}},
               {"elapsed_s", state.elapsed_s},
               {"options", state.options}};
    write_file_atomic(tmp / "state.json", st.dump(2) + "\n");
    fsync_directory(tmp);
    const fs::path dst = root / name;
    fs::remove_all(dst, ec);
    fs::rename(tmp, dst, ec);
    if (ec) throw IoError(dst.string() + ": cannot rename checkpoint into place: " + ec.message());
    fsync_directory(root);
    write_file_atomic(root / "latest", name + "\n");
  } catch (...) {
    fs::remove_all(tmp, ec);
    throw;
  }
  // prune: keep the newest `keep` complete checkpoints
  std::vector<fs::path> steps;
  for (auto& e : fs::directory_iterator(root, ec))
    if (e.is_directory() && e.path().filename().string().rfind("step-", 0) == 0) steps.push_back(e.path());
  std::sort(steps.begin(), steps.end());
  for (std::size_t i = 0; i + static_cast<std::size_t>(std::max(keep, 1)) < steps.size(); i++)
    fs::remove_all(steps[i], ec);
}

fs::path resolve_checkpoint(const fs::path& p) {
  std::error_code ec;
  if (!fs::exists(p, ec)) throw InputError(p.string() + ": no such checkpoint or run directory");
  if (fs::is_regular_file(p / "config.json", ec) && fs::is_regular_file(p / "model.safetensors", ec)) return p;
  const fs::path root = p / "checkpoints";
  if (fs::is_directory(root, ec)) {
    std::ifstream in(root / "latest");
    std::string name;
    if (in && std::getline(in, name) && !name.empty() && is_complete(root / name)) return root / name;
    // `latest` missing or stale: fall back to the newest complete checkpoint
    std::vector<fs::path> steps;
    for (auto& e : fs::directory_iterator(root, ec))
      if (e.is_directory() && e.path().filename().string().rfind("step-", 0) == 0 && is_complete(e.path()))
        steps.push_back(e.path());
    if (!steps.empty()) return *std::max_element(steps.begin(), steps.end());
    throw InputError(p.string() + ": run directory has no complete checkpoint under checkpoints/");
  }
  throw InputError(p.string() + ": not a checkpoint (expected config.json and model.safetensors) nor a run "
                   "directory (expected checkpoints/)");
}

CheckpointMeta read_checkpoint_meta(const fs::path& run_or_checkpoint) {
  CheckpointMeta meta;
  meta.dir = resolve_checkpoint(run_or_checkpoint);
  const fs::path cfg_path = meta.dir / "config.json";
  json j;
  try {
    j = json::parse(read_file(cfg_path));
  } catch (const json::exception& e) {
    throw InputError(cfg_path.string() + ": not valid JSON: " + e.what());
  }
  if (!j.is_object() || j.value("format", "") != "stretch-checkpoint")
    throw InputError(cfg_path.string() + ": field 'format' must be \"stretch-checkpoint\"");
  if (!j.contains("version") || j["version"] != 1)
    throw InputError(cfg_path.string() + ": field 'version' must be 1 (this build reads version 1)");
  if (!j.contains("model")) throw InputError(cfg_path.string() + ": missing field 'model'");
  meta.model = ModelConfig::from_json(j["model"], cfg_path.string() + ": model");
  if (!j.contains("tokenizer") || !j["tokenizer"].is_object())
    throw InputError(cfg_path.string() + ": field 'tokenizer' must be an object");
  meta.tokenizer = j["tokenizer"];
  if (!j.contains("train_length") || !j["train_length"].is_number_integer() || j["train_length"].get<int>() < 1)
    throw InputError(cfg_path.string() + ": field 'train_length' must be a positive integer");
  meta.train_length = j["train_length"].get<int>();
  return meta;
}

std::unique_ptr<Transformer> load_model(const CheckpointMeta& meta) {
  auto model = std::make_unique<Transformer>(meta.model);
  read_tensors(meta.dir / "model.safetensors", *model, model->params(), "");
  return model;
}

void load_train_state(const CheckpointMeta& meta, const Transformer& model, TrainState& state, Buffer<float>& m,
                      Buffer<float>& v) {
  const fs::path sp = meta.dir / "state.json";
  json j;
  try {
    j = json::parse(read_file(sp));
    state.step = j.at("step").get<long>();
    state.tokens_seen = j.at("tokens_seen").get<long>();
    auto r = j.at("data_rng");
    if (!r.is_array() || r.size() != 4) throw InputError(sp.string() + ": field 'data_rng' must hold 4 words");
    for (int i = 0; i < 4; i++) state.data_rng[i] = std::stoull(r[i].get<std::string>(), nullptr, 16);
    state.elapsed_s = j.at("elapsed_s").get<double>();
    state.options = j.value("options", json::object());
  } catch (const json::exception& e) {
    throw InputError(sp.string() + ": malformed training state: " + e.what());
  } catch (const std::logic_error& e) {  // stoull
    throw InputError(sp.string() + ": malformed field 'data_rng': " + e.what());
  }
  m.resize(model.params().size());
  v.resize(model.params().size());
  SafetensorsReader r = SafetensorsReader::open(meta.dir / "optimizer.safetensors");
  for (auto& s : model.specs()) {
    r.read_into("m." + s.name, s.shape, m.data() + s.offset);
    r.read_into("v." + s.name, s.shape, v.data() + s.offset);
  }
}

}  // namespace stretch
