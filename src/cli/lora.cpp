// `stretch lora merge | extract | apply`: a LoRA fine-tune's adapter (model/lora.hpp) folded into its weights,
// written on its own (run/lora_adapter.hpp), or put on a base model. Fine-tuning with an adapter is `stretch
// finetune --lora R`; eval, generate, passkey and export merge an adapter when they load a checkpoint.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <filesystem>
#include <memory>

#include "cli/commands.hpp"
#include "core/error.hpp"
#include "model/lora.hpp"
#include "run/checkpoint.hpp"
#include "run/lora_adapter.hpp"
#include "run/run_lock.hpp"

namespace stretch::cli {
namespace fs = std::filesystem;

namespace {

struct LoraCli {
  std::string input, adapter;
  fs::path out;
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
  extract->add_option("--out", o->out, "The adapter file to write (atomically)")->required();
  CLI::App* apply = app.add_subcommand("apply", "Put an adapter file on a base model: a new run folder with the "
                                                "adapter unmerged (evaluate it, fine-tune it further with --lora R, "
                                                "or merge it)");
  apply->add_option("base", o->input, "Run directory or checkpoint folder of the base model")->required();
  apply->add_option("adapter", o->adapter, "The adapter file (stretch lora extract)")->required()->check(CLI::ExistingFile);
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
    auto adapted = apply_adapter(*base, o->adapter, o->other_base);
    write_run(o->out, *adapted, meta,
              {{"base", fs::absolute(meta.dir).string()}, {"adapter", fs::absolute(o->adapter).string()}});
    std::printf("applied %s (rank %d, %s) to %s\ncheckpoint: %s\n", o->adapter.c_str(), adapted->config().lora.rank,
                adapted->config().lora.targets_string().c_str(), meta.dir.c_str(), (o->out / "checkpoints").c_str());
    return 0;
  };
}

}  // namespace stretch::cli
