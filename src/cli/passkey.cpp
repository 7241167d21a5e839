// `stretch passkey CKPT...`: passkey retrieval accuracy by prompt length and needle depth (run/passkey.hpp has
// the protocol; docs/RETRIEVAL.md the usage). Under `mpirun -np N` the trials are split across the ranks and
// rank 0 prints and writes the reports.
#include <omp.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <memory>
#include <sstream>

#include "cli/commands.hpp"
#include "cli/flag_checks.hpp"
#include "cli/context_flags.hpp"
#include "cli/inference_flags.hpp"
#include "core/error.hpp"
#include "core/fs.hpp"
#include "core/number_list.hpp"
#include "distributed/comm.hpp"
#include "io/tokenizer.hpp"
#include "run/checkpoint.hpp"
#include "run/passkey.hpp"
#include "run/report.hpp"

namespace stretch::cli {

namespace {

struct PasskeyCli {
  WeightStorage precision = WeightStorage::fp32;
  std::vector<std::string> checkpoints;
  std::string lengths, up_to, depths = "0,0.25,0.5,0.75,1";
  PasskeySettings s;
  std::filesystem::path json_out, csv_out, plot_out, haystack;
  int threads = 0;
  bool verbose = false;
  ContextFlags ctx;
};

std::vector<double> parse_depths(const std::string& text) {
  const std::vector<double> out = parse_number_list(text, "--depths", "a list like 0,0.25,0.5,0.75,1");
  for (const double v : out) {
    if (v >= 0.0 && v <= 1.0) continue;
    std::ostringstream shown;
    shown << v;
    throw UsageError("--depths: " + shown.str() + " is outside [0, 1] (0: the needle right after the instruction, "
                     "1: right before the question)");
  }
  if (out.empty()) throw UsageError("--depths: expected a list like 0,0.25,0.5,0.75,1");
  return out;
}

}  // namespace

Runner add_passkey(CLI::App& app) {
  auto o = std::make_shared<PasskeyCli>();
  app.add_option("checkpoints", o->checkpoints, "Run directories or checkpoint folders")->required();
  app.add_option("--lengths", o->lengths, "Prompt lengths in tokens, e.g. 256,512,1024");
  app.add_option("--up-to", o->up_to, "Lengths L, 2L, 4L, ... up to this multiple of each model's training length "
                                      "L, e.g. 8x");
  app.add_option("--depths", o->depths, "Needle depths in [0, 1] (0: after the instruction, 1: before the question)")
      ->capture_default_str();
  app.add_option("--trials", o->s.trials, "Trials (keys) per length and depth")->capture_default_str();
  app.add_option("--seed", o->s.seed, "Seed of the keys (each trial's key depends on seed, length, depth and trial)")
      ->capture_default_str()->check(non_negative_integer());
  app.add_option("--answer-tokens", o->s.answer_tokens, "Tokens decoded greedily after each prompt")
      ->capture_default_str();
  app.add_option("--ctx", o->s.ctx, "Key/value cache size in tokens (default: each prompt's length + answer tokens)")
      ->check(positive_count());
  app.add_option("--keep", o->s.keep,
                 "Attention sinks: keep the first N tokens while the cache slides (StreamingLLM; with --ctx below "
                 "the prompt, rope models slide too)")
      ->check(sink_count());
  add_context_flags(app, o->ctx);
  add_extension_flags(app, o->ctx);
  app.add_option("--haystack", o->haystack,
                 "Needle in a haystack: hide the needle in this text's words instead of the passkey fillers")
      ->check(CLI::ExistingFile);
  app.add_option("--json", o->json_out, "Write every trial as JSON");
  app.add_option("--csv", o->csv_out, "Write every trial as CSV");
  app.add_option("--plot", o->plot_out, "Draw a length x depth heat map into this PNG (gnuplot)");
  app.add_flag("--verbose,-v", o->verbose, "Print each trial (key, prompt tokens, decoded answer)");
  add_weight_precision_flag(app, o->precision);
  add_kv_type_flag(app, o->s.kv_type);
  app.add_option("--threads", o->threads, "Threads (default: OMP_NUM_THREADS, else all cores)")
      ->check(thread_count());

  return [o]() -> int {
    if (o->threads < 0 || o->threads > 4096) throw UsageError("--threads: expected an integer in [1, 4096]");
    if (o->threads > 0) omp_set_num_threads(o->threads);
    check_weight_precision(o->precision);
    if (o->lengths.empty() == o->up_to.empty())
      throw UsageError("give exactly one of --lengths (a list) or --up-to (a multiple such as 8x)");
    if (o->s.trials < 1 || o->s.trials > 100000)
      throw UsageError("--trials: expected an integer in [1, 100000], got " + std::to_string(o->s.trials));
    if (o->s.answer_tokens < 1 || o->s.answer_tokens > 4096)
      throw UsageError("--answer-tokens: expected an integer in [1, 4096], got " + std::to_string(o->s.answer_tokens));
    if (o->s.ctx < 0) throw UsageError("--ctx: expected a positive number of tokens, got " + std::to_string(o->s.ctx));
    // output paths before any work: a long sweep must not end in a failed write
    if (!o->json_out.empty()) check_output_path(o->json_out, "--json");
    if (!o->csv_out.empty()) check_output_path(o->csv_out, "--csv");
    if (!o->plot_out.empty()) check_output_path(o->plot_out, "--plot");
    o->s.depths = parse_depths(o->depths);
    if (!o->haystack.empty()) {
      o->s.haystack = haystack_words(read_file(o->haystack), o->haystack.string());
      o->s.haystack_name = o->haystack.string();
    }
    o->s.alibi_interp_auto = o->ctx.alibi_interp_auto();
    const std::vector<int> fixed = o->lengths.empty() ? std::vector<int>{} : parse_lengths(o->lengths);
    const int up_to = o->up_to.empty() ? 0 : parse_up_to(o->up_to);

    Comm& comm = world_comm();
    const bool lead = comm.rank() == 0;
    std::vector<CheckpointMeta> metas;  // every config first, so a bad one fails before any long sweep
    for (auto& c : o->checkpoints) {
      metas.push_back(read_checkpoint_meta(c));
      override_context(o->ctx, metas.back().model, c);
    }
    PasskeyReport report;
    report.seed = o->s.seed;
    report.haystack = o->s.haystack_name;
    report.trials = o->s.trials;
    report.answer_tokens = o->s.answer_tokens;
    for (std::size_t mi = 0; mi < metas.size(); mi++) {
      const CheckpointMeta& meta = metas[mi];
      auto tok = tokenizer_from_json(meta.tokenizer, (meta.dir / "config.json").string() + ": tokenizer");
      auto model = load_model_merged(meta, o->precision);
      const std::vector<int> lengths = up_to > 0 ? up_to_lengths(meta.train_length, up_to) : fixed;
      std::string name = o->checkpoints[mi];
      while (name.size() > 1 && name.back() == '/') name.pop_back();
      auto on_trial = [&](const PasskeyCell& cell, const PasskeyTrial& t) {
        if (!o->verbose) return;
        std::fprintf(stderr, "%s rank %d: length %d depth %g: key %d, %d tokens, answer '%s' %s\n", name.c_str(),
                     comm.rank(), cell.length, cell.depth, t.key, t.prompt_tokens, t.output.c_str(),
                     t.correct ? "correct" : "wrong");
      };
      PasskeyModelResult r = passkey_sweep(*model, *tok, lengths, o->s, comm, on_trial);
      r.name = name;
      r.position = describe_context(meta.model, o->ctx);
      if (o->s.keep >= 0) r.position += " keep:" + std::to_string(o->s.keep);
      r.train_length = meta.train_length;
      if (lead) {
        std::printf("%s\n", passkey_table(r).c_str());
        std::fflush(stdout);
      }
      report.models.push_back(std::move(r));
    }
    if (!lead) return 0;
    if (!o->json_out.empty()) write_file_atomic(o->json_out, to_json(report).dump(2) + "\n");
    if (!o->csv_out.empty()) write_file_atomic(o->csv_out, to_csv(report));
    if (!o->plot_out.empty()) {
      plot_passkey_png(report, o->plot_out);
      std::printf("plot: %s\n", o->plot_out.c_str());
    }
    return 0;
  };
}

}  // namespace stretch::cli
