// `stretch train`: the option table of the training job (defaults printed from TrainOptions / ModelConfig).
#include <omp.h>

#include <CLI/CLI.hpp>
#include <cmath>
#include <cstdio>
#include <memory>

#include "cli/commands.hpp"
#include "core/error.hpp"
#include "run/trainer.hpp"

namespace stretch::cli {

Runner add_train(CLI::App& app) {
  auto o = std::make_shared<TrainOptions>();
  auto position = std::make_shared<std::string>(std::string(to_string(o->model.position)));
  auto mlp = std::make_shared<int>(0);
  auto threads = std::make_shared<int>(0);
  auto no_bias = std::make_shared<bool>(false);
  auto untied = std::make_shared<bool>(false);

  app.add_option("--text", o->text, "Training text file(s), UTF-8")->required()->check(CLI::ExistingFile);
  app.add_option("--out", o->out, "Run directory (checkpoints, metrics.jsonl)")->required();
  app.add_option("--valid-text", o->valid_text, "Validation text file (default: the last --valid-fraction)")
      ->check(CLI::ExistingFile);
  app.add_option("--valid-fraction", o->valid_fraction, "Fraction of the corpus held out for validation")
      ->capture_default_str();
  app.add_option("--tokenizer", o->tokenizer, "byte | gpt2")->capture_default_str();
  app.add_option("--bpe-dir", o->bpe_dir, "Folder with GPT-2's encoder.json and vocab.bpe (for --tokenizer gpt2)");
  app.add_option("--cache-dir", o->cache_dir, "Token cache folder (default: $STRETCH_CACHE or ~/.cache/stretch)");

  app.add_option("--position", *position, "Position method: " + position_method_choices())->capture_default_str();
  app.add_option("--layers", o->model.n_layer, "Transformer blocks")->capture_default_str();
  app.add_option("--width", o->model.n_embd, "Model width (n_embd)")->capture_default_str();
  app.add_option("--heads", o->model.n_head, "Attention heads")->capture_default_str();
  app.add_option("--mlp", *mlp, "MLP hidden width (default: 4 x width)");
  app.add_option("--length", o->model.block_size, "Training length L (tokens per window)")->capture_default_str();
  app.add_option("--dropout", o->model.dropout, "Dropout on embeddings and residual branches")->capture_default_str();
  app.add_option("--rope-base", o->model.rope_base, "RoPE base (theta)")->capture_default_str();
  app.add_flag("--no-bias", *no_bias, "No biases in Linear layers and LayerNorms");
  app.add_flag("--untied", *untied, "Separate output projection (not tied to the token embedding)");

  app.add_option("--batch", o->batch, "Windows per micro-batch")->capture_default_str();
  app.add_option("--grad-accum", o->grad_accum, "Micro-batches per optimizer step")->capture_default_str();
  app.add_option("--steps", o->steps, "Optimizer steps")->capture_default_str();
  app.add_option("--lr", o->lr, "Peak learning rate")->capture_default_str();
  app.add_option("--min-lr-ratio", o->min_lr_ratio, "Final learning rate as a fraction of --lr")->capture_default_str();
  app.add_option("--warmup", o->warmup, "Linear warm-up steps (-1: min(100, steps/10))")->capture_default_str();
  app.add_option("--weight-decay", o->weight_decay, "AdamW decoupled weight decay (matrices)")->capture_default_str();
  app.add_option("--beta1", o->beta1, "AdamW beta1")->capture_default_str();
  app.add_option("--beta2", o->beta2, "AdamW beta2")->capture_default_str();
  app.add_option("--eps", o->eps, "AdamW epsilon")->capture_default_str();
  app.add_option("--clip", o->clip, "Gradient-norm clipping (0: off)")->capture_default_str();
  app.add_flag("--decay-embeddings", o->decay_embeddings, "Apply weight decay to embeddings and position tables too");
  app.add_flag("--decay-norms-biases", o->decay_norms_biases, "Apply weight decay to norms and biases too");
  app.add_option("--seed", o->seed, "Seed for initialisation, data order and dropout")->capture_default_str();

  app.add_flag("--resume", o->resume, "Continue the run in --out from its newest checkpoint");
  app.add_option("--eval-interval", o->eval_interval, "Validate every N steps (0: only at the end)")
      ->capture_default_str();
  app.add_option("--eval-tokens", o->eval_tokens, "Tokens scored per interval validation (0: all)")
      ->capture_default_str();
  app.add_option("--ckpt-interval", o->ckpt_interval, "Checkpoint every N steps (0: only at the end)")
      ->capture_default_str();
  app.add_option("--keep-checkpoints", o->keep_checkpoints, "Checkpoints kept")->capture_default_str();
  app.add_option("--log-interval", o->log_interval, "Log every N steps (0: about 50 lines)")->capture_default_str();
  app.add_option("--threads", *threads, "Threads (default: OMP_NUM_THREADS, else all cores)");
  app.add_flag("--quiet", o->quiet, "Print only the final result");
  app.add_option("--stop-after", o->stop_after, "Stop after N steps of this session (checkpointed; --resume goes on)")
      ->capture_default_str();

  return [=]() -> int {
    TrainOptions opt = *o;
    opt.model.position = parse_position_method(*position, "--position");
    opt.model.mlp_hidden = *mlp > 0 ? *mlp : 4 * opt.model.n_embd;
    if (*mlp < 0) throw UsageError("--mlp: expected a positive integer, got " + std::to_string(*mlp));
    opt.model.bias = !*no_bias;
    opt.model.tie_embeddings = !*untied;
    if (*threads < 0 || *threads > 4096) throw UsageError("--threads: expected an integer in [1, 4096]");
    if (*threads > 0) omp_set_num_threads(*threads);
    TrainResult r = train(opt);
    std::printf("trained %ld steps in %.1f s (%.0f tokens/s)\n", r.steps, r.seconds, r.tokens_per_s);
    std::printf("validation: %ld tokens, loss %.4f nats/token, perplexity %.3f", r.val_tokens, r.val_loss,
                std::exp(r.val_loss));
    if (r.val_bits_per_byte > 0) std::printf(", %.4f bits/byte", r.val_bits_per_byte);
    std::printf("\ncheckpoint: %s\n", (opt.out / "checkpoints").c_str());
    return 0;
  };
}

}  // namespace stretch::cli
