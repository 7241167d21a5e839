// Training-throughput benchmark: one optimizer step (forward, backward, AdamW) of the reference config
// (byte vocabulary, 6 layers, width 256, 8 heads, MLP 1024, T = 256, batch 16, fp32) on random tokens.
// Prints one JSON line like bench/peer_train.py so bench/train_vs_pytorch.sh can compare the two.
//   bench_train [--position alibi] [--steps 30] [--warmup 5] [--layers 6] [--width 256] [--heads 8]
//               [--length 256] [--batch 16] [--attention auto|materialized|tiled] [--precision fp32|bf16]
// --attention picks how training attention is kept for the backward pass (model/transformer.hpp,
// TrainingAttention): the (B, NH, T, T) probabilities, or the flash-style tiled kernels (memory linear in T).
#include <omp.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "core/profile.hpp"
#include "core/rng.hpp"
#include "kernels/adamw.hpp"
#include "model/transformer.hpp"

using namespace stretch;

int main(int argc, char** argv) {
  ModelConfig c;
  c.vocab_size = 256;
  int steps = 30, warmup = 5, B = 16;
  std::string position = "alibi", attention = "auto", precision = "fp32";
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--position") position = v;
    else if (k == "--steps") steps = std::stoi(v);
    else if (k == "--warmup") warmup = std::stoi(v);
    else if (k == "--layers") c.n_layer = std::stoi(v);
    else if (k == "--width") c.n_embd = std::stoi(v);
    else if (k == "--heads") c.n_head = std::stoi(v);
    else if (k == "--length") c.block_size = std::stoi(v);
    else if (k == "--batch") B = std::stoi(v);
    else if (k == "--attention") attention = v;
    else if (k == "--precision") precision = v;
    else {
      std::fprintf(stderr, "bench_train: unknown option %s\n", k.c_str());
      return 2;
    }
  }
  c.mlp_hidden = 4 * c.n_embd;
  c.position = parse_position_method(position, "--position");
  const int T = c.block_size;
  Transformer model(c);
  model.init_weights(1);
  if (attention == "materialized") model.set_training_attention(TrainingAttention::materialized);
  else if (attention == "tiled") model.set_training_attention(TrainingAttention::tiled);
  else if (attention != "auto") {
    std::fprintf(stderr, "bench_train: --attention: expected auto, materialized or tiled, got %s\n", attention.c_str());
    return 2;
  }
  if (precision == "bf16") model.set_precision(Precision::bf16);
  else if (precision != "fp32") {
    std::fprintf(stderr, "bench_train: --precision: expected fp32 or bf16, got %s\n", precision.c_str());
    return 2;
  }
  Buffer<float> m(model.params().size()), v(model.params().size());
  Rng rng(2);
  std::vector<std::int32_t> x(static_cast<std::size_t>(B) * T), y(x.size());
  ForwardOptions fo;
  fo.need_grad = true;
  double secs = 0, last_loss = 0;
  std::vector<double> step_s;
  for (int s = 0; s < warmup + steps; s++) {
    for (auto& t : x) t = static_cast<std::int32_t>(rng.below(256));
    for (auto& t : y) t = static_cast<std::int32_t>(rng.below(256));
    auto t0 = std::chrono::steady_clock::now();
    model.zero_grad();
    last_loss = model.forward(x.data(), y.data(), nullptr, B, T, fo);
    model.backward();
    for (auto& p : model.specs()) {
      AdamWStep a;
      a.lr = 3e-4f;
      a.weight_decay = p.kind == ParamKind::matrix ? 0.1f : 0.0f;
      a.t = s + 1;
      adamw_update(model.params().data() + p.offset, model.grads().data() + p.offset, m.data() + p.offset,
                   v.data() + p.offset, p.numel(), a);
    }
    auto t1 = std::chrono::steady_clock::now();
    if (s >= warmup) {
      secs += std::chrono::duration<double>(t1 - t0).count();
      step_s.push_back(std::chrono::duration<double>(t1 - t0).count());
    }
    if (s + 1 == warmup) Profile::get().reset();
  }
  const double tps = static_cast<double>(steps) * B * T / secs;
  std::sort(step_s.begin(), step_s.end());
  const double med = step_s[step_s.size() / 2];
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  std::printf("{\"impl\":\"stretch\",\"position\":\"%s\",\"T\":%d,\"batch\":%d,\"tokens_per_s\":%.1f,"
              "\"step_ms\":%.2f,\"tokens_per_s_median\":%.1f,\"step_ms_median\":%.2f,\"peak_rss_mb\":%.1f,"
              "\"threads\":%d,\"attention\":\"%s\",\"precision\":\"%s\",\"loss\":%.4f}\n",
              position.c_str(), T, B, tps, 1000.0 * secs / steps, B * T / med, 1000.0 * med, ru.ru_maxrss / 1024.0,
              omp_get_max_threads(), model.tiled_training(B, T) ? "tiled" : "materialized", precision.c_str(), last_loss);
  if (Profile::get().enabled()) std::fprintf(stderr, "%s", Profile::get().report().c_str());
  return 0;
}
