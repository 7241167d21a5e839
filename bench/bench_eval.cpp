// Long-context evaluation benchmark: one forward pass (B = 1, T tokens, loss of every position) of the
// reference config (6 layers, width 256, 8 heads, MLP 1024, byte vocabulary) with random weights.
// Prints a JSON line with tokens/s and the process's peak RSS, like bench/peer_eval.py.
//   bench_eval --T 16384 [--position alibi] [--reps 2]
#include <omp.h>
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "core/rng.hpp"
#include "model/transformer.hpp"

using namespace stretch;

int main(int argc, char** argv) {
  int T = 1024, reps = 2;
  std::string position = "alibi";
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--T") T = std::stoi(v);
    else if (k == "--reps") reps = std::stoi(v);
    else if (k == "--position") position = v;
    else {
      std::fprintf(stderr, "bench_eval: unknown option %s\n", k.c_str());
      return 2;
    }
  }
  ModelConfig c;
  c.block_size = T;  // (only the learned table depends on it)
  c.position = parse_position_method(position, "--position");
  Transformer model(c);
  model.init_weights(1);
  Rng rng(3);
  std::vector<std::int32_t> x(T), y(T);
  for (auto& t : x) t = static_cast<std::int32_t>(rng.below(256));
  for (auto& t : y) t = static_cast<std::int32_t>(rng.below(256));
  double best = 1e30;
  double loss = 0;
  for (int r = 0; r < reps; r++) {
    auto t0 = std::chrono::steady_clock::now();
    loss = model.forward(x.data(), y.data(), nullptr, 1, T);
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  std::printf("{\"impl\":\"stretch\",\"position\":\"%s\",\"T\":%d,\"tokens_per_s\":%.1f,\"peak_rss_mb\":%.1f,"
              "\"loss\":%.4f,\"threads\":%d}\n",
              position.c_str(), T, T / best, ru.ru_maxrss / 1024.0, loss, omp_get_max_threads());
  return 0;
}
