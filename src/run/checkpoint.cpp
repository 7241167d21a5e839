#include "run/checkpoint.hpp"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

#include "core/error.hpp"
#include "core/json_int.hpp"
#include "core/shape.hpp"
#include "core/fs.hpp"
#include "model/lora.hpp"
#include "io/safetensors.hpp"
#include "kernels/grad_norm.hpp"
#include "model/params.hpp"

namespace stretch {
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

std::string step_name(long step) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "step-%08ld", step);
  return buf;
}

bool starts_with(const std::string& s, const char* prefix) { return s.rfind(prefix, 0) == 0; }

// Removes a folder by first renaming it out of the step-* namespace (atomic), so a crash during the removal
// leaves a hidden .tmp-* folder (cleaned later), never a half-deleted step-* folder.
void remove_folder_atomically(const fs::path& root, const fs::path& dir) {
  std::error_code ec;
  const fs::path trash = root / (".tmp-trash-" + dir.filename().string() + "-" + std::to_string(::getpid()));
  fs::remove_all(trash, ec);
  fs::rename(dir, trash, ec);
  fs::remove_all(ec ? dir : trash, ec);
}

// The pid a temporary folder's name ends with (".tmp-...-<pid>"), or -1.
long tmp_owner_pid(const std::string& name) {
  const auto dash = name.rfind('-');
  if (dash == std::string::npos || dash + 1 >= name.size()) return -1;
  long pid = 0;
  for (std::size_t i = dash + 1; i < name.size(); i++) {
    if (name[i] < '0' || name[i] > '9' || pid > 100000000L) return -1;
    pid = pid * 10 + (name[i] - '0');
  }
  return pid;
}

bool process_alive(long pid) {
  if (pid <= 0) return false;
  if (pid == static_cast<long>(::getpid())) return false;  // ours: left by an earlier failed write of this process
  return ::kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM;
}

}  // namespace


long checkpoint_step(const fs::path& dir) {
  const std::string n = dir.filename().string();
  if (!starts_with(n, "step-") || n.size() == 5 || n.size() > 5 + 18) return -1;
  long step = 0;
  for (std::size_t i = 5; i < n.size(); i++) {
    if (n[i] < '0' || n[i] > '9') return -1;
    step = step * 10 + (n[i] - '0');
  }
  return step;
}

bool is_complete_checkpoint(const fs::path& d) {
  std::error_code ec;
  if (checkpoint_step(d) < 0 || !fs::is_directory(d, ec)) return false;
  for (const char* f : {"config.json", "model.safetensors", "optimizer.safetensors", "state.json"})
    if (!fs::is_regular_file(d / f, ec)) return false;
  return true;
}

std::vector<fs::path> list_checkpoints(const fs::path& run_dir) {
  std::vector<std::pair<long, fs::path>> found;
  std::error_code ec;
  for (auto it = fs::directory_iterator(run_dir / "checkpoints", ec); !ec && it != fs::directory_iterator();
       it.increment(ec))
    if (is_complete_checkpoint(it->path())) found.emplace_back(checkpoint_step(it->path()), it->path());
  std::sort(found.begin(), found.end());
  std::vector<fs::path> out;
  for (auto& f : found) out.push_back(f.second);
  return out;
}

void remove_checkpoint_debris(const fs::path& run_dir) {
  const fs::path root = run_dir / "checkpoints";
  std::error_code ec;
  std::vector<fs::path> debris;
  for (auto it = fs::directory_iterator(root, ec); !ec && it != fs::directory_iterator(); it.increment(ec)) {
    const fs::path p = it->path();
    const std::string n = p.filename().string();
    std::error_code e2;
    if (starts_with(n, ".tmp-") && !process_alive(tmp_owner_pid(n)))
      debris.push_back(p);  // a checkpoint being written (or removed) by a process that no longer runs
    else if (starts_with(n, ".latest.tmp-") && fs::is_regular_file(p, e2))
      debris.push_back(p);  // the temporary of an interrupted write of `latest`
    else if (checkpoint_step(p) >= 0 && fs::is_directory(p, e2) && !is_complete_checkpoint(p))
      debris.push_back(p);  // cannot come from this writer (folders appear whole); an older writer's leftover
  }
  for (auto& p : debris) {
    if (starts_with(p.filename().string(), "step-"))
      remove_folder_atomically(root, p);
    else
      fs::remove_all(p, ec);
  }
}

namespace {

constexpr const char* kMomentsKey = "moments";
constexpr const char* kMomentsZero = "zero";

// NumericError naming the first tensor of `slab` (laid out as model.specs()) holding NaN or Inf.
// Moments: the trainable tensors' only (trainable_only).
void require_finite(const Transformer& model, const Buffer<float>& slab, const std::string& prefix,
                    const std::string& what, bool trainable_only = false) {
  if (!trainable_only && count_nonfinite(slab.data(), slab.size()) == 0) return;
  for (std::size_t i = 0; i < model.specs().size(); i++) {
    const ParamSpec& s = model.specs()[i];
    if (trainable_only && !model.trainable(i)) continue;
    const std::size_t count = count_nonfinite(slab.data() + s.offset, s.numel());
    if (count > 0)
      throw NumericError("refusing to write a checkpoint with non-finite " + what + ": tensor '" + prefix + s.name +
                         "' holds " + std::to_string(count) + " NaN/Inf value(s)");
  }
}

// The weights, streamed from the slab (no copy).
void write_model(const fs::path& path, const Transformer& model, const json& config) {
  SafetensorsWriter w;
  w.set_metadata("format", "pt");
  w.set_metadata("stretch_config", config.dump());
  for (auto& s : model.specs()) w.add_f32_ref(s.name, s.shape, model.params().data() + s.offset);
  w.write(path);
}

// The AdamW moments "m.<name>", "v.<name>" of the trainable tensors (all but a LoRA fine-tune's frozen base)
// streamed from their slabs, or (m and v null: all zero) no tensors and the metadata {"moments": "zero"}.
void write_optimizer(const fs::path& path, const Transformer& model, const Buffer<float>* m, const Buffer<float>* v) {
  SafetensorsWriter w;
  if (!m) {
    w.set_metadata(kMomentsKey, kMomentsZero);
  } else {
    for (std::size_t i = 0; i < model.specs().size(); i++) {
      if (!model.trainable(i)) continue;
      const ParamSpec& s = model.specs()[i];
      w.add_f32_ref("m." + s.name, s.shape, m->data() + s.offset);
      w.add_f32_ref("v." + s.name, s.shape, v->data() + s.offset);
    }
  }
  w.write(path);
}

// The file holds exactly the tensors `specs` lists, each with its shape (names and shapes only: nothing is
// allocated, so a config that claims a far larger model than the file holds fails here, not in an allocation).
void check_tensors(const SafetensorsReader& r, const fs::path& path, const std::vector<ParamSpec>& specs,
                   const std::string& prefix) {
  std::vector<std::string> expected;
  for (auto& s : specs) {
    if (!r.has(prefix + s.name))
      throw InputError(path.string() + ": missing tensor '" + prefix + s.name + "' required by the model config");
    const TensorEntry& e = r.entry(prefix + s.name);
    if (e.shape != s.shape)
      throw InputError(path.string() + ": tensor '" + e.name + "' has shape " + shape_str(e.shape) +
                       ", but the model config needs " + shape_str(s.shape));
    expected.push_back(prefix + s.name);
  }
  for (auto& t : r.tensors())
    if (std::find(expected.begin(), expected.end(), t.name) == expected.end())
      throw InputError(path.string() + ": unexpected tensor '" + t.name + "' (not part of the model config)");
}

// m and v: both slabs laid out as model.params(), or both null (all-zero moments).
void save(const fs::path& run_dir, const Transformer& model, const json& tokenizer, int train_length,
          const TrainState& state, const Buffer<float>* m, const Buffer<float>* v, int keep) {
  model.require_fp32_weights("saving a checkpoint");
  require_finite(model, model.params(), "", "weights");
  if (m) {
    if (m->size() != model.params().size() || v->size() != model.params().size())
      throw ConfigError("save_checkpoint: the optimizer moments hold " + std::to_string(m->size()) + " and " +
                        std::to_string(v->size()) + " values, expected " + std::to_string(model.params().size()) +
                        " (one per parameter)");
    require_finite(model, *m, "m.", "optimizer moments", true);
    require_finite(model, *v, "v.", "optimizer moments", true);
  }
  const fs::path root = run_dir / "checkpoints";
  std::error_code ec;
  fs::create_directories(root, ec);
  if (ec) throw IoError(root.string() + ": cannot create folder: " + ec.message());
  remove_checkpoint_debris(run_dir);
  const std::string name = step_name(state.step);
  const fs::path dst = root / name;
  const fs::path tmp = root / (".tmp-" + name + "-" + std::to_string(::getpid()));
  fs::remove_all(tmp, ec);
  fs::create_directory(tmp, ec);
  if (ec) throw IoError(tmp.string() + ": cannot create folder: " + ec.message());
  bool renamed = false;
  try {
    json config = {{"format", "stretch-checkpoint"},
                   {"version", 1},
                   {"model", model.config().to_json()},
                   {"tokenizer", tokenizer},
                   {"train_length", train_length}};
    write_file_atomic(tmp / "config.json", config.dump(2) + "\n");
    write_model(tmp / "model.safetensors", model, config["model"]);
    write_optimizer(tmp / "optimizer.safetensors", model, m, v);
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
               {"skipped_steps", state.skipped_steps},
               {"options", state.options}};
    write_file_atomic(tmp / "state.json", st.dump(2) + "\n");
    fsync_directory(tmp);
    if (is_complete_checkpoint(dst)) {
      // the same step saved again: swap the folders atomically, so a complete step-N exists at every moment
      if (::renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, dst.c_str(), RENAME_EXCHANGE) != 0) {
        const int e = errno;
        if (e != EINVAL && e != ENOSYS && e != ENOTSUP)
          throw IoError(dst.string() + ": cannot replace checkpoint: " + std::strerror(e));
        remove_folder_atomically(root, dst);  // no exchange on this filesystem: a brief window without step-N
        fs::rename(tmp, dst, ec);
        if (ec) throw IoError(dst.string() + ": cannot rename checkpoint into place: " + ec.message());
      }
    } else {
      if (fs::exists(dst, ec)) remove_folder_atomically(root, dst);  // an incomplete leftover
      fs::rename(tmp, dst, ec);
      if (ec) throw IoError(dst.string() + ": cannot rename checkpoint into place: " + ec.message());
    }
    renamed = true;
    fsync_directory(root);
    write_file_atomic(root / "latest", name + "\n");
  } catch (const IoError& e) {
    fs::remove_all(tmp, ec);  // after an exchange, the old copy of step-N
    if (renamed) throw IoError("checkpoint " + dst.string() + " was written, but: " + e.what());
    const auto kept = list_checkpoints(run_dir);
    throw IoError("writing checkpoint " + dst.string() + " failed: " + e.what() +
                  (kept.empty() ? std::string(" (no earlier checkpoint exists)")
                                : "; the previous checkpoint " + kept.back().string() + " is kept"));
  } catch (...) {
    fs::remove_all(tmp, ec);
    throw;
  }
  fs::remove_all(tmp, ec);  // after an exchange, the old copy of step-N
  // prune: keep the newest `keep` complete checkpoints, and always the one just written
  auto steps = list_checkpoints(run_dir);
  const std::size_t n_keep = static_cast<std::size_t>(std::max(keep, 1));
  for (std::size_t i = 0; i + n_keep < steps.size(); i++)
    if (steps[i].filename() != name) remove_folder_atomically(root, steps[i]);
}

}  // namespace

void save_checkpoint(const fs::path& run_dir, const Transformer& model, const json& tokenizer, int train_length,
                     const TrainState& state, const Buffer<float>& m, const Buffer<float>& v, int keep) {
  save(run_dir, model, tokenizer, train_length, state, &m, &v, keep);
}

void save_checkpoint(const fs::path& run_dir, const Transformer& model, const json& tokenizer, int train_length,
                     const TrainState& state, int keep) {
  save(run_dir, model, tokenizer, train_length, state, nullptr, nullptr, keep);
}

fs::path resolve_checkpoint(const fs::path& p) {
  std::error_code ec;
  if (!fs::exists(p, ec)) throw InputError(p.string() + ": no such checkpoint or run directory");
  if (fs::is_regular_file(p / "config.json", ec) && fs::is_regular_file(p / "model.safetensors", ec)) return p;
  const fs::path root = p / "checkpoints";
  if (fs::is_directory(root, ec)) {
    // the newest complete step folder (`latest` names the same one, unless a crash came between the rename of
    // the folder and the update of `latest`; leftovers of interrupted writes are hidden .tmp-* names)
    auto steps = list_checkpoints(p);
    if (!steps.empty()) return steps.back();
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
  if (!j.is_object() || !j.contains("format") || j["format"] != "stretch-checkpoint")  // any type: no json throw
    throw InputError(cfg_path.string() + ": field 'format' must be \"stretch-checkpoint\"");
  if (!j.contains("version") || j["version"] != 1)
    throw InputError(cfg_path.string() + ": field 'version' must be 1 (this build reads version 1)");
  if (!j.contains("model")) throw InputError(cfg_path.string() + ": missing field 'model'");
  meta.model = ModelConfig::from_json(j["model"], cfg_path.string() + ": model");
  if (!j.contains("tokenizer") || !j["tokenizer"].is_object())
    throw InputError(cfg_path.string() + ": field 'tokenizer' must be an object");
  meta.tokenizer = j["tokenizer"];
  const auto train_length = j.contains("train_length") ? json_int_in(j["train_length"], 1) : std::nullopt;
  if (!train_length)
    throw InputError(cfg_path.string() + ": field 'train_length' must be a positive integer" +
                     (j.contains("train_length") ? ", got " + j["train_length"].dump() : std::string()));
  meta.train_length = *train_length;
  return meta;
}

std::unique_ptr<Transformer> load_model(const CheckpointMeta& meta, WeightStorage storage) {
  const fs::path path = meta.dir / "model.safetensors";
  SafetensorsReader r = SafetensorsReader::open(path);
  check_tensors(r, path, param_specs(meta.model), "");  // before the model's buffers are allocated from the config
  auto model = std::make_unique<Transformer>(meta.model);
  // the file's pages leave memory as the slab fills: the load peaks at about the weights
  auto read = [&](const ParamSpec& s, float* dst) {
    r.read_into(s.name, s.shape, dst, SourcePages::release);
    // a weight that is NaN/Inf makes every result nan: refuse here, for eval, generate, passkey and export alike
    if (const std::size_t bad = count_nonfinite(dst, s.numel()); bad > 0)
      throw NumericError(path.string() + ": tensor '" + s.name + "' holds " + std::to_string(bad) + " NaN/Inf of " +
                         std::to_string(s.numel()) + " values; every result computed with it would be nan (use an "
                         "earlier checkpoint of the run, under checkpoints/)");
  };
  // bf16 (not for an unmerged adapter: load_model_merged converts after merging): each matrix passes through its
  // fp32 place into the bf16 copy as it is read, so at most one is resident in fp32
  if (storage == WeightStorage::bf16 && !meta.model.lora.enabled())
    model->store_weights(WeightStorage::bf16, read);
  else
    for (auto& s : model->specs()) read(s, model->params().data() + s.offset);
  return model;
}

std::unique_ptr<Transformer> load_model_merged(const CheckpointMeta& meta, WeightStorage storage) {
  auto model = load_model(meta, storage);
  if (model->config().lora.enabled()) {
    model = merge_lora(*model);
    model->store_weights(storage);
  }
  return model;
}

json read_checkpoint_options(const CheckpointMeta& meta) {
  const fs::path sp = meta.dir / "state.json";
  try {
    const json j = json::parse(read_file(sp));
    const json o = j.value("options", json::object());
    if (!o.is_object()) throw InputError(sp.string() + ": field 'options' must be an object");
    return o;
  } catch (const json::exception& e) {
    throw InputError(sp.string() + ": malformed training state: " + e.what());
  }
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
    state.skipped_steps = j.value("skipped_steps", 0L);
    state.options = j.value("options", json::object());
  } catch (const json::exception& e) {
    throw InputError(sp.string() + ": malformed training state: " + e.what());
  } catch (const std::logic_error& e) {  // stoull
    throw InputError(sp.string() + ": malformed field 'data_rng': " + e.what());
  }
  // the step is the folder's (step-N): a step that disagrees would make a resumed run skip or repeat training
  const long folder_step = checkpoint_step(meta.dir);
  if (state.step < 0 || (folder_step >= 0 && state.step != folder_step))
    throw InputError(sp.string() + ": field 'step' is " + std::to_string(state.step) + ", expected " +
                     (folder_step >= 0 ? std::to_string(folder_step) + " (the folder's name, " +
                                             meta.dir.filename().string() + ")"
                                       : std::string("a non-negative integer")));
  if (state.tokens_seen < 0 || state.skipped_steps < 0 || state.skipped_steps > state.step)
    throw InputError(sp.string() + ": fields 'tokens_seen' (" + std::to_string(state.tokens_seen) +
                     ") and 'skipped_steps' (" + std::to_string(state.skipped_steps) +
                     ") must be non-negative, and at most 'step' steps can have been skipped");
  const fs::path op = meta.dir / "optimizer.safetensors";
  SafetensorsReader r = SafetensorsReader::open(op);
  m.resize(model.params().size());  // zeros
  v.resize(model.params().size());
  if (auto it = r.metadata().find(kMomentsKey); it != r.metadata().end()) {
    if (it->second != kMomentsZero)
      throw InputError(op.string() + ": metadata '" + kMomentsKey + "' is \"" + it->second + "\" (expected \"" +
                       kMomentsZero + "\", moments all zero, or no such entry and the tensors m.*, v.*)");
    if (!r.tensors().empty())
      throw InputError(op.string() + ": metadata says the moments are all zero, but the file holds " +
                       std::to_string(r.tensors().size()) + " tensors (first '" + r.tensors().front().name + "')");
    return;  // all zero: m and v stay as resized
  }
  std::vector<ParamSpec> trained;
  for (std::size_t i = 0; i < model.specs().size(); i++)
    if (model.trainable(i)) trained.push_back(model.specs()[i]);
  std::vector<ParamSpec> moments;
  for (const ParamSpec& s : trained) {
    moments.push_back(s);
    moments.back().name = "m." + s.name;
    moments.push_back(s);
    moments.back().name = "v." + s.name;
  }
  check_tensors(r, op, moments, "");  // exactly the trainable tensors' moments (a LoRA run saves no base moments)
  for (const ParamSpec& s : trained) {
    r.read_into("m." + s.name, s.shape, m.data() + s.offset, SourcePages::release);
    r.read_into("v." + s.name, s.shape, v.data() + s.offset, SourcePages::release);
  }
}

}  // namespace stretch
