// `stretch eval`: perplexity of one or more checkpoints on a text at many lengths, in one comparison.
#include <omp.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <map>
#include <memory>
#include <sstream>

#include "cli/commands.hpp"
#include "cli/flag_checks.hpp"
#include "cli/context_flags.hpp"
#include "cli/inference_flags.hpp"
#include "core/error.hpp"
#include "core/fs.hpp"
#include "distributed/comm.hpp"
#include "io/corpus.hpp"
#include "io/tokenizer.hpp"
#include "run/checkpoint.hpp"
#include "run/evaluator.hpp"
#include "run/report.hpp"
#include "run/train_data.hpp"

namespace stretch::cli {

namespace {

struct EvalCli {
  WeightStorage precision = WeightStorage::fp32;
  std::vector<std::string> checkpoints;
  std::filesystem::path text;
  std::string lengths;
  std::string up_to;
  std::string protocol = "nonoverlapping";
  int stride = 0;
  int buckets = 8;
  long max_tokens = 0;
  bool clamp_positions = false;
  std::string tokenizer;
  std::filesystem::path bpe_dir, cache_dir, json_out, csv_out, plot_out;
  int threads = 0;
  int batch_tokens = 8192;
  std::string doc_sep;
  ContextFlags ctx;
  std::uint64_t seed = 1;
  int keep = -1;   // attention sinks: stream each window through a cache of `cache` slots
  int cache = 0;   // 0: each model's trained length
};

}  // namespace

Runner add_eval(CLI::App& app) {
  auto o = std::make_shared<EvalCli>();
  app.add_option("checkpoints", o->checkpoints, "Run directories or checkpoint folders")->required();
  app.add_option("--text", o->text, "Text to evaluate on (UTF-8)")->required()->check(CLI::ExistingFile);
  app.add_option("--lengths", o->lengths, "Evaluation lengths, e.g. 256,512,1024");
  app.add_option("--up-to", o->up_to, "Lengths L, 2L, 4L, ... up to this multiple of each model's training length "
                                      "L, e.g. 16x");
  app.add_option("--doc-sep", o->doc_sep,
                 "Split the text into documents at this string (e.g. '\\n\\n'), each starting with the tokenizer's BOS");
  add_context_flags(app, o->ctx);
  add_extension_flags(app, o->ctx);
  app.add_option("--seed", o->seed, "Seed for randomized position ids")->capture_default_str()
      ->check(non_negative_integer());
  app.add_option("--protocol", o->protocol, "nonoverlapping | sliding | chunked | llamacpp (docs/EVALUATION.md)")
      ->capture_default_str();
  app.add_option("--stride", o->stride, "Sliding protocol: tokens scored per window (default: length / 2)")
      ->check(positive_count());
  app.add_option("--buckets", o->buckets, "Loss-by-position buckets per window")->capture_default_str();
  app.add_option("--max-tokens", o->max_tokens, "Score at most this many tokens per length (0: all)")
      ->capture_default_str();
  app.add_flag("--clamp-positions", o->clamp_positions,
               "Learned position tables: reuse the last row past the training length instead of failing");
  app.add_option("--tokenizer", o->tokenizer, "Check that every checkpoint uses this tokenizer (byte | gpt2)");
  app.add_option("--bpe-dir", o->bpe_dir, "encoder.json + vocab.bpe folder, with --tokenizer gpt2");
  app.add_option("--cache-dir", o->cache_dir, "Token cache folder");
  app.add_option("--json", o->json_out, "Write the results as JSON");
  app.add_option("--csv", o->csv_out, "Write the results as CSV");
  app.add_option("--plot", o->plot_out, "Draw perplexity vs length into this PNG (gnuplot)");
  app.add_option("--keep", o->keep,
                 "Attention sinks (StreamingLLM): stream each window through a --ctx cache that keeps its first N "
                 "tokens while it slides (rope, alibi, t5, none; docs/RETRIEVAL.md)")
      ->check(sink_count());
  app.add_option("--ctx", o->cache, "Cache slots with --keep (default: each model's trained length)")
      ->check(positive_count());
  app.add_option("--batch-tokens", o->batch_tokens, "Tokens per forward pass (windows are batched up to it)")
      ->capture_default_str();
  add_weight_precision_flag(app, o->precision);
  app.add_option("--threads", o->threads, "Threads (default: OMP_NUM_THREADS, else all cores)")
      ->check(thread_count());

  return [o]() -> int {
    if (o->threads < 0 || o->threads > 4096) throw UsageError("--threads: expected an integer in [1, 4096]");
    if (o->threads > 0) omp_set_num_threads(o->threads);
    check_weight_precision(o->precision);
    if (o->lengths.empty() == o->up_to.empty())
      throw UsageError("give exactly one of --lengths (a list) or --up-to (a multiple such as 16x)");
    if (o->buckets < 1 || o->buckets > 1024) throw UsageError("--buckets: expected an integer in [1, 1024]");
    if (o->max_tokens < 0) throw UsageError("--max-tokens: expected an integer >= 0");
    if (o->batch_tokens < 1) throw UsageError("--batch-tokens: expected a positive integer");
    if (o->stride < 0) throw UsageError("--stride: expected a positive integer");
    if (o->cache > 0 && o->keep < 0) throw UsageError("--ctx: applies with --keep (the cache of attention sinks)");
    // output paths before any work: a long sweep must not end in a failed write
    if (!o->json_out.empty()) check_output_path(o->json_out, "--json");
    if (!o->csv_out.empty()) check_output_path(o->csv_out, "--csv");
    if (!o->plot_out.empty()) check_output_path(o->plot_out, "--plot");
    EvalSettings settings;
    settings.protocol = parse_eval_protocol(o->protocol);
    if (o->stride > 0 && settings.protocol != EvalProtocol::sliding)
      throw UsageError("--stride applies to --protocol sliding only");
    settings.stride = o->stride;
    settings.buckets = o->buckets;
    settings.max_tokens = o->max_tokens;
    settings.clamp_positions = o->clamp_positions;
    settings.batch_tokens = o->batch_tokens;
    const std::vector<int> fixed = o->lengths.empty() ? std::vector<int>{} : parse_lengths(o->lengths);
    const int up_to = o->up_to.empty() ? 0 : parse_up_to(o->up_to);

    std::unique_ptr<Tokenizer> asked;
    if (!o->tokenizer.empty()) asked = named_tokenizer(o->tokenizer, o->bpe_dir);
    // read every checkpoint's config first, so a bad one fails before any long evaluation
    std::vector<CheckpointMeta> metas;
    for (auto& c : o->checkpoints) {
      metas.push_back(read_checkpoint_meta(c));
      override_context(o->ctx, metas.back().model, c);  // run-time overrides; the weights are untouched
    }
    const std::string doc_sep = unescape(o->doc_sep);
    const auto cache = o->cache_dir.empty() ? default_cache_dir() : o->cache_dir;

    // under mpirun -np N every rank scores its shard of each length's batches; rank 0 alone prints and writes
    Comm& comm = world_comm();
    const bool lead = comm.rank() == 0;
    SweepReport report;
    report.text = o->text.string();
    report.protocol = settings.protocol;
    report.stride = o->stride;
    if (lead) std::printf("%s\n", table_header().c_str());
    std::map<std::string, std::vector<std::int32_t>> tokens_by_tokenizer;  // the text, once per tokenizer
    for (std::size_t mi = 0; mi < metas.size(); mi++) {
      const CheckpointMeta& meta = metas[mi];
      auto tok = tokenizer_from_json(meta.tokenizer, (meta.dir / "config.json").string() + ": tokenizer");
      if (asked && asked->identity() != tok->identity())
        throw UsageError(o->checkpoints[mi] + ": the checkpoint's tokenizer is " + tok->identity() +
                         ", not the asked --tokenizer " + asked->identity());
      auto model = load_model_merged(meta, o->precision);
      Segmenting seg;
      seg.separator = doc_sep;
      seg.bos = tok->bos_id();
      auto [it, fresh] = tokens_by_tokenizer.try_emplace(tok->identity());
      if (fresh) it->second = load_corpus_tokens({o->text}, *tok, cache, nullptr, seg);
      // randomized models are evaluated with randomized ids (Ruoss et al.); shifted is a training augmentation
      settings.positions = meta.model.position_ids;
      if (settings.positions.kind == PositionIdsKind::shifted) settings.positions = PositionIds{};
      settings.seed = o->seed;
      settings.bos = tok->bos_id();
      const std::vector<std::int32_t>& tokens = it->second;
      ModelReport mr;
      mr.name = o->checkpoints[mi];
      while (mr.name.size() > 1 && mr.name.back() == '/') mr.name.pop_back();
      mr.position = describe_context(meta.model, o->ctx);
      if (o->precision == WeightStorage::bf16) mr.position += " bf16";
      settings.keep = o->keep;
      settings.cache = o->cache > 0 ? o->cache : meta.train_length;
      if (o->keep >= 0) mr.position += " keep:" + std::to_string(o->keep) + " ctx:" + std::to_string(settings.cache);
      mr.train_length = meta.train_length;
      mr.byte_level = tok->is_byte_level();
      settings.byte_level = mr.byte_level;
      std::vector<int> lengths = fixed;
      if (up_to > 0) lengths = up_to_lengths(meta.train_length, up_to);
      for (int T : lengths) {
        // --alibi-interp auto: the slopes of each length (none at or below the trained length)
        if (o->ctx.alibi_interp_auto() && meta.model.position == PositionMethod::alibi)
          model->set_alibi_interp(T > meta.model.block_size ? T : 0);
        mr.results.push_back(evaluate_length(*model, tokens, T, settings, comm));
        if (!lead) continue;
        std::printf("%s\n", table_row(mr, mr.results.back()).c_str());
        std::fflush(stdout);
      }
      report.models.push_back(std::move(mr));
    }
    if (!lead) return 0;
    if (!o->json_out.empty()) write_file_atomic(o->json_out, to_json(report).dump(2) + "\n");
    if (!o->csv_out.empty()) write_file_atomic(o->csv_out, to_csv(report));
    if (!o->plot_out.empty()) {
      plot_png(report, o->plot_out);
      std::printf("plot: %s\n", o->plot_out.c_str());
    }
    return 0;
  };
}

}  // namespace stretch::cli
