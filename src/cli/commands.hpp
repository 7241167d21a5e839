// The subcommands. Each registers its options on the CLI11 app and returns the function that runs it; the
// function throws stretch errors, which only main() turns into messages and exit codes.
#pragma once
#include <functional>

namespace CLI {
class App;
}

namespace stretch::cli {

using Runner = std::function<int()>;

inline constexpr const char* kVersion = "0.1.0";  // stretch --version, stretch info

Runner add_train(CLI::App& app);
Runner add_finetune(CLI::App& app);
Runner add_import(CLI::App& app);
Runner add_export(CLI::App& app);
Runner add_corpus(CLI::App& app);
Runner add_eval(CLI::App& app);
Runner add_generate(CLI::App& app);
Runner add_passkey(CLI::App& app);
Runner add_lora(CLI::App& app);
Runner add_info(CLI::App& app);

}  // namespace stretch::cli
