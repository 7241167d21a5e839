// `stretch import hf DIR --out RUN` and `stretch export hf RUN --out DIR` (model/hf_convert.hpp, docs/HF.md).
//
// import: config.json and the weights are checked in full (every tensor's name and shape, the tokenizer) before
//         anything is written; the tokenizer files (tokenizer.json, tokenizer_config.json, generation_config.json,
//         special_tokens_map.json) are copied into RUN/tokenizer/, which the checkpoint names.
// export: everything is written into a hidden folder beside DIR and renamed onto DIR at the end, so a failure
//         (a model transformers cannot express, a tokenizer that cannot be written, a full disk) leaves nothing.
#include "cli/convert_hf.hpp"

#include <unistd.h>

#include <cstdio>
#include <nlohmann/json.hpp>

#include "core/error.hpp"
#include "core/fs.hpp"
#include "io/tokenizer.hpp"
#include "io/tokenizer_hf.hpp"
#include "model/hf_convert.hpp"
#include "run/checkpoint.hpp"
#include "run/run_lock.hpp"

namespace stretch::cli {

namespace fs = std::filesystem;

namespace {

constexpr const char* kTokenizerFiles[] = {"tokenizer.json", "tokenizer_config.json", "generation_config.json",
                                           "special_tokens_map.json"};

// Removes `dir` at scope exit unless released (a half-made output folder).
struct RemoveOnFailure {
  fs::path dir;
  bool armed = true;
  ~RemoveOnFailure() {
    std::error_code ec;
    if (armed && !dir.empty()) fs::remove_all(dir, ec);
  }
};

std::size_t parse_size(const std::string& s) {
  if (s.empty() || s == "0") return 0;
  std::size_t used = 0;
  double v = 0;
  try {
    v = std::stod(s, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  const std::string unit = used ? s.substr(used) : "";
  double mult = 0;
  if (unit.empty() || unit == "B") mult = 1;
  if (unit == "KB") mult = 1e3;
  if (unit == "MB") mult = 1e6;
  if (unit == "GB") mult = 1e9;
  if (used == 0 || mult == 0 || !(v > 0))
    throw UsageError("--shard-size: expected a size such as 2GB, 500MB or 0 (one file), got '" + s + "'");
  return static_cast<std::size_t>(v * mult);
}

DType parse_dtype(const std::string& s) {
  if (s == "f32") return DType::F32;
  if (s == "f16") return DType::F16;
  if (s == "bf16") return DType::BF16;
  throw UsageError("--dtype: expected f32, f16 or bf16, got '" + s + "'");
}

}  // namespace

int import_hf(const fs::path& dir, const fs::path& tokenizer_dir, const fs::path& out) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec))
    throw UsageError("model: " + dir.string() + " is not a folder (a Hugging Face model folder holds config.json "
                     "and model.safetensors)");
  const fs::path tok_src = tokenizer_dir.empty() ? dir : tokenizer_dir;
  if (!fs::is_regular_file(tok_src / "tokenizer.json", ec))
    throw InputError(tok_src.string() + ": no tokenizer.json (pass --tokenizer DIR with the model's tokenizer files)");
  HfImport imp = model_from_hf(dir);
  auto tok = load_hf_tokenizer(tok_src);  // checked before anything is written
  const int V = imp.model->config().vocab_size;
  if (tok->vocab_size() > V)
    throw InputError(tok_src.string() + "/tokenizer.json: has " + std::to_string(tok->vocab_size()) +
                     " tokens, more than the model's vocab_size " + std::to_string(V));
  NewRunFolder folder(out, "--out");
  folder.wrote(out / "tokenizer");
  fs::create_directories(out / "tokenizer", ec);
  if (ec) throw IoError(out.string() + ": cannot create the run directory: " + ec.message());
  for (const char* f : kTokenizerFiles) {
    if (!fs::is_regular_file(tok_src / f, ec)) continue;
    write_file_atomic(out / "tokenizer" / f, read_file(tok_src / f));
  }
  auto run_tok = load_hf_tokenizer(fs::absolute(out / "tokenizer"));
  TrainState st;
  st.options = {{"imported_from", fs::absolute(dir).string()}, {"format", "hf"},
                {"architecture", std::string(hf_architecture(imp.family))}};
  save_checkpoint(out, *imp.model, run_tok->describe(), imp.model->config().block_size, st, 1);  // zero moments
  folder.keep();
  const ModelConfig& c = imp.model->config();
  std::printf("imported %s: %s -> %s (%s%s), %zu parameters, %d layers, width %d, %d heads (%d kv), vocabulary %d "
              "(tokenizer: %d tokens), context %d\n",
              dir.c_str(), std::string(hf_architecture(imp.family)).c_str(), std::string(to_string(c.arch)).c_str(),
              std::string(to_string(c.position)).c_str(),
              c.rope_scaling.is_none() ? "" : (", " + c.rope_scaling.to_string()).c_str(),
              imp.model->num_parameters(), c.n_layer, c.n_embd, c.n_head, c.kv_heads(), V, run_tok->vocab_size(),
              c.block_size);
  for (const auto& n : imp.notes) std::printf("note: %s\n", n.c_str());
  if (run_tok->vocab_size() < V)
    std::printf("note: the tokenizer has %d tokens, the embedding %d rows (padding rows are never produced)\n",
                run_tok->vocab_size(), V);
  std::printf("checkpoint: %s\n", (out / "checkpoints").c_str());
  return 0;
}

void check_new_folder(const fs::path& out, const std::string& flag) {
  std::error_code ec;
  if (fs::exists(out, ec) && !(fs::is_directory(out, ec) && fs::is_empty(out, ec)))
    throw UsageError(flag + ": " + out.string() + " exists and is not an empty folder; choose another");
}

void write_new_folder(const fs::path& out, const std::string& flag, const std::function<void(const fs::path&)>& fill) {
  check_new_folder(out, flag);
  std::error_code ec;
  const fs::path parent = out.has_parent_path() ? out.parent_path() : fs::path(".");
  fs::create_directories(parent, ec);
  const fs::path tmp = parent / (".tmp-" + out.filename().string() + "-" + std::to_string(::getpid()));
  fs::remove_all(tmp, ec);
  fs::create_directory(tmp, ec);
  if (ec) throw IoError(tmp.string() + ": cannot create folder: " + ec.message());
  RemoveOnFailure cleanup{tmp};
  fill(tmp);
  fsync_directory(tmp);
  if (fs::exists(out, ec)) fs::remove(out, ec);  // the empty folder checked above
  fs::rename(tmp, out, ec);
  if (ec) throw IoError(out.string() + ": cannot rename the written folder into place: " + ec.message());
  cleanup.armed = false;
  fsync_directory(parent);
}

void write_hf_folder(const Transformer& model, const Tokenizer& tok, const fs::path& out, const std::string& flag,
                     HfExportOptions o) {
  o.bos_token_id = tok.bos_id();
  o.eos_token_id = tok.eos_id();
  write_new_folder(out, flag, [&](const fs::path& tmp) {
    model_to_hf(model, tmp, o);
    write_hf_tokenizer(tok, tmp);
    nlohmann::json gen = {{"_from_model_config", true}};
    if (o.bos_token_id >= 0) gen["bos_token_id"] = o.bos_token_id;
    if (o.eos_token_id >= 0) gen["eos_token_id"] = o.eos_token_id;
    write_file_atomic(tmp / "generation_config.json", gen.dump(2) + "\n");
  });
}

int export_hf(const fs::path& checkpoint, const fs::path& out, const std::string& as, const std::string& dtype,
              const std::string& shard_size) {
  HfExportOptions o;
  o.as = as;
  o.dtype = parse_dtype(dtype);
  o.max_shard_bytes = parse_size(shard_size);
  CheckpointMeta meta = read_checkpoint_meta(checkpoint);
  const HfFamily family = hf_export_family(meta.model, o.as);  // before the weights are even read
  (void)hf_config_json(meta.model, family, o);                   // a rope scaling transformers lacks: refused here
  check_new_folder(out, "--out");
  auto model = load_model_merged(meta);
  auto tok = tokenizer_from_json(meta.tokenizer, (meta.dir / "config.json").string() + ": tokenizer");
  write_hf_folder(*model, *tok, out, "--out", o);
  std::printf("wrote %s: %s, %s weights%s; load it with transformers' AutoModelForCausalLM.from_pretrained(\"%s\")\n",
              out.c_str(), std::string(hf_architecture(family)).c_str(), dtype.c_str(),
              o.max_shard_bytes ? (" in shards of at most " + shard_size).c_str() : "", out.c_str());
  return 0;
}

}  // namespace stretch::cli
