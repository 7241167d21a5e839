// Attention forward micro-benchmark: the plain kernel (kernels/attention.hpp, which also writes the (B, NH, T, T)
// probabilities) against the tiled online-softmax kernel (kernels/attention_tiled.hpp), both with ALiBi, on random
// inputs. Prints one JSON line with the median times and their ratio. The plain kernel is skipped when its
// probabilities would exceed 2 GB.
//   bench_attention [--T 1024] [--B 1] [--NH 8] [--hd 32] [--reps 5]
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "core/rng.hpp"
#include "kernels/attention.hpp"
#include "kernels/attention_tiled.hpp"
#include "position/alibi.hpp"

using namespace stretch;

namespace {

template <class Fn>
double median_ms(Fn&& fn, int reps) {
  fn();  // warm-up
  std::vector<double> t;
  for (int r = 0; r < reps; r++) {
    const auto a = std::chrono::steady_clock::now();
    fn();
    const auto b = std::chrono::steady_clock::now();
    t.push_back(std::chrono::duration<double, std::milli>(b - a).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  int T = 1024, B = 1, NH = 8, hd = 32, reps = 5;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    const int v = std::stoi(argv[i + 1]);
    if (k == "--T") T = v;
    else if (k == "--B") B = v;
    else if (k == "--NH") NH = v;
    else if (k == "--hd") hd = v;
    else if (k == "--reps") reps = v;
    else {
      std::fprintf(stderr, "unknown option %s\n", k.c_str());
      return 2;
    }
  }
  if (T <= 0 || B <= 0 || NH <= 0 || hd <= 0 || reps <= 0) {
    std::fprintf(stderr, "all options must be positive\n");
    return 2;
  }
  const int C = NH * hd;
  Rng rng(1234);
  std::vector<float> qkv(static_cast<std::size_t>(B) * T * 3 * C);
  for (auto& x : qkv) x = rng.normal();
  std::vector<int> pos(static_cast<std::size_t>(B) * T);
  for (int b = 0; b < B; b++)
    for (int t = 0; t < T; t++) pos[static_cast<std::size_t>(b) * T + t] = t;
  const auto slopes = alibi_slopes(NH);
  const AlibiBias bias{slopes.data()};
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  std::vector<float> out_tiled(static_cast<std::size_t>(B) * T * C);

  const double tiled_ms = median_ms(
      [&] { attention_forward_tiled(out_tiled.data(), qkv.data(), pos.data(), bias, B, T, C, NH, scale); }, reps);

  const double probs_bytes = static_cast<double>(B) * NH * T * static_cast<double>(T) * sizeof(float);
  double plain_ms = -1.0, max_diff = -1.0;
  if (probs_bytes <= 2e9) {
    std::vector<float> out(out_tiled.size());
    std::vector<float> probs(static_cast<std::size_t>(B) * NH * T * static_cast<std::size_t>(T));
    plain_ms = median_ms(
        [&] { attention_forward(out.data(), probs.data(), qkv.data(), pos.data(), bias, B, T, C, NH, scale); }, reps);
    max_diff = 0.0;
    for (std::size_t i = 0; i < out.size(); i++)
      max_diff = std::max(max_diff, static_cast<double>(std::abs(out[i] - out_tiled[i])));
  }
  std::printf(
      "{\"bench\":\"attention_forward\",\"bias\":\"alibi\",\"T\":%d,\"B\":%d,\"NH\":%d,\"hd\":%d,\"reps\":%d,"
      "\"threads\":%d,\"plain_ms\":%s,\"tiled_ms\":%.3f,\"plain_over_tiled\":%s,\"max_abs_diff\":%s}\n",
      T, B, NH, hd, reps, omp_get_max_threads(), plain_ms < 0 ? "null" : std::to_string(plain_ms).c_str(), tiled_ms,
      plain_ms < 0 ? "null" : std::to_string(plain_ms / tiled_ms).c_str(),
      max_diff < 0 ? "null" : std::to_string(max_diff).c_str());
  return 0;
}
