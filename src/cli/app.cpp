#include "cli/app.hpp"

#include <utility>

namespace stretch::cli {

StretchApp make_app() {
  StretchApp a;
  a.app = std::make_unique<CLI::App>(
      "stretch: train short, test long. Transformer language models on the CPU, with ALiBi, RoPE and the other "
      "position methods.");
  CLI::App& app = *a.app;
  app.require_subcommand(1);
  app.set_version_flag("--version", "stretch 0.1.0");
  auto reg = [&](CLI::App* sub, Runner r) { a.runners[sub] = std::move(r); };
  {
    auto* sub = app.add_subcommand("train", "Train a language model (gpt or llama architecture) on text files");
    reg(sub, add_train(*sub));
  }
  {
    auto* sub = app.add_subcommand("finetune", "Continue training a model, e.g. at a longer context with a RoPE scaling");
    reg(sub, add_finetune(*sub));
  }
  {
    auto* sub = app.add_subcommand("import", "Make a stretch checkpoint from another format (llama2c, gguf)");
    reg(sub, add_import(*sub));
  }
  {
    auto* sub = app.add_subcommand("export", "Write a checkpoint in another format (llama2c, gguf)");
    reg(sub, add_export(*sub));
  }
  {
    auto* sub = app.add_subcommand("eval", "Perplexity of checkpoints on a text at many lengths (train short, test long)");
    reg(sub, add_eval(*sub));
  }
  {
    auto* sub = app.add_subcommand("generate", "Generate text from a model, streaming, with a key/value cache");
    reg(sub, add_generate(*sub));
  }
  {
    auto* sub = app.add_subcommand("corpus", "Extract a built-in corpus (janeausten) to a text file");
    reg(sub, add_corpus(*sub));
  }
  return a;
}

}  // namespace stretch::cli
