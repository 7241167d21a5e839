// The training loop (run/trainer.hpp). train() sets a Session up and runs it; a step is four named parts, as in
// llm.c: forward_backward (the micro-batches of this rank, then the all-reduce), check_gradients (the norm and
// the NaN/Inf policy), update_weights (clipping and AdamW, run/../kernels) and after_step (metrics, interval
// validation, checkpoint policy). Data is run/train_data, the log run/metrics_log, options run/train_options.
#include "run/trainer.hpp"

#include <omp.h>
#include <xxhash.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>
#include <optional>
#include <utility>

#include "core/buffer.hpp"
#include "core/cpu.hpp"
#include "core/error.hpp"
#include "core/rng.hpp"
#include "distributed/comm.hpp"
#include "io/tokenizer.hpp"
#include "kernels/adamw.hpp"
#include "kernels/grad_norm.hpp"
#include "kernels/paths.hpp"
#include "model/transformer.hpp"
#include "run/checkpoint.hpp"
#include "run/evaluate.hpp"
#include "run/lora_adapter.hpp"
#include "run/metrics_log.hpp"
#include "run/retrieval_data.hpp"
#include "run/progress.hpp"
#include "run/run_lock.hpp"
#include "run/train_data.hpp"

namespace stretch {
namespace fs = std::filesystem;
using json = nlohmann::json;

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
    case ParamKind::lora_a:
    case ParamKind::lora_b:
      return static_cast<float>(o.weight_decay);
    case ParamKind::embedding:
    case ParamKind::position:
      return o.decay_embeddings ? static_cast<float>(o.weight_decay) : 0.0f;
    default:
      return o.decay_norms_biases ? static_cast<float>(o.weight_decay) : 0.0f;
  }
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
    out += std::string(listed ? ", " : "") + "'" + it->name + "' (" + it->where() + "): " +
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

// The tokenizer of a run: a fine-tune's comes from its checkpoint (whose weights are loaded into `init`).
std::unique_ptr<Tokenizer> run_tokenizer(const TrainOptions& opt, std::unique_ptr<Transformer>& init) {
  if (opt.init_from.empty()) return named_tokenizer(opt.tokenizer, opt.bpe_dir);
  CheckpointMeta meta = read_checkpoint_meta(opt.init_from);
  init = load_model(meta);
  return tokenizer_from_json(meta.tokenizer, (meta.dir / "config.json").string() + ": tokenizer");
}

// The model to train: the options' configuration with the tokenizer's vocabulary, its precision and training
// attention; a fine-tune's tensors (names and shapes) must be those of the checkpoint it starts from.
std::unique_ptr<Transformer> make_model(const TrainOptions& opt, const ModelConfig& mc, const Transformer* init) {
  auto model = std::make_unique<Transformer>(mc);
  model->set_precision(opt.precision);
  model->set_training_attention(opt.attention);
  if (opt.s2_attn) model->set_shifted_groups(mc.block_size / 4);
  if (init) {
    // the base tensors are the slab's prefix (model/params.cpp): the same names and shapes; a LoRA fine-tune adds
    // its adapter after them, or continues the one the checkpoint has
    const auto& a = init->specs();
    const auto& b = model->specs();
    const ModelConfig& ic = init->config();
    if (ic.position == PositionMethod::learned && mc.block_size != ic.block_size)
      throw UsageError("`block_size`: a learned position table cannot be fine-tuned at another length (the model's is " +
                       std::to_string(ic.block_size) + " positions, asked for " + std::to_string(mc.block_size) + ")");
    if (ic.lora.enabled() && !(ic.lora.rank == mc.lora.rank && ic.lora.targets == mc.lora.targets))
      throw UsageError(opt.init_from.string() + ": the model has an unmerged LoRA adapter (rank " +
                       std::to_string(ic.lora.rank) + ", targets " + ic.lora.targets_string() +
                       "); continue it with `lora` " + std::to_string(ic.lora.rank) + " `lora_targets` " +
                       ic.lora.targets_string() + ", or merge it first (stretch lora merge)");
    bool same = a.size() <= b.size();
    for (std::size_t i = 0; same && i < a.size(); i++) same = a[i].name == b[i].name && a[i].shape == b[i].shape;
    if (!same)
      throw UsageError(opt.init_from.string() + ": the model's architecture differs from the one asked for "
                       "(fine-tuning keeps layers, widths, heads and vocabulary)");
  }
  return model;
}

// The slab ranges (offset, floats) that hold the trainable tensors, adjacent ones joined (with the padding between
// them, which stays zero): one range, the whole slab, when everything trains.
std::vector<std::pair<std::size_t, std::size_t>> trainable_ranges(const Transformer& m) {
  std::vector<std::pair<std::size_t, std::size_t>> r;
  const auto& specs = m.specs();
  for (std::size_t i = 0; i < specs.size(); i++) {
    if (!m.trainable(i)) continue;
    const std::size_t begin = specs[i].offset;
    const std::size_t end = i + 1 < specs.size() ? specs[i + 1].offset : m.params().size();
    if (!r.empty() && r.back().first + r.back().second == begin)
      r.back().second += end - begin;
    else
      r.emplace_back(begin, end - begin);
  }
  return r;
}

// One call of train(): the run's data, model, optimizer state and bookkeeping, and the step's parts.
class Session {
 public:
  explicit Session(const TrainOptions& opt);
  TrainResult run();

 private:
  void open_run_folder();
  void resume();
  void start_new();
  void announce();
  double forward_backward();
  bool check_gradients(double loss, double norm2);  // false: skip this step's update
  void update_weights(double lr, double gnorm);
  void after_step(double loss, double lr, double gnorm, bool skipped);
  LossResult eval_val(long max_tokens);
  void checkpoint();
  void check_ranks_agree();
  void check_ranks_compute_alike();
  TrainResult stopped(int sig);
  TrainResult finish();
  double now_s() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start_).count();
  }
  int signalled() const { return opt_.stop_signal ? opt_.stop_signal->load() : 0; }

  const TrainOptions& opt_;
  Comm& comm_;
  const int R_, rank_;
  const bool lead_;  // rank 0: writes checkpoints, metrics and progress
  const std::chrono::steady_clock::time_point t_start_ = std::chrono::steady_clock::now();
  Progress progress_;
  std::unique_ptr<Transformer> init_;  // a fine-tune's starting weights, until copied
  std::unique_ptr<Tokenizer> tok_;
  json tok_json_;  // its description, stored with each checkpoint
  TrainData data_;
  std::unique_ptr<RetrievalRows> retrieval_;  // --retrieval-mix: synthetic passkey rows
  Haystack retrieval_haystack_ = Haystack::mixed;
  ModelConfig mc_;
  json opt_json_;
  std::unique_ptr<Transformer> model_;
  TrainAlso also_;  // --train-also
  std::vector<std::pair<std::size_t, std::size_t>> ranges_;  // the trainable part of the slab
  std::size_t trained_parameters_ = 0;
  // AdamW moments, laid out as the parameter slab; a frozen tensor's part is never touched nor saved (a large
  // slab's pages for it are never made resident: core/buffer.hpp)
  Buffer<float> m_, v_;
  TrainState st_;
  Rng data_rng_;
  std::optional<RunLock> lock_;
  MetricsLog metrics_;
  const int T_, B_, lB_;  // training length; global batch; this rank's windows [rank * lB, (rank + 1) * lB)
  const long tokens_per_step_, log_every_;
  std::vector<std::int32_t> x_, y_, pos_;
  double elapsed_before_ = 0.0, last_log_time_ = 0.0, good_loss_ = 0.0, allreduce_s_ = 0.0;
  long first_step_ = 0, last_log_step_ = 0, last_ckpt_ = 0;
  int consecutive_skips_ = 0;
};

// The options checked (UsageError naming the flag) before anything else of the session is built, and its ranks.
Comm& validated_comm(const TrainOptions& opt) {
  opt.validate();
  return opt.comm ? *opt.comm : single_comm();
}

Session::Session(const TrainOptions& opt)
    : opt_(opt),
      comm_(validated_comm(opt)),
      R_(comm_.size()),
      rank_(comm_.rank()),
      lead_(rank_ == 0),
      progress_(opt.quiet || !lead_),
      data_rng_(opt.seed ^ 0x5eedda7a5eedda7aULL),
      metrics_(opt.out / "metrics.jsonl", lead_),
      T_(opt.model.block_size),
      B_(opt.batch),
      lB_(opt.batch / R_),
      tokens_per_step_(static_cast<long>(opt.batch) * opt.model.block_size * opt.grad_accum),
      log_every_(opt.log_interval > 0 ? opt.log_interval : std::max<long>(1, opt.steps / 50)) {
  if (opt.batch % R_ != 0)
    throw UsageError("`batch` " + std::to_string(opt.batch) + ": the global batch is split evenly across the " +
                     std::to_string(R_) + " ranks, so it must be a multiple of " + std::to_string(R_));
  tok_ = run_tokenizer(opt, init_);
  tok_json_ = tok_->describe();
  data_ = load_train_data(opt, *tok_);
  if (opt.retrieval_mix > 0.0) {
    try {
      retrieval_ = std::make_unique<RetrievalRows>(*tok_, T_);
      retrieval_haystack_ = parse_haystack(opt.retrieval_haystack, "`retrieval_haystack`");
    } catch (const ConfigError& e) {
      throw UsageError(std::string("`retrieval_mix` with `block_size` ") + std::to_string(T_) + ": " +
                       e.what());
    }
  }
  mc_ = opt.model;
  mc_.vocab_size = tok_->vocab_size();
  TrainOptions eff = opt;
  eff.model = mc_;
  opt_json_ = eff.to_json();
  model_ = make_model(opt, mc_, init_.get());
  also_ = parse_train_also(opt.train_also);
  model_->set_trainable(lora_trainable(*model_, also_));
  ranges_ = trainable_ranges(*model_);
  for (std::size_t i = 0; i < model_->specs().size(); i++)
    if (model_->trainable(i)) trained_parameters_ += model_->specs()[i].numel();
  m_ = Buffer<float>(model_->params().size());
  v_ = Buffer<float>(model_->params().size());
  x_.resize(static_cast<std::size_t>(lB_) * T_);
  y_.resize(x_.size());
  pos_.resize(static_cast<std::size_t>(B_) * T_);
}

// Takes the run folder (one writer: run/run_lock.hpp, before its checkpoints are looked at), then resumes or
// starts; every rank ends with rank 0's weights.
void Session::open_run_folder() {
  std::error_code ec;
  if (lead_) {
    if (opt_.resume && !fs::is_directory(opt_.out, ec))
      throw UsageError("`resume`: " + opt_.out.string() + " does not exist (start the run without `resume`)");
    fs::create_directories(opt_.out, ec);
    if (ec) throw IoError(opt_.out.string() + ": cannot create run directory: " + ec.message());
    lock_.emplace(RunLock::acquire(opt_.out, "`out`"));
  }
  if (opt_.resume) resume();
  else start_new();
  // every rank starts from rank 0's weights (they are equal already: same seed or checkpoint; this makes it so)
  comm_.broadcast(model_->params().data(), model_->params().size(), 0);
  st_.options = opt_json_;
}

void Session::resume() {
  std::error_code ec;
  if (fs::is_directory(opt_.out / "checkpoints", ec) && list_checkpoints(opt_.out).empty())
    throw UsageError("`resume`: " + opt_.out.string() + " has no complete checkpoint yet (the run stopped before "
                     "its first one); start it again without `resume`");
  CheckpointMeta meta = read_checkpoint_meta(opt_.out);
  auto loaded = load_model(meta);
  loaded->set_trainable(lora_trainable(*loaded, also_));  // the moments a LoRA run saved: its trainable tensors'
  load_train_state(meta, *loaded, st_, m_, v_);
  const json& a = st_.options;
  if (a != opt_json_) {
    std::string diff;
    for (auto& [k, val] : opt_json_.items())
      if (!a.contains(k) || a[k] != val) diff += (diff.empty() ? "" : ", ") + k;
    throw UsageError("`resume`: the options differ from the checkpoint's in: " + diff +
                     " (a resumed run must use the same data, model and optimisation options)");
  }
  if (st_.step > opt_.steps)
    throw UsageError("`resume`: " + meta.dir.string() + " is at step " + std::to_string(st_.step) +
                     ", past `steps` " + std::to_string(opt_.steps) + " (`steps` is the run's total, not a count "
                     "of further steps)");
  std::copy(loaded->params().data(), loaded->params().data() + loaded->params().size(), model_->params().data());
  data_rng_.set_state(st_.data_rng);
  metrics_.keep_up_to(st_.step);
  if (lead_) remove_checkpoint_debris(opt_.out);  // what an interrupted write left (hidden .tmp-* folders)
  progress_.note("resumed " + meta.dir.string() + " at step " + std::to_string(st_.step));
}

void Session::start_new() {
  std::error_code ec;
  if (!list_checkpoints(opt_.out).empty())
    throw UsageError("`out`: " + opt_.out.string() +
                     " already holds a run (checkpoints/); pass `resume` to continue it or choose another folder");
  // a run stopped before its first complete checkpoint starts again from scratch
  if (lead_ && fs::exists(opt_.out / "checkpoints", ec)) remove_checkpoint_debris(opt_.out);
  if (init_) {  // its tensors are the slab's prefix (make_model); a new adapter follows them
    std::copy(init_->params().data(), init_->params().data() + init_->params().size(), model_->params().data());
    if (!init_->config().lora.enabled()) model_->init_adapter(opt_.seed);
    init_.reset();
  } else {
    model_->init_weights(opt_.seed);
  }
  metrics_.start_fresh();
}

void Session::announce() {
  const LoraConfig& lc = mc_.lora;
  if (lc.enabled())
    progress_.note("LoRA: rank " + std::to_string(lc.rank) + ", alpha " + std::to_string(lc.alpha) + " (scale " +
                   std::to_string(lc.scale()) + "), targets " + lc.targets_string() +
                   (opt_.train_also.empty() ? std::string() : ", also training " + opt_.train_also) + ": " +
                   std::to_string(trained_parameters_) + " of " + std::to_string(model_->num_parameters()) +
                   " parameters train");
  progress_.note("model: " + std::to_string(model_->num_parameters()) + " parameters, " +
                 std::string(to_string(mc_.position)) + ", " + std::to_string(mc_.n_layer) + " layers, width " +
                 std::to_string(mc_.n_embd) + ", " + std::to_string(mc_.n_head) + " heads, T " +
                 std::to_string(T_) + "; data: " + std::to_string(data_.train.size()) + " train / " +
                 std::to_string(data_.val.size()) + " validation tokens (" + tok_->type() +
                 (data_.stats.from_cache ? ", cached" : "") + "); threads " + std::to_string(omp_get_max_threads()) +
                 (R_ > 1 ? " per rank, " + std::to_string(R_) + " ranks of " + std::to_string(lB_) + " windows"
                         : std::string()));
}

// The step's micro-batches on this rank (gradients accumulate in the model's slab), then one all-reduce of the
// gradient slab and the loss: every rank then holds the global mean. Returns the step's mean loss.
double Session::forward_backward() {
  model_->zero_grad();
  double loss = 0.0;
  Rng drop_rng(opt_.seed * 0x9e3779b97f4a7c15ULL + static_cast<std::uint64_t>(st_.step) +
               static_cast<std::uint64_t>(rank_) * 0x632be59bd9b4e019ULL);  // each rank its own masks
  Rng pos_rng(opt_.seed * 0xd1b54a32d192ed03ULL + static_cast<std::uint64_t>(st_.step));
  const bool plain_pos = mc_.position_ids.kind == PositionIdsKind::plain;
  const std::size_t pos_offset = static_cast<std::size_t>(rank_) * lB_ * T_;  // this rank's rows of pos
  for (int micro = 0; micro < opt_.grad_accum; micro++) {
    draw_windows(data_.train, T_, B_, lB_, rank_, data_rng_, x_, y_);
    if (retrieval_)
      retrieval_->apply(data_.train, B_, lB_, rank_, opt_.retrieval_mix, retrieval_haystack_, data_rng_, x_, y_);
    ForwardOptions fo;
    fo.need_grad = true;
    fo.training = true;
    // the mean over this rank's tokens, scaled so that the ranks' gradients sum to the global batch's mean
    fo.loss_scale = 1.0f / static_cast<float>(opt_.grad_accum * R_);
    fo.rng = &drop_rng;
    if (!plain_pos) fill_position_ids(mc_.position_ids, pos_.data(), B_, T_, pos_rng);
    loss += model_->forward(x_.data(), y_.data(), plain_pos ? nullptr : pos_.data() + pos_offset, lB_, T_, fo) /
            opt_.grad_accum;
    model_->backward();
  }
  if (opt_.after_backward) opt_.after_backward(st_.step + 1, *model_);
  if (R_ > 1) {
    const auto t0 = std::chrono::steady_clock::now();
    for (const auto& [off, n] : ranges_) comm_.allreduce_sum(model_->grads().data() + off, n);
    allreduce_s_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    comm_.allreduce_sum(&loss, 1);
    loss /= R_;
  }
  return loss;
}

// The NaN/Inf policy (TrainOptions::nonfinite): norm2 is finite exactly when every gradient is
// (kernels/grad_norm.hpp), so the tensors are named on failure only.
bool Session::check_gradients(double loss, double norm2) {
  if (std::isfinite(loss) && std::isfinite(norm2)) {
    consecutive_skips_ = 0;
    good_loss_ = loss;
    return true;
  }
  const std::string what = describe_nonfinite(st_.step + 1, loss, *model_);
  if (opt_.nonfinite != NonFinite::skip)
    throw NumericError(what + " (training stopped; lower `lr`, raise `warmup`, or `nonfinite` skip)");
  consecutive_skips_++;
  st_.skipped_steps++;
  if (consecutive_skips_ > opt_.max_consecutive_skips)
    throw NumericError(what + " (training stopped: more than " + std::to_string(opt_.max_consecutive_skips) +
                       " consecutive steps skipped)");
  if (lead_) {
    std::fflush(stdout);  // a warning even with --quiet
    std::fprintf(stderr, "warning: %s; step skipped (no update; %ld skipped so far)\n", what.c_str(),
                 st_.skipped_steps);
  }
  metrics_.log({{"step", st_.step + 1}, {"skipped", true}, {"reason", what}, {"skipped_steps", st_.skipped_steps}});
  return false;
}

// Clipping to the global norm opt.clip, then AdamW tensor by tensor with its weight decay.
void Session::update_weights(double lr, double gnorm) {
  if (opt_.clip > 0 && gnorm > opt_.clip) {
    const auto s = static_cast<float>(opt_.clip / gnorm);
    if (s != 1.0f)
      for (const auto& [off, n] : ranges_) scale(model_->grads().data() + off, n, s);
  }
  const auto& specs = model_->specs();
  for (std::size_t i = 0; i < specs.size(); i++) {
    if (!model_->trainable(i)) continue;
    const ParamSpec& s = specs[i];
    AdamWStep a;
    a.lr = static_cast<float>(lr);
    a.beta1 = static_cast<float>(opt_.beta1);
    a.beta2 = static_cast<float>(opt_.beta2);
    a.eps = static_cast<float>(opt_.eps);
    a.weight_decay = decay_for(opt_, s.kind);
    a.t = st_.step + 1;
    adamw_update(model_->params().data() + s.offset, model_->grads().data() + s.offset, m_.data() + s.offset,
                 v_.data() + s.offset, s.numel(), a);
  }
}

// The step counted; its metrics line and progress, the interval validation and checkpoint.
void Session::after_step(double loss, double lr, double gnorm, bool skipped) {
  st_.step++;
  st_.tokens_seen += tokens_per_step_;
  const double t_now = now_s();
  const bool log_line = st_.step % log_every_ == 0 || st_.step == opt_.steps;
  if (!skipped && (log_line || progress_.live())) {
    const double tps = (st_.step - last_log_step_) * static_cast<double>(tokens_per_step_) /
                       std::max(1e-9, t_now - last_log_time_);
    json rec = {{"step", st_.step},       {"loss", loss},         {"lr", lr},
                {"grad_norm", gnorm},     {"tokens_per_s", tps},  {"elapsed_s", elapsed_before_ + t_now}};
    if (R_ > 1) rec["allreduce_s"] = allreduce_s_;  // this session's, cumulative
    if (log_line) metrics_.log(rec);
    const double eta =
        (opt_.steps - st_.step) * (t_now - last_log_time_) / std::max<long>(1, st_.step - last_log_step_);
    progress_.step(st_.step, opt_.steps, loss, lr, tps, elapsed_before_ + t_now, eta, log_line);
    if (st_.step % log_every_ == 0) {
      last_log_time_ = t_now;
      last_log_step_ = st_.step;
    }
  }
  if (opt_.eval_interval > 0 && st_.step % opt_.eval_interval == 0 && st_.step != opt_.steps) {
    LossResult r = eval_val(opt_.eval_tokens);
    metrics_.log({{"step", st_.step}, {"val_loss", r.mean()}, {"val_ppl", std::exp(r.mean())},
                  {"val_tokens", r.count}});
    progress_.note("step " + std::to_string(st_.step) + ": validation loss " + std::to_string(r.mean()) +
                   " (ppl " + std::to_string(std::exp(r.mean())) + ", " + std::to_string(r.count) + " tokens)");
  }
  if (opt_.ckpt_interval > 0 && st_.step % opt_.ckpt_interval == 0 && st_.step != opt_.steps) {
    check_ranks_agree();
    if (lead_) checkpoint();
  }
}

// Each rank scores its shard of the validation batches; the sums are all-reduced.
LossResult Session::eval_val(long max_tokens) {
  LossResult r = evaluate_nonoverlapping(*model_, data_.val, T_, B_, max_tokens, rank_, R_);
  double sums[2] = {r.sum_nll, static_cast<double>(r.count)};
  comm_.allreduce_sum(sums, 2);
  return LossResult{sums[0], static_cast<long>(sums[1])};
}

void Session::checkpoint() {  // rank 0 only
  st_.data_rng = data_rng_.state();
  st_.elapsed_s = elapsed_before_ + now_s();
  save_checkpoint(opt_.out, *model_, tok_json_, T_, st_, m_, v_, opt_.keep_checkpoints);
  last_ckpt_ = st_.step;
}

// Ranks apply the same update to the same weights; this catches ranks that drifted apart anyway (another
// binary or CPU on some host), at every checkpoint interval and at the end. A collective: all ranks call it.
// Before anything is written: ranks whose arithmetic takes different instruction-set paths (a host without
// AVX-512 beside one with it, a different oneDNN ISA) round differently and would fail check_ranks_agree later, at
// the first checkpoint. Refused up front, naming this rank's paths and the fix. A collective: all ranks call it.
void Session::check_ranks_compute_alike() {
  if (R_ == 1) return;
  std::string paths = std::string("build ") + build_target();
  for (const KernelPath& k : kernel_paths()) paths += std::string(", ") + k.kernel + " " + k.path;
  if (!comm_.same_on_all(XXH3_64bits(paths.data(), paths.size())))
    throw ConfigError("the ranks compute with different instruction-set paths (rank " + std::to_string(rank_) +
                      " on " + cpu_model_name() + ": " + paths +
                      "), so their weights would drift apart. Give every rank the same paths: set STRETCH_MAX_ISA "
                      "and ONEDNN_MAX_CPU_ISA to what every host has (`stretch info` on each host shows its paths)");
}

void Session::check_ranks_agree() {
  if (R_ == 1) return;
  const std::uint64_t h = XXH3_64bits(model_->params().data(), model_->params().size() * sizeof(float));
  if (!comm_.same_on_all(h))
    throw NumericError("the ranks' weights differ at step " + std::to_string(st_.step) +
                       " (every rank must run the same stretch build on the same kind of CPU)");
}

TrainResult Session::run() {
  check_ranks_compute_alike();
  open_run_folder();
  announce();
  metrics_.open();
  elapsed_before_ = st_.elapsed_s;
  first_step_ = last_log_step_ = last_ckpt_ = st_.step;
  last_log_time_ = now_s();
  const long stop_step = opt_.stop_after > 0 ? std::min(opt_.steps, st_.step + opt_.stop_after) : opt_.steps;
  while (st_.step < stop_step && !signalled()) {
    const double lr = schedule_lr(opt_, st_.step);
    const double loss = forward_backward();
    double norm2 = 0.0;  // one range (the whole slab) unless a LoRA fine-tune freezes the base
    for (const auto& [off, n] : ranges_) norm2 += sum_of_squares(model_->grads().data() + off, n);
    const double gnorm = std::sqrt(norm2);
    const bool update = check_gradients(loss, norm2);
    if (update) update_weights(lr, gnorm);
    after_step(loss, lr, gnorm, !update);
  }
  check_ranks_agree();
  std::error_code ec;
  if (lead_ && (last_ckpt_ != st_.step || !fs::exists(opt_.out / "checkpoints", ec))) checkpoint();
  if (const int sig = signalled()) return stopped(sig);
  return finish();
}

// Asked to stop by a signal: checkpointed above; no validation pass, no "final" line.
TrainResult Session::stopped(int sig) {
  TrainResult res;
  res.steps = st_.step;
  res.stopped_by = sig;
  if (const auto kept = list_checkpoints(opt_.out); !kept.empty()) res.checkpoint = kept.back();
  res.seconds = now_s();
  metrics_.log({{"step", st_.step}, {"stopped", true}, {"signal", sig}});
  return res;
}

// The validation of the whole split and the last metrics line: "final" for a run that reached --steps (scripts
// look for it), "stopped" for a session ended early by --stop-after (checkpointed, resumable).
TrainResult Session::finish() {
  if (st_.step < opt_.steps)
    progress_.note("stopped at step " + std::to_string(st_.step) + " of " + std::to_string(opt_.steps) +
                   "; continue with --resume");  // a note to the user, not an error: its flag
  TrainResult res;
  res.steps = st_.step;
  res.session_steps = st_.step - first_step_;
  res.final_train_loss = good_loss_;
  const LossResult r = eval_val(0);
  res.val_loss = r.mean();
  res.val_tokens = r.count;
  if (tok_->is_byte_level()) res.val_bits_per_byte = r.mean() / std::log(2.0);
  res.seconds = now_s();
  res.tokens_per_s = static_cast<double>(st_.step - first_step_) * tokens_per_step_ / std::max(1e-9, res.seconds);
  res.skipped_steps = st_.skipped_steps;
  res.trained_parameters = trained_parameters_;
  res.ranks = R_;
  res.allreduce_seconds = allreduce_s_;
  json fin = {{"step", st_.step}, {st_.step == opt_.steps ? "final" : "stopped", true}, {"val_loss", res.val_loss},
              {"val_ppl", std::exp(res.val_loss)}, {"val_tokens", res.val_tokens}};
  if (st_.skipped_steps > 0) fin["skipped_steps"] = st_.skipped_steps;
  if (R_ > 1) {
    fin["ranks"] = R_;
    fin["allreduce_s"] = allreduce_s_;
  }
  // a resumed run that had already reached --steps trains nothing and keeps its one "final" line
  if (first_step_ < opt_.steps || !opt_.resume) metrics_.log(fin);
  else
    progress_.note("the run had already reached --steps " +  // a note to the user, not an error: its flag
                   std::to_string(opt_.steps) + "; nothing to train");
  return res;
}

}  // namespace

TrainResult train(const TrainOptions& opt) {
  Session session(opt);
  return session.run();
}

}  // namespace stretch
