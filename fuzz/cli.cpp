// Fuzz target: the command line's option parsing (cli/app.hpp: the same CLI11 app as `stretch`), never running a
// command. Input: the arguments, separated by NUL bytes (argv[0] is "stretch"). Each argument is also given to the
// value parsers of the context flags (--rope-scaling, --logn, --positions) and to unescape (--doc-sep).
#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>
#include <vector>

#include "cli/app.hpp"
#include "cli/context_flags.hpp"
#include "fuzz_util.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace stretch;
  std::vector<std::string> args{"stretch"};
  std::string cur;
  for (std::size_t i = 0; i < size; ++i) {
    if (data[i] == 0) {
      args.push_back(cur);
      cur.clear();
    } else {
      cur.push_back(static_cast<char>(data[i]));
    }
  }
  if (!cur.empty()) args.push_back(cur);
  if (args.size() > 64) return 0;

  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  fuzz::expect_clean([&] {
    cli::StretchApp a = cli::make_app();
    try {
      a.app->parse(static_cast<int>(argv.size()), argv.data());
    } catch (const CLI::ParseError&) {  // what main() turns into a usage message (exit 2, or 0 for --help)
    }
  });
  for (std::size_t i = 1; i < args.size(); ++i) {
    fuzz::expect_clean([&] { (void)cli::unescape(args[i]); });
    fuzz::expect_clean([&] {
      cli::ContextFlags f;
      f.rope_scaling = args[i];
      ModelConfig c;
      c.position = PositionMethod::rope;
      cli::apply_context_flags(f, c);
    });
    fuzz::expect_clean([&] {
      cli::ContextFlags f;
      f.logn = args[i];
      ModelConfig c;
      cli::apply_context_flags(f, c);
    });
    fuzz::expect_clean([&] {
      cli::ContextFlags f;
      f.positions = args[i];
      ModelConfig c;
      cli::apply_context_flags(f, c);
    });
  }
  return 0;
}
