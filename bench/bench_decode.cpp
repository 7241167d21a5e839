// Decode benchmark: tokens/s of cached one-token-at-a-time generation and the cache's memory, with the cache
// filled to `ctx - new` tokens first (so attention reads a nearly full cache), greedy, B = 1.
//   bench_decode --model reference|RUN_DIR [--ctx 8192] [--new 64] [--position alibi] [--kv-type f32|bf16|f16]
//                [--precision fp32|bf16]
// reference: the reference GPT config (byte vocabulary, 6 layers, width 256, 8 heads, MLP 1024) with random
// weights; RUN_DIR: a checkpoint (e.g. stories260K imported with `stretch import llama2c`). Prints one JSON line
// like bench/peer_decode.py.
#include <omp.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "core/rng.hpp"
#include "model/decoder.hpp"
#include "run/checkpoint.hpp"

using namespace stretch;

int main(int argc, char** argv) {
  int ctx = 512, n_new = 64;
  std::string model_arg = "reference", position = "alibi", kv_arg = "f32", precision = "fp32";
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--ctx") ctx = std::stoi(v);
    else if (k == "--new") n_new = std::stoi(v);
    else if (k == "--model") model_arg = v;
    else if (k == "--position") position = v;
    else if (k == "--kv-type") kv_arg = v;
    else if (k == "--precision") precision = v;
    else {
      std::fprintf(stderr, "bench_decode: unknown option %s\n", k.c_str());
      return 2;
    }
  }
  try {
    if (kv_arg != "f32" && kv_arg != "bf16" && kv_arg != "f16") throw UsageError("--kv-type: expected f32 | bf16 | f16");
    if (precision != "fp32" && precision != "bf16") throw UsageError("--precision: expected fp32 | bf16");
    const KvType kv = kv_arg == "f32" ? KvType::f32 : kv_arg == "bf16" ? KvType::bf16 : KvType::f16;
    const WeightStorage storage = precision == "bf16" ? WeightStorage::bf16 : WeightStorage::fp32;
    std::unique_ptr<Transformer> model;
    if (model_arg == "reference") {
      ModelConfig c;
      c.block_size = ctx;
      c.position = parse_position_method(position, "--position");
      model = std::make_unique<Transformer>(c);
      model->init_weights(1);
      model->store_weights(storage);
    } else {
      model = load_model(read_checkpoint_meta(model_arg), storage);
      position = std::string(to_string(model->config().position));
    }
    const int V = model->config().vocab_size;
    if (n_new >= ctx) throw UsageError("--new must be smaller than --ctx");
    Rng rng(3);
    std::vector<std::int32_t> prompt(static_cast<std::size_t>(ctx - n_new));
    for (auto& t : prompt) t = static_cast<std::int32_t>(3 + rng.below(static_cast<std::uint64_t>(V - 3)));
    Decoder dec(*model, ctx, false, -1, {}, kv);
    auto t0 = std::chrono::steady_clock::now();
    const float* l = dec.append(prompt.data(), static_cast<int>(prompt.size()));
    const double prefill = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    t0 = std::chrono::steady_clock::now();
    for (int k = 0; k < n_new; k++) {
      const std::int32_t next = static_cast<std::int32_t>(std::max_element(l, l + V) - l);
      l = dec.append(&next, 1);
    }
    const double decode = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    std::printf("{\"impl\":\"stretch\",\"model\":\"%s\",\"position\":\"%s\",\"ctx\":%d,\"new\":%d,\"kv_type\":\"%s\",\"precision\":\"%s\","
                "\"decode_tokens_per_s\":%.1f,\"prefill_tokens_per_s\":%.1f,\"cache_mb\":%.2f,\"peak_rss_mb\":%.1f,"
                "\"threads\":%d}\n",
                model_arg == "reference" ? "reference" : "checkpoint", position.c_str(), ctx, n_new, kv_arg.c_str(), precision.c_str(), n_new / decode,
                prompt.size() / prefill, dec.cache_bytes() / 1048576.0, ru.ru_maxrss / 1024.0, omp_get_max_threads());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_decode: %s\n", e.what());
    return 1;
  }
  return 0;
}
