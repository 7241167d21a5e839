// The training job: data, AdamW with warm-up + cosine schedule, clipping, accumulation, evaluation at
// intervals, checkpoints and exact resume, progress and a JSONL metrics log.
//
// Schedule (step s = 0 .. steps-1, lr at step s):
//   s < warmup:  lr * (s + 1) / warmup
//   otherwise:   min_lr + 0.5 (lr - min_lr) (1 + cos(pi * (s - warmup) / max(1, steps - warmup))),
//                min_lr = lr * min_lr_ratio
// Weight decay applies to matrices (Linear weights, an untied lm_head) only, unless decay_embeddings (wte,
// wpe, t5_bias) or decay_norms_biases ask for more.
// Determinism: the same seed, options and thread count give the same run bit for bit, and a resumed run the
// same losses as one never stopped (data RNG, schedule and moments are all in the checkpoint). The same holds for
// a fixed number of ranks; another rank count changes only the order of the gradient sums.
#pragma once
#include <atomic>
#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "model/config.hpp"
#include "model/transformer.hpp"

namespace stretch {

class Transformer;
class Comm;

// What a step does with NaN/Inf in the loss or the gradients (TrainOptions::nonfinite).
enum class NonFinite { stop, skip };

struct TrainOptions {
  // data
  std::vector<std::filesystem::path> text;  // training text files
  std::filesystem::path valid_text;         // optional; else the last valid_fraction of the tokens
  double valid_fraction = 0.01;
  std::string tokenizer = "byte";           // "byte" or "gpt2"
  std::filesystem::path bpe_dir;            // encoder.json + vocab.bpe for gpt2
  std::filesystem::path cache_dir;          // token cache (empty: default_cache_dir())
  std::string doc_separator;                // split the text into documents here, each preceded by the
                                            // tokenizer's BOS (io/corpus.hpp Segmenting); empty: one stream
  // synthetic passkey items written over this fraction of the windows (run/retrieval_data.hpp); 0: none. Their
  // haystack: "filler", "text" or "mixed". Part of the resume match (written only when set).
  double retrieval_mix = 0.0;
  std::string retrieval_haystack = "mixed";
  // model
  ModelConfig model;
  // fine-tuning: start from this checkpoint's weights and tokenizer (model must match its architecture; the
  // context fields, block_size included, may differ: that is the point)
  std::filesystem::path init_from;
  // LoRA (model.lora enabled, model/lora.hpp): the base is frozen and only the adapter trains, plus these
  // comma-separated groups of base tensors: "embed" (token embeddings and position tables), "norm" (every norm's
  // weight and bias), LongLoRA's choice; empty: none. Part of the resume match (written only when set).
  std::string train_also;
  // LongLoRA's shifted sparse attention (S2-Attn) in training: groups of a quarter of the training length, half the
  // heads shifted by half a group (model/transformer.hpp set_shifted_groups); evaluation keeps full attention. Part
  // of the resume match (written only when set).
  bool s2_attn = false;
  // optimisation
  int batch = 16;
  int grad_accum = 1;
  long steps = 1000;
  double lr = 1e-3;
  double min_lr_ratio = 0.1;
  long warmup = -1;  // -1: min(100, steps / 10)
  double weight_decay = 0.1;
  double beta1 = 0.9, beta2 = 0.95, eps = 1e-8;
  double clip = 1.0;  // 0 disables
  bool decay_embeddings = false;
  bool decay_norms_biases = false;
  std::uint64_t seed = 1337;
  // bookkeeping
  std::filesystem::path out;  // run directory
  bool resume = false;
  long eval_interval = 200;   // 0: only at the end
  long eval_tokens = 65536;   // tokens scored per interval evaluation (0: whole split)
  long ckpt_interval = 500;   // 0: only at the end
  int keep_checkpoints = 2;
  long log_interval = 0;      // plain log lines every N steps (0: about 50 lines per run)
  bool quiet = false;
  long stop_after = 0;        // stop after N steps of this session, checkpointed (0: run to --steps)
  // non-finite loss or gradients (NaN/Inf, checked after every backward pass): "stop" throws NumericError naming
  // the step, the tensor(s) and the counts; "skip" drops that step's update (weights and AdamW moments untouched,
  // the step still counts), logs it, and throws NumericError once more than max_consecutive_skips steps in a row
  // were skipped
  NonFinite nonfinite = NonFinite::stop;
  // matrix products: fp32 or bf16 (mixed precision, model/transformer.hpp Precision); part of the options a resume
  // must match (written only when not fp32, so older runs resume unchanged)
  Precision precision = Precision::fp32;
  // training attention kept for the backward pass: automatic, materialized or tiled; the same mathematics, so not
  // part of the resume match
  TrainingAttention attention = TrainingAttention::automatic;
  int max_consecutive_skips = 10;
  // data-parallel ranks (distributed/comm.hpp; nullptr: this process alone). `batch` is the global batch: each
  // rank takes its slice of the windows one process would draw, gradients are averaged with one all-reduce per
  // step, so N ranks follow one rank's run (up to summation order; dropout masks differ per rank). Rank 0 alone
  // writes checkpoints, metrics and progress; every rank resumes from them, with any rank count.
  Comm* comm = nullptr;
  // tests: called after each step's backward pass (step = the 1-based step being taken), before the check
  std::function<void(long step, Transformer& model)> after_backward;
  // Set (to the signal's number) by a SIGTERM / SIGINT handler: the step in progress finishes, a checkpoint is
  // written and train() returns with TrainResult::stopped_by set; no validation pass, no "final" line. Null: none.
  const std::atomic<int>* stop_signal = nullptr;

  // The options that must match for a resume (data, model, optimisation), as JSON.
  nlohmann::json to_json() const;
  long warmup_steps() const { return warmup >= 0 ? warmup : std::min<long>(100, steps / 10); }
  // Throws UsageError naming the flag for a value out of range.
  void validate() const;
};

struct TrainResult {
  long steps = 0;
  double final_train_loss = 0.0;
  double val_loss = 0.0;  // mean NLL (nats/token) on the whole validation split
  long val_tokens = 0;
  double val_bits_per_byte = 0.0;  // byte-level tokenizers only, else 0
  double seconds = 0.0;
  double tokens_per_s = 0.0;
  std::size_t trained_parameters = 0;  // parameters the optimizer updates (all, or a LoRA fine-tune's adapter ...)
  long skipped_steps = 0;  // steps whose update was dropped for a non-finite loss or gradient (the whole run)
  int ranks = 1;
  double allreduce_seconds = 0.0;  // this session's time in the gradient all-reduce, waiting for slower ranks included
  long session_steps = 0;          // steps trained by this call (0: a resumed run that had already finished)
  int stopped_by = 0;              // the signal that stopped the run early (checkpointed), else 0
  std::filesystem::path checkpoint;  // the newest checkpoint when the run returned
};

TrainResult train(const TrainOptions& opt);

}  // namespace stretch
