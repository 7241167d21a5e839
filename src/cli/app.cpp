#include "cli/app.hpp"


namespace stretch::cli {

StretchApp make_app() {
  StretchApp a;
  a.app = std::make_unique<CLI::App>(
      "stretch: train short, test long. Transformer language models on the CPU, with ALiBi, RoPE and the other "
      "position methods.");
  CLI::App& app = *a.app;
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("stretch ") + kVersion);
  const struct {
    const char* name;
    const char* help;
    Runner (*add)(CLI::App&);
  } subcommands[] = {
      {"train", "Train a language model (gpt or llama architecture) on text files", add_train},
      {"finetune", "Continue training a model, e.g. at a longer context with a RoPE scaling", add_finetune},
      {"import", "Make a stretch checkpoint from another format (llama2c, gguf)", add_import},
      {"export", "Write a checkpoint in another format (llama2c, gguf)", add_export},
      {"eval", "Perplexity of checkpoints on a text at many lengths (train short, test long)", add_eval},
      {"passkey", "Passkey retrieval accuracy by prompt length and needle depth (the landmark-attention test)",
       add_passkey},
      {"lora", "LoRA adapters: merge one into its model, extract it alone, apply it to a base", add_lora},
      {"generate", "Generate text from a model, streaming, with a key/value cache", add_generate},
      {"corpus", "Extract a built-in corpus (janeausten) to a text file", add_corpus},
      {"info", "This CPU, the build's target and the kernel paths this process takes", add_info},
  };
  for (const auto& s : subcommands) {
    CLI::App* sub = app.add_subcommand(s.name, s.help);
    a.runners[sub] = s.add(*sub);
  }
  return a;
}

}  // namespace stretch::cli
