// Long-context evaluation benchmark: one forward pass (B = 1, T tokens, loss of every position) of the
// reference config (6 layers, width 256, 8 heads, MLP 1024, byte vocabulary) with random weights, or of a
// checkpoint (--model RUN_DIR, e.g. an imported Hugging Face model, with --rope-scaling S for a rope model past its
// length). Prints a JSON line with tokens/s and the process's peak RSS, like bench/peer_eval.py; with
// STRETCH_PROFILE=1 the time per op (core/profile) to stderr.
//   bench_eval --T 16384 [--position alibi] [--reps 2] [--model RUN_DIR] [--rope-scaling yarn:2]
//              [--precision fp32|bf16]
#include <omp.h>
#include <sys/resource.h>

#include <chrono>
#include <memory>
#include <cstdio>
#include <string>
#include <vector>

#include "core/rng.hpp"
#include "core/profile.hpp"
#include "model/transformer.hpp"
#include "run/checkpoint.hpp"

using namespace stretch;

int main(int argc, char** argv) {
  int T = 1024, reps = 2;
  std::string position = "alibi", model_arg, scaling, precision = "fp32";
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--T") T = std::stoi(v);
    else if (k == "--reps") reps = std::stoi(v);
    else if (k == "--position") position = v;
    else if (k == "--model") model_arg = v;
    else if (k == "--rope-scaling") scaling = v;
    else if (k == "--precision") precision = v;
    else {
      std::fprintf(stderr, "bench_eval: unknown option %s\n", k.c_str());
      return 2;
    }
  }
  if (precision != "fp32" && precision != "bf16") {
    std::fprintf(stderr, "bench_eval: --precision: expected fp32 | bf16\n");
    return 2;
  }
  const WeightStorage storage = precision == "bf16" ? WeightStorage::bf16 : WeightStorage::fp32;
  std::unique_ptr<Transformer> made;
  if (model_arg.empty()) {
    ModelConfig c;
    c.block_size = T;  // (only the learned table depends on it)
    c.position = parse_position_method(position, "--position");
    made = std::make_unique<Transformer>(c);
    made->init_weights(1);
    made->store_weights(storage);
  } else {
    made = load_model(read_checkpoint_meta(model_arg), storage);
    position = std::string(to_string(made->config().position));
    if (!scaling.empty()) made->set_rope_scaling(RopeScaling::parse(scaling, "--rope-scaling"));
  }
  Transformer& model = *made;
  const int V = model.config().vocab_size;
  Rng rng(3);
  std::vector<std::int32_t> x(T), y(T);
  for (auto& t : x) t = static_cast<std::int32_t>(rng.below(static_cast<std::uint64_t>(V)));
  for (auto& t : y) t = static_cast<std::int32_t>(rng.below(static_cast<std::uint64_t>(V)));
  double best = 1e30;
  double loss = 0;
  for (int r = 0; r < reps; r++) {
    auto t0 = std::chrono::steady_clock::now();
    loss = model.forward(x.data(), y.data(), nullptr, 1, T);
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  if (Profile::get().enabled()) std::fprintf(stderr, "%s", Profile::get().report().c_str());
  std::printf("{\"impl\":\"stretch\",\"precision\":\"%s\",\"position\":\"%s\",\"T\":%d,\"tokens_per_s\":%.1f,\"peak_rss_mb\":%.1f,"
              "\"loss\":%.4f,\"threads\":%d}\n",
              precision.c_str(), position.c_str(), T, T / best, ru.ru_maxrss / 1024.0, loss, omp_get_max_threads());
  return 0;
}
