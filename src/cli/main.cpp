// stretch: train and evaluate transformer language models past their training length.
// main() is the only place where errors become messages and exit codes (see core/error.hpp).
#include <CLI/CLI.hpp>
#include <cstdio>
#include <exception>
#include <new>

#include "cli/app.hpp"
#include "core/error.hpp"

int main(int argc, char** argv) {
  stretch::cli::StretchApp a = stretch::cli::make_app();
  CLI::App& app = *a.app;
  auto& runners = a.runners;
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
