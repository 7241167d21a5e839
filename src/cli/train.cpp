// `stretch train` (a new model) and `stretch finetune` (continue a model, imported or ours, typically at a longer
// context with a RoPE scaling): the option tables of the training job (defaults printed from TrainOptions /
// ModelConfig). Both run run/trainer.hpp's train().
#include <omp.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <csignal>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <cerrno>
#include <initializer_list>
#include <memory>
#include <string>
#include <thread>

#include "cli/commands.hpp"
#include "cli/flag_checks.hpp"
#include "cli/context_flags.hpp"
#include "core/error.hpp"
#include "distributed/comm.hpp"
#include "run/checkpoint.hpp"
#include "run/trainer.hpp"

namespace stretch::cli {

namespace {

// Data, optimisation and bookkeeping options shared by train and finetune.
void add_job_options(CLI::App& app, TrainOptions& o, std::string& doc_sep, int& threads) {
  app.add_option("--text", o.text, "Training text file(s), UTF-8")->required()->check(CLI::ExistingFile);
  app.add_option("--out", o.out, "Run directory (checkpoints, metrics.jsonl)")->required();
  app.add_option("--valid-text", o.valid_text, "Validation text file (default: the last --valid-fraction)")
      ->check(CLI::ExistingFile);
  app.add_option("--valid-fraction", o.valid_fraction, "Fraction of the corpus held out for validation")
      ->capture_default_str();
  app.add_option("--cache-dir", o.cache_dir, "Token cache folder (default: $STRETCH_CACHE or ~/.cache/stretch)");
  app.add_option("--doc-sep", doc_sep,
                 "Split the text into documents at this string (e.g. '\\n\\n'), each starting with the tokenizer's BOS");
  app.add_option("--retrieval-mix", o.retrieval_mix,
                 "Write a synthetic passkey item over this fraction of the windows (docs/RETRIEVAL.md)")
      ->capture_default_str();
  app.add_option("--retrieval-haystack", o.retrieval_haystack,
                 "The items' haystack: filler (the passkey sentences) | text (the corpus) | mixed")
      ->capture_default_str();

  app.add_option("--batch", o.batch, "Windows per micro-batch")->capture_default_str();
  app.add_option("--grad-accum", o.grad_accum, "Micro-batches per optimizer step")->capture_default_str();
  app.add_option("--steps", o.steps, "Optimizer steps")->capture_default_str();
  app.add_option("--lr", o.lr, "Peak learning rate")->capture_default_str();
  app.add_option("--min-lr-ratio", o.min_lr_ratio, "Final learning rate as a fraction of --lr")->capture_default_str();
  app.add_option("--warmup", o.warmup, "Linear warm-up steps (-1: min(100, steps/10))")->capture_default_str();
  app.add_option("--weight-decay", o.weight_decay, "AdamW decoupled weight decay (matrices)")->capture_default_str();
  app.add_option("--beta1", o.beta1, "AdamW beta1")->capture_default_str();
  app.add_option("--beta2", o.beta2, "AdamW beta2")->capture_default_str();
  app.add_option("--eps", o.eps, "AdamW epsilon")->capture_default_str();
  app.add_option("--clip", o.clip, "Gradient-norm clipping (0: off)")->capture_default_str();
  app.add_flag("--decay-embeddings", o.decay_embeddings, "Apply weight decay to embeddings and position tables too");
  app.add_flag("--decay-norms-biases", o.decay_norms_biases, "Apply weight decay to norms and biases too");
  app.add_option("--seed", o.seed, "Seed for initialisation, data order, dropout and position ids")
      ->capture_default_str()
      ->check(non_negative_integer());

  app.add_flag("--resume", o.resume, "Continue the run in --out from its newest checkpoint");
  app.add_option("--eval-interval", o.eval_interval, "Validate every N steps (0: only at the end)")
      ->capture_default_str();
  app.add_option("--eval-tokens", o.eval_tokens, "Tokens scored per interval validation (0: all)")
      ->capture_default_str();
  app.add_option("--ckpt-interval", o.ckpt_interval, "Checkpoint every N steps (0: only at the end)")
      ->capture_default_str();
  app.add_option("--keep-checkpoints", o.keep_checkpoints, "Checkpoints kept")->capture_default_str();
  app.add_option("--log-interval", o.log_interval, "Log every N steps (0: about 50 lines)")->capture_default_str();
  app.add_option("--threads", threads, "Threads (default: OMP_NUM_THREADS, else all cores)")->check(thread_count());
  app.add_flag("--quiet", o.quiet, "Print only the final result");
  app.add_option("--stop-after", o.stop_after, "Stop after N steps of this session (checkpointed; --resume goes on)")
      ->capture_default_str();
  app.add_option("--precision", o.precision,
                 "Matrix products: fp32 | bf16 (mixed precision: bf16 operands, fp32 accumulation, fp32 master "
                 "weights and optimizer)")
      ->transform(one_of<Precision>({{"fp32", Precision::fp32}, {"bf16", Precision::bf16}}))
      ->default_str("fp32");
  app.add_option("--attention", o.attention,
                 "Training attention: auto | materialized (keep the T x T probabilities) | tiled (flash-style, "
                 "memory linear in T); auto: tiled when one layer's probabilities would pass 64 MB")
      ->transform(one_of<TrainingAttention>({{"auto", TrainingAttention::automatic},
                                             {"materialized", TrainingAttention::materialized},
                                             {"tiled", TrainingAttention::tiled}}))
      ->default_str("auto");
  app.add_flag("--s2-attn", o.s2_attn,
               "LongLoRA's shifted sparse attention in training: attention within groups of a quarter of --length, "
               "half the heads shifted by half a group (causal); evaluation uses full attention");
  app.add_option("--nonfinite", o.nonfinite,
                 "On NaN/Inf in the loss or gradients: stop (error naming the step and tensors, exit 5) | skip (drop "
                 "that step's update and log it; stop after " + std::to_string(o.max_consecutive_skips) +
                 " consecutive skips)")
      ->transform(one_of<NonFinite>({{"stop", NonFinite::stop}, {"skip", NonFinite::skip}}))
      ->default_str("stop");
}

// Signals reach the job on one thread of its own, never on a compute thread. oneDNN 2.6's JIT f32 GEMM kernels
// point rsp into a heap buffer while they run (oneDNN issue #4845, fixed in 3.11), so a signal handled on a thread
// inside one makes the kernel write the signal frame onto the heap: a SIGTERM in the middle of a step corrupted
// malloc's chunk headers and aborted the clean stop about one time in ten. The calling thread blocks `sigs` (so do
// the OpenMP threads it starts later: they inherit its mask) and a thread that does nothing else takes them, running
// `handler` on its own stack. Threads that already exist (Open MPI's) keep their mask; none of them runs a GEMM.
constexpr char kSignalThreadName[] = "stretch-signals";  // 15 characters, Linux's limit; tests look for it

void handle_on_a_signal_thread(std::initializer_list<int> sigs, void (*handler)(int)) {
  sigset_t set;
  sigemptyset(&set);
  struct sigaction sa {};
  sa.sa_handler = handler;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  for (int sig : sigs) {
    sigaddset(&set, sig);
    if (::sigaction(sig, &sa, nullptr) != 0) throw IoError(std::string("sigaction: ") + std::strerror(errno));
  }
  if (const int e = ::pthread_sigmask(SIG_BLOCK, &set, nullptr); e != 0)
    throw IoError(std::string("pthread_sigmask: ") + std::strerror(e));
  std::thread([set] {
    ::pthread_setname_np(::pthread_self(), kSignalThreadName);
    ::pthread_sigmask(SIG_UNBLOCK, &set, nullptr);  // a signal sent meanwhile was pending: it lands now
    for (;;) ::pause();
  }).detach();
}

// Among several ranks, mpirun ends the others with SIGTERM when one fails; each says so in one line before it
// goes (a signal handler may only write(), so the line is made beforehand).
char g_term_line[512];
std::size_t g_term_len = 0;

extern "C" void on_terminate(int sig) {
  ssize_t ignored = write(STDERR_FILENO, g_term_line, g_term_len);
  (void)ignored;
  std::signal(sig, SIG_DFL);
  std::raise(sig);  // blocked while the handler runs; delivered with the default action (death) once it returns
}

void say_why_when_terminated(int rank, const std::filesystem::path& out) {
  const std::string line = "\nstretch: rank " + std::to_string(rank) +
                           ": stopped by SIGTERM (another rank failed, or the job was cancelled); the newest "
                           "complete checkpoint in " + (out / "checkpoints").string() + " is kept (--resume)\n";
  g_term_len = std::min(line.size(), sizeof g_term_line);
  std::memcpy(g_term_line, line.data(), g_term_len);
  handle_on_a_signal_thread({SIGTERM}, on_terminate);
}

// Outside MPI, SIGTERM and SIGINT ask for a clean stop: the step in progress finishes, a checkpoint is written, and
// the job exits 143 / 130 naming it. A second signal exits at once (the default action: the checkpoint being
// written, if any, is atomic, so the previous ones stay whole). A handler may only write() and store an atomic.
std::atomic<int> g_stop_signal{0};
const char kStopLine[] =
    "\nstretch: stopping after this step to write a checkpoint (signal again to exit at once, losing the steps "
    "since the last checkpoint)\n";

extern "C" void on_stop_request(int sig) {
  if (g_stop_signal.exchange(sig) != 0) {  // the second signal
    std::signal(sig, SIG_DFL);
    std::raise(sig);  // as in on_terminate
    return;
  }
  ssize_t ignored = write(STDERR_FILENO, kStopLine, sizeof kStopLine - 1);
  (void)ignored;
}

void stop_cleanly_on_signals(TrainOptions& opt) {
  static_assert(std::atomic<int>::is_always_lock_free, "a signal handler stores it");
  g_stop_signal = 0;
  handle_on_a_signal_thread({SIGTERM, SIGINT}, on_stop_request);
  opt.stop_signal = &g_stop_signal;
}

int run_job(TrainOptions opt, const std::string& doc_sep, int threads) {
  opt.doc_separator = unescape(doc_sep);
  if (threads < 0 || threads > 4096) throw UsageError("--threads: expected an integer in [1, 4096]");
  if (threads > 0) omp_set_num_threads(threads);
  Comm& comm = world_comm();
  opt.comm = &comm;
  if (comm.size() > 1) say_why_when_terminated(comm.rank(), opt.out);
  else stop_cleanly_on_signals(opt);
  TrainResult r = train(opt);
  if (comm.rank() != 0) return 0;
  if (r.stopped_by != 0) {
    std::fflush(stdout);
    std::fprintf(stderr, "stretch: stopped by %s at step %ld; checkpoint: %s (continue with --resume)\n",
                 r.stopped_by == SIGINT ? "SIGINT" : r.stopped_by == SIGTERM ? "SIGTERM" : "a signal", r.steps,
                 r.checkpoint.c_str());
    return 128 + r.stopped_by;
  }
  if (r.session_steps > 0)
    std::printf("trained %ld steps in %.1f s (%.0f tokens/s)\n", r.steps, r.seconds, r.tokens_per_s);
  else
    std::printf("nothing to train: the run is at step %ld of --steps %ld\n", r.steps, r.steps);
  std::printf("validation: %ld tokens, loss %.4f nats/token, perplexity %.3f", r.val_tokens, r.val_loss,
              std::exp(r.val_loss));
  if (r.val_bits_per_byte > 0) std::printf(", %.4f bits/byte", r.val_bits_per_byte);
  if (r.skipped_steps > 0) std::printf("\nskipped steps (non-finite loss or gradients): %ld", r.skipped_steps);
  if (r.ranks > 1)
    std::printf("\nranks: %d; gradient all-reduce %.2f s, %.1f%% of the run", r.ranks, r.allreduce_seconds,
                100.0 * r.allreduce_seconds / std::max(1e-9, r.seconds));
  std::printf("\ncheckpoint: %s\n", (opt.out / "checkpoints").c_str());
  return 0;
}

}  // namespace

Runner add_train(CLI::App& app) {
  auto o = std::make_shared<TrainOptions>();
  auto position = std::make_shared<std::string>(std::string(to_string(o->model.position)));
  auto arch = std::make_shared<std::string>("gpt");
  auto mlp = std::make_shared<int>(0);
  auto threads = std::make_shared<int>(0);
  auto no_bias = std::make_shared<bool>(false);
  auto untied = std::make_shared<bool>(false);
  auto doc_sep = std::make_shared<std::string>();
  auto ctx = std::make_shared<ContextFlags>();
  auto embed_scale = std::make_shared<std::string>("1");
  auto activation = std::make_shared<std::string>(std::string(to_string(o->model.activation)));

  add_job_options(app, *o, *doc_sep, *threads);
  app.add_option("--tokenizer", o->tokenizer, "byte | gpt2")->capture_default_str();
  app.add_option("--bpe-dir", o->bpe_dir, "Folder with GPT-2's encoder.json and vocab.bpe (for --tokenizer gpt2)");
  app.add_option("--arch", *arch, "Architecture: gpt (LayerNorm, GELU) | llama (RMSNorm, SwiGLU, GQA, no biases)")
      ->capture_default_str();
  app.add_option("--position", *position, "Position method: " + position_method_choices())->capture_default_str();
  app.add_option("--layers", o->model.n_layer, "Transformer blocks")->capture_default_str();
  app.add_option("--width", o->model.n_embd, "Model width (n_embd)")->capture_default_str();
  app.add_option("--heads", o->model.n_head, "Attention heads")->capture_default_str();
  app.add_option("--kv-heads", o->model.n_kv_head, "Key/value heads, llama only (0: as many as --heads)")
      ->capture_default_str();
  app.add_option("--mlp", *mlp, "MLP hidden width (default: 4 x width)");
  app.add_option("--length", o->model.block_size, "Training length L (tokens per window)")->capture_default_str();
  app.add_option("--dropout", o->model.dropout, "Dropout on embeddings and residual branches")->capture_default_str();
  app.add_option("--rope-base", o->model.rope_base, "RoPE base (theta)")->capture_default_str();
  app.add_flag("--no-bias", *no_bias, "No biases in Linear layers and LayerNorms (always so for llama)");
  app.add_flag("--untied", *untied, "Separate output projection (not tied to the token embedding)");
  app.add_option("--embed-scale", *embed_scale,
                 "Token embeddings enter as S * wte[token]: 1 (GPT-2's init, wte ~ N(0, 0.02)) or a number or 'sqrt' "
                 "(sqrt(width): fairseq's unit-variance embeddings, wte ~ N(0, 1/S^2))")
      ->capture_default_str();
  app.add_option("--activation", *activation,
                 "MLP nonlinearity of gpt models: gelu_tanh (GPT-2's, BLOOM's tanh approximation) | gelu (exact erf "
                 "form, MPT's)")
      ->capture_default_str();
  app.add_flag("--embed-norm", o->model.embed_norm,
               "gpt only: a LayerNorm over the embeddings before the first block (BLOOM's)");
  app.add_flag("--qkv-bias", o->model.qkv_bias, "llama only: biases on the q, k, v projections (Qwen2's)");
  app.add_option("--alibi-max-bias", o->model.alibi_max_bias,
                 "alibi only: the slopes' maximum bias b, m_h = 2^(-b (h+1) / heads) (the paper's, MPT's and BLOOM's 8)")
      ->capture_default_str();
  add_context_flags(app, *ctx);

  return [=]() -> int {
    TrainOptions opt = *o;
    opt.model.arch = parse_arch(*arch, "--arch");
    opt.model.activation = parse_activation(*activation, "--activation");
    opt.model.position = parse_position_method(*position, "--position");
    if (*mlp < 0) throw UsageError("--mlp: expected a positive integer, got " + std::to_string(*mlp));
    opt.model.mlp_hidden = *mlp > 0 ? *mlp : 4 * opt.model.n_embd;
    opt.model.bias = opt.model.arch == Arch::gpt && !*no_bias;
    opt.model.tie_embeddings = !*untied;
    if (*embed_scale == "sqrt") {
      opt.model.embed_scale = static_cast<float>(std::sqrt(static_cast<double>(opt.model.n_embd)));
    } else {
      std::size_t used = 0;
      try {
        opt.model.embed_scale = std::stof(*embed_scale, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      if (used == 0 || used != embed_scale->size())
        throw UsageError("--embed-scale: expected a positive number or 'sqrt', got '" + *embed_scale + "'");
    }
    apply_context_flags(*ctx, opt.model);
    return run_job(opt, *doc_sep, *threads);
  };
}

Runner add_finetune(CLI::App& app) {
  auto o = std::make_shared<TrainOptions>();
  o->lr = 2e-4;  // a gentle default for continuing a trained model
  o->steps = 200;
  o->weight_decay = 0.0;
  auto model = std::make_shared<std::string>();
  auto threads = std::make_shared<int>(0);
  auto length = std::make_shared<int>(0);
  auto dropout = std::make_shared<float>(-1.0f);
  auto doc_sep = std::make_shared<std::string>();
  auto ctx = std::make_shared<ContextFlags>();

  app.add_option("model", *model, "Run directory or checkpoint folder to start from (stretch import makes one)")
      ->required();
  add_job_options(app, *o, *doc_sep, *threads);
  app.add_option("--length", *length, "Fine-tuning length (default: the model's trained length)");
  app.add_option("--dropout", *dropout, "Dropout (default: the model's)");
  auto lora = std::make_shared<int>(0);
  auto lora_alpha = std::make_shared<double>(0.0);
  auto lora_targets = std::make_shared<std::string>("q,k,v,o");
  auto lora_dropout = std::make_shared<float>(0.0f);
  CLI::Option* lora_opt =
      app.add_option("--lora", *lora,
                     "LoRA: freeze the model and train a rank-R adapter on the projections of --lora-targets "
                     "(docs/LORA.md)")
          ->check(positive_count());
  CLI::Option* alpha_opt =
      app.add_option("--lora-alpha", *lora_alpha, "The adapter's scale is alpha / R (default: alpha = R, scale 1)");
  CLI::Option* targets_opt = app.add_option("--lora-targets", *lora_targets,
                                            "Projections that get an adapter: q,k,v,o,gate,up,down (gate: llama "
                                            "models; a gpt model's c_fc is up, its c_proj down)")
                                 ->capture_default_str();
  CLI::Option* ldrop_opt =
      app.add_option("--lora-dropout", *lora_dropout, "Dropout on the adapter's input, in training")
          ->capture_default_str();
  app.add_option("--train-also", o->train_also,
                 "With --lora, also train these base tensors: embed (token embeddings, position tables), norm (the "
                 "norms' weights and biases); LongLoRA trains both");
  add_context_flags(app, *ctx);

  return [=]() -> int {
    TrainOptions opt = *o;
    opt.init_from = *model;
    CheckpointMeta meta = read_checkpoint_meta(*model);
    opt.model = meta.model;
    for (CLI::Option* f : {alpha_opt, targets_opt, ldrop_opt})
      if (f->count() > 0 && lora_opt->count() == 0)
        throw UsageError(f->get_name() + ": sets up a LoRA adapter; it needs --lora R");
    const LoraConfig& had = meta.model.lora;
    if (lora_opt->count() > 0) {
      LoraConfig lc;
      lc.rank = *lora;
      lc.alpha = alpha_opt->count() > 0 ? *lora_alpha : had.enabled() ? had.alpha : static_cast<double>(*lora);
      lc.targets = targets_opt->count() > 0 || !had.enabled()
                       ? parse_lora_targets(*lora_targets, meta.model.arch, "--lora-targets")
                       : had.targets;
      lc.dropout = *lora_dropout;
      if (!(lc.alpha > 0.0 && std::isfinite(lc.alpha)))
        throw UsageError("--lora-alpha: expected a value > 0, got " + std::to_string(lc.alpha));
      if (!(lc.dropout >= 0.0f && lc.dropout < 1.0f))
        throw UsageError("--lora-dropout: expected a value in [0, 1), got " + std::to_string(lc.dropout));
      if (had.enabled()) {  // continuing the adapter the checkpoint has: the same one
        const std::string have = *model + " holds an unmerged LoRA adapter of rank " + std::to_string(had.rank) +
                                 ", alpha " + std::to_string(had.alpha) + ", targets " + had.targets_string();
        if (lc.rank != had.rank)
          throw UsageError("--lora " + std::to_string(lc.rank) + ": " + have + "; continue it with --lora " +
                           std::to_string(had.rank) + ", or merge it first (stretch lora merge) to start another");
        if (lc.targets != had.targets)
          throw UsageError("--lora-targets " + lc.targets_string() + ": " + have);
        if (lc.alpha != had.alpha) throw UsageError("--lora-alpha " + std::to_string(lc.alpha) + ": " + have);
      }
      opt.model.lora = lc;
    } else if (had.enabled()) {
      throw UsageError(*model + " holds an unmerged LoRA adapter (rank " + std::to_string(had.rank) + ", targets " +
                       had.targets_string() + "): continue it with --lora " + std::to_string(had.rank) +
                       ", or merge it first (stretch lora merge) to fine-tune every weight");
    }
    apply_context_flags(*ctx, opt.model);  // before the length changes: a scaling is relative to the trained length
    if (*length < 0) throw UsageError("--length: expected a positive integer");
    if (*length > 0) opt.model.block_size = *length;
    if (*dropout >= 0.0f) opt.model.dropout = *dropout;
    if (opt.model.position == PositionMethod::rope && opt.model.block_size > meta.model.block_size &&
        opt.model.rope_scaling.is_none() && ctx->rope_scaling.empty())
      std::fprintf(stderr, "note: fine-tuning a rope model at %d > its trained length %d without --rope-scaling "
                           "(direct extension, as Chen et al.'s baseline)\n",
                   opt.model.block_size, meta.model.block_size);
    return run_job(opt, *doc_sep, *threads);
  };
}

}  // namespace stretch::cli
