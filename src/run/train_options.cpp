// TrainOptions: the options a resume must match, as JSON, and their ranges (UsageError naming the flag).
#include <algorithm>
#include <cmath>

#include "core/error.hpp"
#include "kernels/matmul.hpp"
#include "run/lora_adapter.hpp"
#include "run/retrieval_data.hpp"
#include "run/trainer.hpp"

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
  if (precision == Precision::bf16) j["precision"] = "bf16";
  if (!train_also.empty()) j["train_also"] = train_also;
  if (s2_attn) j["s2_attn"] = true;
  if (retrieval_mix > 0.0) {
    j["retrieval_mix"] = retrieval_mix;
    j["retrieval_haystack"] = retrieval_haystack;
  }
  return j;
}


void TrainOptions::validate() const {
  auto need = [](bool ok, const std::string& field, const std::string& what) {
    if (!ok) throw UsageError(field + ": " + what);
  };
  need(!text.empty(), "`text`", "at least one training text file is required");
  need(!out.empty(), "`out`", "a run directory is required");
  need(tokenizer == "byte" || tokenizer == "gpt2", "`tokenizer`", "expected 'byte' or 'gpt2', got '" + tokenizer + "'");
  need(batch >= 1 && batch <= 65536, "`batch`", "expected an integer in [1, 65536], got " + std::to_string(batch));
  need(grad_accum >= 1 && grad_accum <= 65536, "`grad_accum`", "expected an integer in [1, 65536]");
  need(steps >= 1 && steps <= 1000000000L, "`steps`", "expected an integer in [1, 1e9], got " + std::to_string(steps));
  need(std::isfinite(lr) && lr > 0 && lr <= 10, "`lr`", "expected a value in (0, 10]");
  need(min_lr_ratio >= 0 && min_lr_ratio <= 1, "`min_lr_ratio`", "expected a value in [0, 1]");
  need(warmup >= -1 && warmup <= steps, "`warmup`", "expected an integer in [0, `steps`] (or -1 for auto)");
  need(weight_decay >= 0 && weight_decay <= 10, "`weight_decay`", "expected a value in [0, 10]");
  need(beta1 >= 0 && beta1 < 1, "`beta1`", "expected a value in [0, 1)");
  need(beta2 >= 0 && beta2 < 1, "`beta2`", "expected a value in [0, 1)");
  need(eps > 0 && eps < 1, "`eps`", "expected a value in (0, 1)");
  need(clip >= 0 && std::isfinite(clip), "`clip`", "expected a value >= 0 (0 disables clipping)");
  need(valid_fraction > 0 && valid_fraction < 0.5, "`valid_fraction`", "expected a value in (0, 0.5)");
  need(eval_interval >= 0, "`eval_interval`", "expected an integer >= 0");
  need(eval_tokens >= 0, "`eval_tokens`", "expected an integer >= 0");
  need(ckpt_interval >= 0, "`ckpt_interval`", "expected an integer >= 0");
  need(keep_checkpoints >= 1 && keep_checkpoints <= 1000, "`keep_checkpoints`", "expected an integer in [1, 1000]");
  need(log_interval >= 0, "`log_interval`", "expected an integer >= 0");
  need(stop_after >= 0, "`stop_after`", "expected an integer >= 0");
  if (precision == Precision::bf16) {  // up front, not as a failed or crawling product at the first step
    const std::string why = bf16_products_missing();
    need(why.empty(), "`precision`", why);
  }
  need(retrieval_mix >= 0.0 && retrieval_mix <= 1.0, "`retrieval_mix`",
       "expected a fraction of the windows in [0, 1], got " + std::to_string(retrieval_mix));
  parse_haystack(retrieval_haystack, "`retrieval_haystack`");
  need(train_also.empty() || model.lora.enabled(), "`train_also`",
       "chooses base tensors to train beside a LoRA adapter; it needs `lora`");
  parse_train_also(train_also);
  need(!s2_attn || attention != TrainingAttention::materialized, "`attention`",
       "materialized has no shifted sparse attention (`s2_attn` runs in the tiled kernel: use auto or tiled)");
  need(!s2_attn || model.block_size >= 8, "`s2_attn`",
       "shifted sparse attention splits the training length into 4 groups of at least 2 positions; `block_size` " +
           std::to_string(model.block_size) + " is too short");
  need(max_consecutive_skips >= 0, "`nonfinite`", "the limit of consecutive skipped steps must be >= 0");
  try {
    model.validate();  // its fields as field_ref names, which the command line renders as its flags
  } catch (const ConfigError& e) {
    throw UsageError(e.what());
  }
}

}  // namespace stretch
