// `stretch generate MODEL --prompt TEXT`: sampled or greedy continuation, streamed to stdout; statistics to
// stderr. With --interactive, every line read from stdin is a prompt.
#include <omp.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <iostream>
#include <memory>

#include "cli/commands.hpp"
#include "cli/flag_checks.hpp"
#include "cli/context_flags.hpp"
#include "cli/inference_flags.hpp"
#include "core/error.hpp"
#include "io/corpus.hpp"
#include "io/tokenizer.hpp"
#include "run/checkpoint.hpp"
#include "run/generate.hpp"

namespace stretch::cli {

namespace {
struct GenerateCli {
  WeightStorage precision = WeightStorage::fp32;
  std::string model, prompt;
  GenerateOptions opt;
  bool no_slide = false, interactive = false, ignore_eos = false;
  int threads = 0;
  ContextFlags ctx;
};
}  // namespace

Runner add_generate(CLI::App& app) {
  auto o = std::make_shared<GenerateCli>();
  app.add_option("model", o->model, "Run directory or checkpoint folder")->required();
  app.add_option("--prompt,-p", o->prompt, "Text to continue (empty: start from BOS)");
  app.add_option("-n,--tokens", o->opt.max_new, "Tokens to generate")->capture_default_str();
  app.add_option("--temperature,-t", o->opt.sampling.temperature, "Sampling temperature (0: greedy)")->capture_default_str();
  app.add_option("--top-k", o->opt.sampling.top_k, "Sample among the K most likely tokens (0: all)")->capture_default_str();
  app.add_option("--top-p", o->opt.sampling.top_p, "Nucleus sampling: the smallest set reaching P (1: all)")
      ->capture_default_str();
  app.add_option("--seed", o->opt.sampling.seed, "Sampling seed")->capture_default_str()
      ->check(non_negative_integer());
  app.add_option("--ctx", o->opt.ctx, "Key/value cache size in tokens (default: the model's trained length)")
      ->check(positive_count());
  app.add_flag("--no-slide", o->no_slide,
               "Stop with an error at --ctx instead of dropping the oldest tokens (alibi, t5, none models slide)");
  app.add_option("--keep", o->opt.keep,
                 "Attention sinks (StreamingLLM): keep the first N tokens while the cache slides; rope models then "
                 "slide too, indefinitely in bounded memory")
      ->check(sink_count());
  app.add_flag("--ignore-eos", o->ignore_eos, "Keep going past end-of-text / a new BOS");
  app.add_flag("--interactive,-i", o->interactive, "Read prompts from stdin, one per line");
  add_weight_precision_flag(app, o->precision);
  add_kv_type_flag(app, o->opt.kv_type);
  app.add_option("--threads", o->threads, "Threads (default: OMP_NUM_THREADS, else all cores)")
      ->check(thread_count());
  add_context_flags(app, o->ctx);
  add_extension_flags(app, o->ctx);
  return [o]() -> int {
    if (o->threads < 0 || o->threads > 4096) throw UsageError("--threads: expected an integer in [1, 4096]");
    if (o->threads > 0) omp_set_num_threads(o->threads);
    check_weight_precision(o->precision);
    if (o->opt.max_new < 0) throw UsageError("-n: expected a number of tokens >= 0, got " + std::to_string(o->opt.max_new));
    if (o->opt.ctx < 0) throw UsageError("--ctx: expected a positive number of tokens, got " + std::to_string(o->opt.ctx));
    o->opt.sampling.validate();
    validate_utf8(o->prompt, "--prompt");  // as train refuses invalid UTF-8 text
    o->opt.slide = !o->no_slide;
    o->opt.stop_at_eos = !o->ignore_eos;
    CheckpointMeta meta = read_checkpoint_meta(o->model);
    override_context(o->ctx, meta.model, o->model);
    if (o->ctx.alibi_interp_auto() && meta.model.position == PositionMethod::alibi) {
      const int ctx = o->opt.ctx > 0 ? o->opt.ctx : meta.model.block_size;  // auto: the cache's length
      meta.model.alibi_interp = ctx > meta.model.block_size ? ctx : 0;
    }
    auto tok = tokenizer_from_json(meta.tokenizer, (meta.dir / "config.json").string() + ": tokenizer");
    auto model = load_model_merged(meta, o->precision);
    auto run = [&](const std::string& prompt) {
      std::fwrite(prompt.data(), 1, prompt.size(), stdout);  // every byte, NUL included (fputs stops at one)
      std::fflush(stdout);
      GenerateStats st = generate(*model, *tok, prompt, o->opt, [](const std::string& piece) {
        std::fwrite(piece.data(), 1, piece.size(), stdout);
        std::fflush(stdout);
      });
      std::fputs("\n", stdout);
      std::fflush(stdout);
      std::fprintf(stderr,
                   "prompt: %ld tokens in %.3f s (%.0f tokens/s); generated: %ld tokens in %.3f s (%.1f tokens/s); "
                   "cache: %.2f MB for %d tokens%s\n",
                   st.prompt_tokens, st.prefill_s, st.prompt_tokens / std::max(1e-9, st.prefill_s), st.generated,
                   st.decode_s, st.generated / std::max(1e-9, st.decode_s), st.cache_bytes / 1048576.0, st.ctx,
                   st.slid ? (o->opt.keep >= 0 ? " (slid past it, keeping " + std::to_string(o->opt.keep) +
                                                     " sink tokens)" : std::string(" (slid past it, dropping the oldest tokens)")).c_str()
                           : "");
    };
    if (!o->interactive) {
      run(o->prompt);
      return 0;
    }
    std::string line;
    for (long n = 1; std::getline(std::cin, line); n++) {
      validate_utf8(line, "stdin line " + std::to_string(n));
      run(line);
    }
    return 0;
  };
}

}  // namespace stretch::cli
