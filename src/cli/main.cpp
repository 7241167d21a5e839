// stretch: train and evaluate transformer language models past their training length.
// main() is the only place where errors become messages and exit codes (see core/error.hpp).
#include <CLI/CLI.hpp>
#include <cstdio>
#include <exception>
#include <map>
#include <new>

#include "cli/commands.hpp"
#include "core/error.hpp"

int main(int argc, char** argv) {
  CLI::App app{"stretch: train short, test long. Transformer language models on the CPU, with ALiBi, RoPE and "
               "the other position methods."};
  app.require_subcommand(1);
  app.set_version_flag("--version", "stretch 0.1.0");
  std::map<CLI::App*, stretch::cli::Runner> runners;
  auto reg = [&](CLI::App* sub, stretch::cli::Runner r) { runners[sub] = std::move(r); };
  {
    auto* sub = app.add_subcommand("train", "Train a language model (gpt or llama architecture) on text files");
    reg(sub, stretch::cli::add_train(*sub));
  }
  {
    auto* sub = app.add_subcommand("finetune", "Continue training a model, e.g. at a longer context with a RoPE scaling");
    reg(sub, stretch::cli::add_finetune(*sub));
  }
  {
    auto* sub = app.add_subcommand("import", "Make a stretch checkpoint from another format (llama2c, gguf)");
    reg(sub, stretch::cli::add_import(*sub));
  }
  {
    auto* sub = app.add_subcommand("export", "Write a checkpoint in another format (llama2c, gguf)");
    reg(sub, stretch::cli::add_export(*sub));
  }
  {
    auto* sub = app.add_subcommand("eval", "Perplexity of checkpoints on a text at many lengths (train short, test long)");
    reg(sub, stretch::cli::add_eval(*sub));
  }
  {
    auto* sub = app.add_subcommand("generate", "Generate text from a model, streaming, with a key/value cache");
    reg(sub, stretch::cli::add_generate(*sub));
  }
  {
    auto* sub = app.add_subcommand("corpus", "Extract a built-in corpus (janeausten) to a text file");
    reg(sub, stretch::cli::add_corpus(*sub));
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);
    return code == 0 ? 0 : 2;
  }
  try {
    for (auto& [sub, run] : runners)
      if (sub->parsed()) return run();
    return 2;
  } catch (const stretch::Error& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "\nstretch: error: %s\n", e.what());
    return e.exit_code();
  } catch (const std::bad_alloc&) {
    std::fflush(stdout);
    std::fprintf(stderr, "\nstretch: error: out of memory (try a smaller --batch or --length)\n");
    return 7;
  } catch (const std::exception& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "\nstretch: internal error: %s\n", e.what());
    return 70;
  }
}
