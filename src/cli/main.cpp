// stretch: train and evaluate transformer language models past their training length.
// main() is the only place where errors become messages and exit codes (see core/error.hpp).
#include <CLI/CLI.hpp>
#include <cstdio>
#include <exception>
#include <new>
#include <string>

#include "cli/app.hpp"
#include "cli/field_flags.hpp"
#include "core/cpu.hpp"
#include "core/error.hpp"
#include "distributed/comm.hpp"

namespace {

stretch::LaunchInfo launch_info() {  // what mpirun says (a malformed value is reported when the job starts)
  try {
    return stretch::detect_launch();
  } catch (const stretch::Error&) {
    return {};
  }
}

// "stretch: error" alone, "stretch: rank 1: error" among several ranks.
std::string who() {
  const stretch::LaunchInfo l = launch_info();
  return l.size > 1 ? "stretch: rank " + std::to_string(l.rank) + ":" : "stretch:";
}

// Among several ranks, a rank's error ends the whole job: the others may be waiting in a collective for it.
int finish(int code) {
  if (code != 0 && launch_info().size > 1 && stretch::mpi_built()) {
    try {
      stretch::world_comm().abort_job(code);
    } catch (const stretch::Error&) {
    }
  }
  return code;
}

}  // namespace

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
    stretch::cpu_paths();  // a bad STRETCH_MAX_ISA is reported before any work
    const stretch::LaunchInfo launch = stretch::detect_launch();
    for (auto& [sub, run] : runners) {
      if (!sub->parsed()) continue;
      const std::string& name = sub->get_name();
      if (launch.size > 1 && name != "train" && name != "finetune" && name != "eval" && name != "passkey")
        throw stretch::UsageError("stretch " + name + " runs as one process; only train, finetune, eval and "
                                  "passkey run on several ranks (mpirun -np N), and this was launched as " +
                                  std::to_string(launch.size));
      return run();
    }
    return 2;
  } catch (const stretch::Error& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "\n%s error: %s\n", who().c_str(), stretch::cli::render_fields(e.what()).c_str());
    return finish(e.exit_code());
  } catch (const std::bad_alloc&) {
    std::fflush(stdout);
    std::fprintf(stderr, "\n%s error: out of memory (smaller sizes help: --batch or --length to train, --batch-tokens to "
                         "eval, --ctx to generate)\n", who().c_str());
    return finish(7);
  } catch (const std::exception& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "\n%s internal error: %s\n", who().c_str(), e.what());
    return finish(70);
  }
}
