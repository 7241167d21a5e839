// `stretch lora merge | extract | apply`: a LoRA fine-tune's adapter (model/lora.hpp) folded into its weights,
// written on its own (run/lora_adapter.hpp), or put on a base model. Fine-tuning with an adapter is `stretch
// finetune --lora R`; eval, generate, passkey and export merge an adapter when they load a checkpoint.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>

#include "cli/commands.hpp"
#include "cli/convert_gguf.hpp"
#include "cli/convert_hf.hpp"
#include "core/error.hpp"
#include "model/lora.hpp"
#include "run/checkpoint.hpp"
#include "run/lora_adapter.hpp"
#include "core/fs.hpp"
#include "io/gguf.hpp"
#include "io/safetensors.hpp"
#include "io/tokenizer.hpp"
#include "model/gguf_convert.hpp"
#include "model/gguf_lora_convert.hpp"
#include "model/hf_convert.hpp"
#include "model/peft_convert.hpp"
#include "run/run_lock.hpp"

namespace stretch::cli {
namespace fs = std::filesystem;

namespace {

struct LoraCli {
  std::string input, adapter, format = "stretch", as = "auto", type = "f32";
  fs::path out, base_out;
  bool other_base = false;
};

// A new run folder holding `model` at step 0 with zero moments (as import writes one).
void write_run(const fs::path& out, const Transformer& model, const CheckpointMeta& from, const nlohmann::json& origin) {
  NewRunFolder folder(out, "--out");
  TrainState st;
  st.options = origin;
  save_checkpoint(out, model, from.tokenizer, model.config().block_size, st, 1);
  folder.keep();
}

nlohmann::json read_json_file(const fs::path& p) {
  std::error_code ec;
  if (!fs::is_regular_file(p, ec)) throw InputError(p.string() + ": not found (a PEFT adapter folder holds it)");
  try {
    return nlohmann::json::parse(read_file(p));
  } catch (const nlohmann::json::exception& e) {
    throw InputError(p.string() + ": not valid JSON: " + e.what());
  }
}

// extract --format peft: the adapter folder, and with --base-out the base under it as a Hugging Face folder.
int extract_peft(const Transformer& model, const CheckpointMeta& meta, const std::string& also, const LoraCli& o) {
  if (!also.empty() && o.base_out.empty())
    throw UsageError("--base-out: this fine-tune also trained its " + also + " tensors, which a PEFT adapter does not "
                     "hold; the adapter goes on this run's base, so write it too (--base-out DIR)");
  auto base = base_of(model);
  const HfFamily family = hf_export_family(base->config(), o.as);
  const PeftAdapter a = model_to_peft(model, family);
  check_new_folder(o.out, "--out");
  if (!o.base_out.empty()) {
    HfExportOptions eo;
    eo.as = o.as;
    auto tok = tokenizer_from_json(meta.tokenizer, (meta.dir / "config.json").string() + ": tokenizer");
    write_hf_folder(*base, *tok, o.base_out, "--base-out", eo);
  }
  nlohmann::json cfg = a.config;
  if (!o.base_out.empty()) cfg["base_model_name_or_path"] = fs::absolute(o.base_out).lexically_normal().string();
  write_new_folder(o.out, "--out", [&](const fs::path& tmp) {
    write_file_atomic(tmp / "adapter_config.json", cfg.dump(2) + "\n");
    SafetensorsWriter w;
    w.set_metadata("format", "pt");
    for (const HfTensorOut& t : a.tensors) w.add_f32_ref(t.name, t.shape, t.values.data());
    w.write(tmp / "adapter_model.safetensors");
  });
  std::printf("wrote %s: PEFT LoRA adapter for %s (rank %d, targets %s)%s\n", o.out.c_str(),
              std::string(hf_architecture(family)).c_str(), model.config().lora.rank,
              model.config().lora.targets_string().c_str(),
              o.base_out.empty() ? "" : ("; base: " + o.base_out.string()).c_str());
  return 0;
}

// extract --format gguf: llama.cpp's adapter file, and with --base-out the base under it as a GGUF model.
int extract_gguf(const Transformer& model, const CheckpointMeta& meta, const std::string& also, const LoraCli& o) {
  if (!also.empty() && o.base_out.empty())
    throw UsageError("--base-out: this fine-tune also trained its " + also + " tensors, which a GGUF LoRA adapter "
                     "does not hold (llama.cpp's adapters are A/B pairs); the adapter goes on this run's base, so "
                     "write it too (--base-out BASE.gguf)");
  const GgufWriter adapter = lora_to_gguf(model);  // refuses a model without a GGUF layout before anything is written
  if (!o.base_out.empty()) {
    const std::uint32_t type = parse_ggml_type(o.type);
    auto tok = tokenizer_from_json(meta.tokenizer, (meta.dir / "config.json").string() + ": tokenizer");
    model_to_gguf(*base_of(model), *tok, type).write(o.base_out);
  }
  adapter.write(o.out);
  std::printf("wrote %s: GGUF LoRA adapter (rank %d, targets %s, alpha %g)%s\n", o.out.c_str(),
              model.config().lora.rank, model.config().lora.targets_string().c_str(), model.config().lora.alpha,
              o.base_out.empty() ? "" : ("; base: " + o.base_out.string()).c_str());
  return 0;
}

// A GGUF file starts with the magic "GGUF".
bool is_gguf(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  char magic[4] = {};
  return f.read(magic, 4) && std::string(magic, 4) == "GGUF";
}

std::unique_ptr<Transformer> load_adapted(const std::string& run, CheckpointMeta& meta) {
  meta = read_checkpoint_meta(run);
  if (!meta.model.lora.enabled())
    throw UsageError(run + ": the model has no LoRA adapter (stretch finetune --lora R trains one)");
  return load_model(meta);
}

}  // namespace

Runner add_lora(CLI::App& app) {
  auto o = std::make_shared<LoraCli>();
  app.require_subcommand(1);
  CLI::App* merge = app.add_subcommand("merge", "Fold a LoRA fine-tune's adapter into its weights: a new run folder "
                                                "with a plain model (W += alpha/R B A)");
  merge->add_option("run", o->input, "Run directory or checkpoint folder of a LoRA fine-tune")->required();
  merge->add_option("--out", o->out, "The run folder to create")->required();
  CLI::App* extract = app.add_subcommand("extract", "Write a LoRA fine-tune's adapter alone (a stretch adapter file, "
                                                    "safetensors)");
  extract->add_option("run", o->input, "Run directory or checkpoint folder of a LoRA fine-tune")->required();
  extract->add_option("--out", o->out, "stretch: the adapter file to write (atomically); peft: the folder to create")
      ->required();
  extract->add_option("--format", o->format,
                      "stretch (our adapter file) | peft (adapter_config.json + adapter_model.safetensors, for "
                      "PyPI's peft on the model `stretch export hf` writes) | gguf (llama.cpp's LoRA adapter, for "
                      "the model `stretch export gguf` writes: llama-cli --lora)")
      ->capture_default_str();
  extract->add_option("--as", o->as, "peft: the transformers class of the base, as for export hf --as")
      ->capture_default_str();
  extract->add_option("--base-out", o->base_out,
                      "peft: also write the base under the adapter as a Hugging Face folder; gguf: as a GGUF file "
                      "(with this run's context settings). Needed when the fine-tune trained base tensors with "
                      "--train-also");
  extract->add_option("--type", o->type, "gguf: type of the --base-out matrices, f32 | f16 | bf16 | q8_0 (the "
                                         "adapter is f32)")
      ->capture_default_str();
  CLI::App* apply = app.add_subcommand("apply", "Put an adapter file on a base model: a new run folder with the "
                                                "adapter unmerged (evaluate it, fine-tune it further with --lora R, "
                                                "or merge it)");
  apply->add_option("base", o->input, "Run directory or checkpoint folder of the base model")->required();
  apply->add_option("adapter", o->adapter,
                    "The adapter: a stretch adapter file (stretch lora extract), a PEFT adapter folder "
                    "(adapter_config.json) for the Hugging Face model the base was imported from, or a llama.cpp "
                    "GGUF LoRA adapter for the GGUF model the base was imported from or exported to")
      ->required()
      ->check(CLI::ExistingPath);
  apply->add_option("--out", o->out, "The run folder to create")->required();
  apply->add_flag("--other-base", o->other_base,
                  "Accept base weights other than the ones the adapter was trained on (same architecture)");

  return [o, merge, extract, apply]() -> int {
    if (merge->parsed()) {
      CheckpointMeta meta;
      auto model = load_adapted(o->input, meta);
      const LoraConfig lc = model->config().lora;
      auto merged = merge_lora(*model);
      write_run(o->out, *merged, meta,
                {{"merged_from", fs::absolute(meta.dir).string()}, {"lora", lc.to_json()}});
      std::printf("merged the rank-%d adapter (%s, scale %g) of %s\ncheckpoint: %s\n", lc.rank,
                  lc.targets_string().c_str(), static_cast<double>(lc.scale()), meta.dir.c_str(),
                  (o->out / "checkpoints").c_str());
      return 0;
    }
    if (extract->parsed()) {
      CheckpointMeta meta;
      auto model = load_adapted(o->input, meta);
      const nlohmann::json opts = read_checkpoint_options(meta);
      const std::string also = opts.contains("train_also") && opts["train_also"].is_string()
                                   ? opts["train_also"].get<std::string>()
                                   : std::string();
      if (o->format != "gguf" && extract->count("--type") > 0) throw UsageError("--type: goes with --format gguf");
      if (o->format == "peft") return extract_peft(*model, meta, also, *o);
      if (o->format == "gguf") return extract_gguf(*model, meta, also, *o);
      if (o->format != "stretch")
        throw UsageError("--format: expected stretch, peft or gguf, got '" + o->format + "'");
      if (!o->base_out.empty()) throw UsageError("--base-out: goes with --format peft or gguf");
      save_adapter(*model, also, o->out);
      std::size_t n = 0;
      const std::vector<char> trained = lora_trainable(*model, parse_train_also(also));
      for (std::size_t i = 0; i < trained.size(); i++) n += trained[i] ? model->specs()[i].numel() : 0;
      std::printf("wrote %s: rank %d, targets %s%s, %zu parameters (of %zu)\n", o->out.c_str(),
                  model->config().lora.rank, model->config().lora.targets_string().c_str(),
                  also.empty() ? "" : (", with the trained " + also).c_str(), n, model->num_parameters());
      return 0;
    }
    (void)apply;
    const CheckpointMeta meta = read_checkpoint_meta(o->input);
    auto base = load_model(meta);
    std::unique_ptr<Transformer> adapted;
    const bool peft = fs::is_directory(o->adapter), gguf = !peft && is_gguf(o->adapter);
    if ((peft || gguf) && o->other_base)
      throw UsageError("--other-base: applies to stretch adapter files (a " + std::string(peft ? "PEFT" : "GGUF") +
                       " adapter names no base)");
    if (peft) {
      const fs::path dir = o->adapter;
      const HfFamily family = hf_export_family(base->config(), "auto");
      const nlohmann::json cfg = read_json_file(dir / "adapter_config.json");
      const SafetensorsReader w = SafetensorsReader::open(dir / "adapter_model.safetensors");
      adapted = peft_to_model(*base, family, cfg, w, dir.string());
    } else if (gguf) {  // llama.cpp's
      adapted = lora_from_gguf(*base, GgufReader::open(o->adapter));
    } else {
      adapted = apply_adapter(*base, o->adapter, o->other_base);
    }
    nlohmann::json origin = {{"base", fs::absolute(meta.dir).string()}, {"adapter", fs::absolute(o->adapter).string()}};
    if (!peft && !gguf) {  // a stretch adapter file: the base tensors it carries, for a later extract to carry again
      const SafetensorsReader file = SafetensorsReader::open(o->adapter);
      const auto& md = file.metadata();
      if (auto it = md.find("train_also"); it != md.end() && !it->second.empty()) origin["train_also"] = it->second;
    }
    write_run(o->out, *adapted, meta, origin);
    std::printf("applied %s (rank %d, %s) to %s\ncheckpoint: %s\n", o->adapter.c_str(), adapted->config().lora.rank,
                adapted->config().lora.targets_string().c_str(), meta.dir.c_str(), (o->out / "checkpoints").c_str());
    return 0;
  };
}

}  // namespace stretch::cli
