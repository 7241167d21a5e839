#include "run/trainer.hpp"

#include <omp.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <optional>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <xxhash.h>

#include "core/error.hpp"
#include "core/fs.hpp"
#include "core/rng.hpp"
#include "distributed/comm.hpp"
#include "io/corpus.hpp"
#include "io/tokenizer.hpp"
#include "kernels/adamw.hpp"
#include "model/transformer.hpp"
#include "run/checkpoint.hpp"
#include "run/run_lock.hpp"
#include "run/evaluate.hpp"
#include "run/progress.hpp"

namespace stretch {
namespace fs = std::filesystem;
using json = nlohmann::json;

json TrainOptions::to_json() const {
  json texts = json::array();
  for (auto& t : text) texts.push_back(fs::absolute(t).lexically_normal().string());
  json j = {{"text", texts},
          {"valid_text", valid_text.empty() ? "" : fs::absolute(valid_text).lexically_normal().string()},
          {"valid_fraction", valid_fraction},
          {"tokenizer", init_from.empty() ? tokenizer : std::string("checkpoint")},
          {"doc_separator", doc_separator},
          {"init_from", init_from.empty() ? "" : fs::absolute(init_from).lexically_normal().string()},
          {"model", model.to_json()},
          {"batch", batch},
          {"grad_accum", grad_accum},
          {"steps", steps},
          {"lr", lr},
          {"min_lr_ratio", min_lr_ratio},
          {"warmup", warmup_steps()},
          {"weight_decay", weight_decay},
          {"beta1", beta1},
          {"beta2", beta2},
          {"eps", eps},
          {"clip", clip},
          {"decay_embeddings", decay_embeddings},
          {"decay_norms_biases", decay_norms_biases},
          {"seed", seed}};
  if (precision != "fp32") j["precision"] = precision;
  return j;
}


void TrainOptions::validate() const {
  auto need = [](bool ok, const std::string& flag, const std::string& what) {
    if (!ok) throw UsageError(flag + ": " + what);
  };
  need(!text.empty(), "--text", "at least one training text file is required");
  need(!out.empty(), "--out", "a run directory is required");
  need(tokenizer == "byte" || tokenizer == "gpt2", "--tokenizer", "expected 'byte' or 'gpt2', got '" + tokenizer + "'");
  need(init_from.empty() || model.position != PositionMethod::learned, "--length",
       "a learned position table cannot be fine-tuned at another length");
  need(batch >= 1 && batch <= 65536, "--batch", "expected an integer in [1, 65536], got " + std::to_string(batch));
  need(grad_accum >= 1 && grad_accum <= 65536, "--grad-accum", "expected an integer in [1, 65536]");
  need(steps >= 1 && steps <= 1000000000L, "--steps", "expected an integer in [1, 1e9], got " + std::to_string(steps));
  need(std::isfinite(lr) && lr > 0 && lr <= 10, "--lr", "expected a value in (0, 10]");
  need(min_lr_ratio >= 0 && min_lr_ratio <= 1, "--min-lr-ratio", "expected a value in [0, 1]");
  need(warmup >= -1 && warmup <= steps, "--warmup", "expected an integer in [0, --steps] (or -1 for auto)");
  need(weight_decay >= 0 && weight_decay <= 10, "--weight-decay", "expected a value in [0, 10]");
  need(beta1 >= 0 && beta1 < 1, "--beta1", "expected a value in [0, 1)");
  need(beta2 >= 0 && beta2 < 1, "--beta2", "expected a value in [0, 1)");
  need(eps > 0 && eps < 1, "--eps", "expected a value in (0, 1)");
  need(clip >= 0 && std::isfinite(clip), "--clip", "expected a value >= 0 (0 disables clipping)");
  need(valid_fraction > 0 && valid_fraction < 0.5, "--valid-fraction", "expected a value in (0, 0.5)");
  need(eval_interval >= 0, "--eval-interval", "expected an integer >= 0");
  need(eval_tokens >= 0, "--eval-tokens", "expected an integer >= 0");
  need(ckpt_interval >= 0, "--ckpt-interval", "expected an integer >= 0");
  need(keep_checkpoints >= 1 && keep_checkpoints <= 1000, "--keep-checkpoints", "expected an integer in [1, 1000]");
  need(log_interval >= 0, "--log-interval", "expected an integer >= 0");
  need(stop_after >= 0, "--stop-after", "expected an integer >= 0");
  need(nonfinite == "stop" || nonfinite == "skip", "--nonfinite", "expected 'stop' or 'skip', got '" + nonfinite + "'");
  need(precision == "fp32" || precision == "bf16", "--precision", "expected 'fp32' or 'bf16', got '" + precision + "'");
  need(attention == "auto" || attention == "materialized" || attention == "tiled", "--attention",
       "expected 'auto', 'materialized' or 'tiled', got '" + attention + "'");
  need(max_consecutive_skips >= 0, "--nonfinite", "the limit of consecutive skipped steps must be >= 0");
  try {
    static const std::map<std::string, std::string> flags = {
        {"n_layer", "--layers"}, {"n_head", "--heads"},     {"n_embd", "--width"},   {"mlp_hidden", "--mlp"},
        {"block_size", "--length"}, {"dropout", "--dropout"}, {"rope_base", "--rope-base"},
        {"n_kv_head", "--kv-heads"}, {"attn_window", "--attn-window"}, {"rope_scaling", "--rope-scaling"},
        {"bias", "--no-bias"}, {"embed_scale", "--embed-scale"}, {"activation", "--activation"},
        {"embed_norm", "--embed-norm"}, {"qkv_bias", "--qkv-bias"}, {"alibi_max_bias", "--alibi-max-bias"}};
    model.validate([](const std::string& f) {
      auto it = flags.find(f);
      return it == flags.end() ? f : it->second;
    });
  } catch (const ConfigError& e) {
    throw UsageError(e.what());
  }
}

namespace {

double schedule_lr(const TrainOptions& o, long s) {
  const long warmup = o.warmup_steps();
  if (s < warmup) return o.lr * static_cast<double>(s + 1) / static_cast<double>(warmup);
  const double min_lr = o.lr * o.min_lr_ratio;
  const double span = static_cast<double>(std::max<long>(1, o.steps - warmup));
  const double progress = std::min(1.0, static_cast<double>(s - warmup) / span);
  return min_lr + 0.5 * (o.lr - min_lr) * (1.0 + std::cos(M_PI * progress));
}

float decay_for(const TrainOptions& o, ParamKind k) {
  switch (k) {
    case ParamKind::matrix:
      return static_cast<float>(o.weight_decay);
    case ParamKind::embedding:
    case ParamKind::position:
      return o.decay_embeddings ? static_cast<float>(o.weight_decay) : 0.0f;
    default:
      return o.decay_norms_biases ? static_cast<float>(o.weight_decay) : 0.0f;
  }
}

// Keeps the metrics lines up to `step` (a resumed run rewrites what came after its checkpoint).
void truncate_metrics(const fs::path& path, long step) {
  std::ifstream in(path);
  if (!in) return;
  std::string line, kept;
  while (std::getline(in, line)) {
    try {
      auto j = json::parse(line);
      // a session stopped early (--stop-after) logged a validation marked "stopped": not part of the run's curve
      if (j.value("step", 0L) <= step && !j.value("stopped", false)) kept += line + "\n";
    } catch (const json::exception&) {
      // a torn last line from a crash: drop it
    }
  }
  write_file_atomic(path, kept);
}

// "layer N" for a tensor of block N (gpt "h.N.", llama "layers.N."), else where it sits.
std::string layer_of(const std::string& name) {
  for (const char* prefix : {"h.", "layers."}) {
    const std::size_t k = std::char_traits<char>::length(prefix);
    if (name.rfind(prefix, 0) == 0) {
      const std::size_t dot = name.find('.', k);
      if (dot != std::string::npos && dot > k) return "layer " + name.substr(k, dot - k);
    }
  }
  return name == "wte" || name == "wpe" || name == "t5_bias" || name == "tok_embeddings.weight" ? "embeddings"
                                                                                               : "output";
}

// The tensors of `slab` holding NaN/Inf, in backward order (the one nearest the loss first: a value that went
// bad in block N spreads to the gradients of blocks N, N-1, ..., 0), e.g.
// "'h.1.attn.c_attn.weight' (layer 1): 3 of 12288 values".
std::string nonfinite_tensors(const Transformer& model, const float* slab) {
  std::string out;
  int listed = 0, more = 0;
  const auto& specs = model.specs();
  for (auto it = specs.rbegin(); it != specs.rend(); ++it) {
    const std::size_t bad = count_nonfinite(slab + it->offset, it->numel());
    if (bad == 0) continue;
    if (listed == 6) {
      more++;
      continue;
    }
    out += std::string(listed ? ", " : "") + "'" + it->name + "' (" + layer_of(it->name) + "): " +
           std::to_string(bad) + " of " + std::to_string(it->numel()) + " values";
    listed++;
  }
  if (more > 0) out += ", and " + std::to_string(more) + " more tensor(s)";
  return out;
}

// What is non-finite at this step: the loss, the gradients, the weights (when one went bad in the last update).
std::string describe_nonfinite(long step, double loss, const Transformer& model) {
  std::string msg = "non-finite values at step " + std::to_string(step) + ":";
  std::string sep = " ";
  if (!std::isfinite(loss)) {
    msg += sep + "loss is " + (std::isnan(loss) ? "NaN" : "Inf");
    sep = "; ";
  }
  const std::string w = nonfinite_tensors(model, model.params().data());
  if (!w.empty()) {
    msg += sep + "weights: " + w;
    sep = "; ";
  }
  const std::string g = nonfinite_tensors(model, model.grads().data());
  if (!g.empty()) msg += sep + "gradients: " + g;
  return msg;
}

}  // namespace

TrainResult train(const TrainOptions& opt) {
  opt.validate();
  Comm& comm = opt.comm ? *opt.comm : single_comm();
  const int R = comm.size(), rank = comm.rank();
  const bool lead = rank == 0;  // writes checkpoints, metrics and progress
  if (opt.batch % R != 0)
    throw UsageError("--batch " + std::to_string(opt.batch) + ": the global batch is split evenly across the " +
                     std::to_string(R) + " ranks, so it must be a multiple of " + std::to_string(R));
  const auto t_start = std::chrono::steady_clock::now();
  Progress progress(opt.quiet || !lead);

  // tokenizer and data
  std::unique_ptr<Tokenizer> tok;
  std::unique_ptr<Transformer> init;
  if (!opt.init_from.empty()) {
    CheckpointMeta meta = read_checkpoint_meta(opt.init_from);
    tok = tokenizer_from_json(meta.tokenizer, (meta.dir / "config.json").string() + ": tokenizer");
    init = load_model(meta);
  } else if (opt.tokenizer == "gpt2") {
    if (opt.bpe_dir.empty()) throw UsageError("--bpe-dir: the gpt2 tokenizer needs the folder of encoder.json and vocab.bpe");
    tok = load_gpt2_tokenizer(opt.bpe_dir / "encoder.json", opt.bpe_dir / "vocab.bpe");
  } else {
    tok = make_byte_tokenizer();
  }
  const fs::path cache = opt.cache_dir.empty() ? default_cache_dir() : opt.cache_dir;
  CorpusStats cs;
  Segmenting seg;
  seg.separator = opt.doc_separator;
  seg.bos = tok->bos_id();
  std::vector<std::int32_t> train_tokens = load_corpus_tokens(opt.text, *tok, cache, &cs, seg);
  std::vector<std::int32_t> val_tokens;
  if (!opt.valid_text.empty()) {
    val_tokens = load_corpus_tokens({opt.valid_text}, *tok, cache, nullptr, seg);
  } else {
    const std::size_t n_val = static_cast<std::size_t>(static_cast<double>(train_tokens.size()) * opt.valid_fraction);
    val_tokens.assign(train_tokens.end() - static_cast<long>(n_val), train_tokens.end());
    train_tokens.resize(train_tokens.size() - n_val);
  }
  const int T = opt.model.block_size;
  if (train_tokens.size() < static_cast<std::size_t>(T) + 1)
    throw InputError((opt.text.size() == 1 ? opt.text[0].string() : std::string("the training corpus")) + ": has " +
                     std::to_string(train_tokens.size()) + " training tokens; training length " +
                     std::to_string(T) + " needs at least " + std::to_string(T + 1));
  if (val_tokens.size() < 2)
    throw InputError("validation split has " + std::to_string(val_tokens.size()) +
                     " tokens; at least 2 are needed (give a longer text, --valid-fraction or --valid-text)");

  ModelConfig mc = opt.model;
  mc.vocab_size = tok->vocab_size();
  TrainOptions eff = opt;
  eff.model = mc;
  const json opt_json = eff.to_json();

  Transformer model(mc);
  model.set_precision(opt.precision == "bf16" ? Precision::bf16 : Precision::fp32);
  model.set_training_attention(opt.attention == "tiled"          ? TrainingAttention::tiled
                               : opt.attention == "materialized" ? TrainingAttention::materialized
                                                                 : TrainingAttention::automatic);
  if (init) {  // fine-tuning: same tensors (names and shapes), other context settings allowed
    const auto& a = init->specs();
    const auto& b = model.specs();
    bool same = a.size() == b.size();
    for (std::size_t i = 0; same && i < a.size(); i++) same = a[i].name == b[i].name && a[i].shape == b[i].shape;
    if (!same)
      throw UsageError(opt.init_from.string() + ": the model's architecture differs from the one asked for "
                       "(fine-tuning keeps layers, widths, heads and vocabulary)");
  }
  Buffer<float> m(model.params().size()), v(model.params().size());
  TrainState st;
  Rng data_rng(opt.seed ^ 0x5eedda7a5eedda7aULL);

  std::error_code ec;
  const fs::path metrics_path = opt.out / "metrics.jsonl";
  // one writer per run folder (run/run_lock.hpp): taken before the folder's checkpoints are looked at
  std::optional<RunLock> lock;
  if (lead) {
    if (opt.resume && !fs::is_directory(opt.out, ec))
      throw UsageError("--resume: " + opt.out.string() + " does not exist (start the run without --resume)");
    fs::create_directories(opt.out, ec);
    if (ec) throw IoError(opt.out.string() + ": cannot create run directory: " + ec.message());
    lock.emplace(RunLock::acquire(opt.out, "--out"));
  }
  if (opt.resume) {
    if (fs::is_directory(opt.out / "checkpoints", ec) && list_checkpoints(opt.out).empty())
      throw UsageError("--resume: " + opt.out.string() + " has no complete checkpoint yet (the run stopped before "
                       "its first one); start it again without --resume");
    CheckpointMeta meta = read_checkpoint_meta(opt.out);
    auto loaded = load_model(meta);
    load_train_state(meta, *loaded, st, m, v);
    json a = st.options, b = opt_json;
    if (a != b) {
      std::string diff;
      for (auto& [k, val] : b.items())
        if (!a.contains(k) || a[k] != val) diff += (diff.empty() ? "" : ", ") + k;
      throw UsageError("--resume: the options differ from the checkpoint's in: " + diff +
                       " (a resumed run must use the same data, model and optimisation options)");
    }
    if (st.step > opt.steps)
      throw UsageError("--resume: " + meta.dir.string() + " is at step " + std::to_string(st.step) +
                       ", past --steps " + std::to_string(opt.steps) + " (--steps is the run's total, not a count "
                       "of further steps)");
    std::copy(loaded->params().data(), loaded->params().data() + loaded->params().size(), model.params().data());
    data_rng.set_state(st.data_rng);
    if (lead) {
      truncate_metrics(metrics_path, st.step);
      remove_checkpoint_debris(opt.out);  // what an interrupted checkpoint write left (hidden .tmp-* folders)
    }
    progress.note("resumed " + meta.dir.string() + " at step " + std::to_string(st.step));
  } else {
    if (!list_checkpoints(opt.out).empty())
      throw UsageError("--out: " + opt.out.string() +
                       " already holds a run (checkpoints/); pass --resume to continue it or choose another folder");
    if (lead) {
      // a run stopped before its first complete checkpoint starts again from scratch
      if (fs::exists(opt.out / "checkpoints", ec)) remove_checkpoint_debris(opt.out);
    }
    if (init) {
      std::copy(init->params().data(), init->params().data() + init->params().size(), model.params().data());
      init.reset();
    } else {
      model.init_weights(opt.seed);
    }
    if (lead) write_file_atomic(metrics_path, "");
  }
  // every rank starts from rank 0's weights (they are equal already: same seed or checkpoint; this makes it so)
  comm.broadcast(model.params().data(), model.params().size(), 0);
  st.options = opt_json;
  const json tok_json = tok->describe();

  progress.note("model: " + std::to_string(model.num_parameters()) + " parameters, " +
                std::string(to_string(mc.position)) + ", " + std::to_string(mc.n_layer) + " layers, width " +
                std::to_string(mc.n_embd) + ", " + std::to_string(mc.n_head) + " heads, T " + std::to_string(T) +
                "; data: " + std::to_string(train_tokens.size()) + " train / " + std::to_string(val_tokens.size()) +
                " validation tokens (" + tok->type() + (cs.from_cache ? ", cached" : "") + "); threads " +
                std::to_string(omp_get_max_threads()) +
                (R > 1 ? " per rank, " + std::to_string(R) + " ranks of " + std::to_string(opt.batch / R) +
                             " windows" : std::string()));

  std::ofstream metrics;
  if (lead) {
    metrics.open(metrics_path, std::ios::app);
    if (!metrics) throw IoError(metrics_path.string() + ": cannot open for appending");
  }
  auto log_metrics = [&](const json& rec) {  // a full disk stops the run with a clear error, not silently
    if (!lead) return;
    errno = 0;
    metrics << rec.dump() << "\n" << std::flush;
    if (!metrics)
      throw IoError(metrics_path.string() + ": write failed" +
                    (errno != 0 ? std::string(": ") + std::strerror(errno) : std::string()));
  };

  const int B = opt.batch;  // global: rank r takes windows [r * lB, (r + 1) * lB) of the B drawn
  const int lB = B / R;
  const long tokens_per_step = static_cast<long>(B) * T * opt.grad_accum;
  const long log_every = opt.log_interval > 0 ? opt.log_interval : std::max<long>(1, opt.steps / 50);
  std::vector<std::int32_t> x(static_cast<std::size_t>(lB) * T), y(x.size()), pos(static_cast<std::size_t>(B) * T);
  const std::size_t pos_offset = static_cast<std::size_t>(rank) * lB * T;  // this rank's rows of pos
  const bool plain_pos = mc.position_ids.kind == PositionIdsKind::plain;
  const std::size_t range = train_tokens.size() - static_cast<std::size_t>(T);  // start in [0, range)
  const double elapsed_before = st.elapsed_s;
  const long first_step = st.step;
  auto now_s = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
  };
  double last_log_time = now_s();
  long last_log_step = st.step;
  double loss = 0.0;
  long last_ckpt = st.step;
  int consecutive_skips = 0;
  double good_loss = 0.0;  // the last step's loss that was not skipped
  double allreduce_s = 0.0;

  auto eval_val = [&](long max_tokens) {  // each rank scores its shard of the batches; the sums are all-reduced
    LossResult r = evaluate_nonoverlapping(model, val_tokens, T, B, max_tokens, rank, R);
    double sums[2] = {r.sum_nll, static_cast<double>(r.count)};
    comm.allreduce_sum(sums, 2);
    return LossResult{sums[0], static_cast<long>(sums[1])};
  };
  auto checkpoint = [&] {  // rank 0 only
    st.data_rng = data_rng.state();
    st.elapsed_s = elapsed_before + now_s();
    save_checkpoint(opt.out, model, tok_json, T, st, m, v, opt.keep_checkpoints);
    last_ckpt = st.step;
  };
  // Ranks apply the same update to the same weights; this catches ranks that drifted apart anyway (another
  // binary or CPU on some host), at every checkpoint interval and at the end. A collective: all ranks call it.
  auto check_ranks_agree = [&] {
    if (R == 1) return;
    const std::uint64_t h = XXH3_64bits(model.params().data(), model.params().size() * sizeof(float));
    if (!comm.same_on_all(h))
      throw NumericError("the ranks' weights differ at step " + std::to_string(st.step) +
                         " (every rank must run the same stretch build on the same kind of CPU)");
  };

  const long stop_step = opt.stop_after > 0 ? std::min(opt.steps, st.step + opt.stop_after) : opt.steps;
  auto signalled = [&] { return opt.stop_signal ? opt.stop_signal->load() : 0; };
  while (st.step < stop_step && !signalled()) {
    const double lr = schedule_lr(opt, st.step);
    model.zero_grad();
    loss = 0.0;
    Rng drop_rng(opt.seed * 0x9e3779b97f4a7c15ULL + static_cast<std::uint64_t>(st.step) +
                 static_cast<std::uint64_t>(rank) * 0x632be59bd9b4e019ULL);  // each rank its own masks
    Rng pos_rng(opt.seed * 0xd1b54a32d192ed03ULL + static_cast<std::uint64_t>(st.step));
    for (int micro = 0; micro < opt.grad_accum; micro++) {
      for (int gb = 0; gb < B; gb++) {  // every rank draws all B starts (the same RNG stream), keeps its own
        const std::size_t s = data_rng.below(range);
        const int b = gb - rank * lB;
        if (b < 0 || b >= lB) continue;
        std::copy(train_tokens.begin() + static_cast<long>(s), train_tokens.begin() + static_cast<long>(s) + T,
                  x.begin() + static_cast<long>(b) * T);
        std::copy(train_tokens.begin() + static_cast<long>(s) + 1,
                  train_tokens.begin() + static_cast<long>(s) + T + 1, y.begin() + static_cast<long>(b) * T);
      }
      ForwardOptions fo;
      fo.need_grad = true;
      fo.training = true;
      // the mean over this rank's tokens, scaled so that the ranks' gradients sum to the global batch's mean
      fo.loss_scale = 1.0f / static_cast<float>(opt.grad_accum * R);
      fo.rng = &drop_rng;
      if (!plain_pos) fill_position_ids(mc.position_ids, pos.data(), B, T, pos_rng);
      loss += model.forward(x.data(), y.data(), plain_pos ? nullptr : pos.data() + pos_offset, lB, T, fo) /
              opt.grad_accum;
      model.backward();
    }
    if (opt.after_backward) opt.after_backward(st.step + 1, model);
    if (R > 1) {  // one all-reduce over the gradient slab (and the loss): every rank then holds the global mean
      const auto t0 = std::chrono::steady_clock::now();
      comm.allreduce_sum(model.grads().data(), model.grads().size());
      allreduce_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      comm.allreduce_sum(&loss, 1);
      loss /= R;
    }
    // gradient norm (double) and non-finite check in one pass: a float's square is below 1.2e77, so the sum of
    // squares is finite exactly when every gradient is (no separate scan; the tensors are named on failure only)
    double norm2 = 0.0;
    const float* g = model.grads().data();
    for (std::size_t i = 0; i < model.grads().size(); i++) norm2 += static_cast<double>(g[i]) * g[i];
    const double gnorm = std::sqrt(norm2);
    if (!std::isfinite(loss) || !std::isfinite(norm2)) {
      const std::string what = describe_nonfinite(st.step + 1, loss, model);
      if (opt.nonfinite != "skip")
        throw NumericError(what + " (training stopped; lower --lr, raise --warmup, or --nonfinite skip)");
      consecutive_skips++;
      st.skipped_steps++;
      if (consecutive_skips > opt.max_consecutive_skips)
        throw NumericError(what + " (training stopped: more than " + std::to_string(opt.max_consecutive_skips) +
                           " consecutive steps skipped)");
      if (lead) {
        std::fflush(stdout);  // a warning even with --quiet
        std::fprintf(stderr, "warning: %s; step skipped (no update; %ld skipped so far)\n", what.c_str(),
                     st.skipped_steps);
      }
      log_metrics({{"step", st.step + 1}, {"skipped", true}, {"reason", what}, {"skipped_steps", st.skipped_steps}});
    } else {
      consecutive_skips = 0;
      good_loss = loss;
    }
    const bool skip_update = consecutive_skips > 0;
    float gscale = 1.0f;
    if (opt.clip > 0 && gnorm > opt.clip) gscale = static_cast<float>(opt.clip / gnorm);
    if (gscale != 1.0f && !skip_update) {
      float* gm = model.grads().data();
      for (std::size_t i = 0; i < model.grads().size(); i++) gm[i] *= gscale;
    }
    for (auto& s : model.specs()) {
      if (skip_update) break;
      AdamWStep a;
      a.lr = static_cast<float>(lr);
      a.beta1 = static_cast<float>(opt.beta1);
      a.beta2 = static_cast<float>(opt.beta2);
      a.eps = static_cast<float>(opt.eps);
      a.weight_decay = decay_for(opt, s.kind);
      a.t = st.step + 1;
      adamw_update(model.params().data() + s.offset, model.grads().data() + s.offset, m.data() + s.offset,
                   v.data() + s.offset, s.numel(), a);
    }
    st.step++;
    st.tokens_seen += tokens_per_step;

    const double t_now = now_s();
    if (!skip_update && (st.step % log_every == 0 || st.step == opt.steps || progress.live())) {
      const double tps = (st.step - last_log_step) * static_cast<double>(tokens_per_step) /
                         std::max(1e-9, t_now - last_log_time);
      json rec = {{"step", st.step}, {"loss", loss},     {"lr", lr},
                  {"grad_norm", gnorm}, {"tokens_per_s", tps}, {"elapsed_s", elapsed_before + t_now}};
      if (R > 1) rec["allreduce_s"] = allreduce_s;  // this session's, cumulative
      if (st.step % log_every == 0 || st.step == opt.steps) log_metrics(rec);
      const double eta = (opt.steps - st.step) * (t_now - last_log_time) / std::max<long>(1, st.step - last_log_step);
      progress.step(st.step, opt.steps, loss, lr, tps, elapsed_before + t_now, eta,
                    st.step % log_every == 0 || st.step == opt.steps);
      if (st.step % log_every == 0) {
        last_log_time = t_now;
        last_log_step = st.step;
      }
    }
    if (opt.eval_interval > 0 && st.step % opt.eval_interval == 0 && st.step != opt.steps) {
      LossResult r = eval_val(opt.eval_tokens);
      log_metrics({{"step", st.step}, {"val_loss", r.mean()}, {"val_ppl", std::exp(r.mean())},
                   {"val_tokens", r.count}});
      progress.note("step " + std::to_string(st.step) + ": validation loss " + std::to_string(r.mean()) +
                    " (ppl " + std::to_string(std::exp(r.mean())) + ", " + std::to_string(r.count) + " tokens)");
    }
    if (opt.ckpt_interval > 0 && st.step % opt.ckpt_interval == 0 && st.step != opt.steps) {
      check_ranks_agree();
      if (lead) checkpoint();
    }
  }
  check_ranks_agree();
  if (lead && (last_ckpt != st.step || !fs::exists(opt.out / "checkpoints", ec))) checkpoint();
  if (const int sig = signalled()) {  // asked to stop: checkpointed above; no validation pass, no "final" line
    TrainResult res;
    res.steps = st.step;
    res.stopped_by = sig;
    if (const auto kept = list_checkpoints(opt.out); !kept.empty()) res.checkpoint = kept.back();
    res.seconds = now_s();
    log_metrics({{"step", st.step}, {"stopped", true}, {"signal", sig}});
    return res;
  }
  if (st.step < opt.steps) {  // stopped early on request: checkpointed, resumable
    progress.note("stopped at step " + std::to_string(st.step) + " of " + std::to_string(opt.steps) +
                  "; continue with --resume");
  }

  TrainResult res;
  res.steps = st.step;
  res.session_steps = st.step - first_step;
  res.final_train_loss = good_loss;
  LossResult r = eval_val(0);
  res.val_loss = r.mean();
  res.val_tokens = r.count;
  if (tok->is_byte_level()) res.val_bits_per_byte = r.mean() / std::log(2.0);
  res.seconds = now_s();
  res.tokens_per_s = static_cast<double>(st.step - first_step) * tokens_per_step / std::max(1e-9, res.seconds);
  res.skipped_steps = st.skipped_steps;
  res.ranks = R;
  res.allreduce_seconds = allreduce_s;
  // "final" only for a run that reached --steps (scripts look for it); a session stopped early says "stopped"
  json fin = {{"step", st.step}, {st.step == opt.steps ? "final" : "stopped", true}, {"val_loss", res.val_loss},
              {"val_ppl", std::exp(res.val_loss)}, {"val_tokens", res.val_tokens}};
  if (st.skipped_steps > 0) fin["skipped_steps"] = st.skipped_steps;
  if (R > 1) {
    fin["ranks"] = R;
    fin["allreduce_s"] = allreduce_s;
  }
  // a resumed run that had already reached --steps trains nothing and keeps its one "final" line
  if (first_step < opt.steps || !opt.resume) log_metrics(fin);
  else progress.note("the run had already reached --steps " + std::to_string(opt.steps) + "; nothing to train");
  return res;
}

}  // namespace stretch
