// The `stretch` command line as a CLI11 app: every subcommand with its options, and the function that runs each.
// Building it runs nothing, so main() and the cli fuzz target (fuzz/cli.cpp) share exactly the same parser.
#pragma once
#include <CLI/CLI.hpp>
#include <map>
#include <memory>

#include "cli/commands.hpp"

namespace stretch::cli {

struct StretchApp {
  std::unique_ptr<CLI::App> app;
  std::map<CLI::App*, Runner> runners;  // subcommand -> what runs it when it was parsed
};

StretchApp make_app();

}  // namespace stretch::cli
