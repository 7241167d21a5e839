// Checkpoints at size: a checkpoint whose AdamW moments are all zero is saved without moment buffers (an
// optimizer.safetensors of no tensors, marked {"moments": "zero"}) and loads as zeros; a marked file that holds
// tensors, another marker, or an unmarked file missing a moment are refused by name. And the memory, measured in
// a fresh process without timing (the kernel's peak resident set, VmHWM): loading a checkpoint of W bytes of fp32
// weights grows the peak by about W (the file's pages are released tensor by tensor, the gradient slab stays
// untouched), and saving it adds almost nothing (the slabs are streamed to disk, never copied). 64 MB of weights
// by default; STRETCH_PEAK_MEMORY_MB=1024 for a 1 GB checkpoint.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <nlohmann/json.hpp>

#include "core/error.hpp"
#include "core/fs.hpp"
#include "core/peak_memory.hpp"
#include "io/safetensors.hpp"
#include "kernels/matmul.hpp"
#include "model/transformer.hpp"
#include "run/checkpoint.hpp"
#include "test_util.hpp"

namespace stretch {
namespace {
using test::TempDir;
namespace fs = std::filesystem;
using json = nlohmann::json;

const json kTokenizer = {{"type", "byte"}};

// A GPT of n_layer layers of width n_embd (mlp 4x, 8 heads), block size 64.
ModelConfig gpt(int n_layer, int n_embd) {
  ModelConfig c;
  c.n_layer = n_layer;
  c.n_embd = n_embd;
  c.n_head = 8;
  c.mlp_hidden = 4 * n_embd;
  c.block_size = 64;
  return c;
}

// Parameter i's value in the tests: finite, varied, exactly representable.
float param_value(std::size_t i) { return static_cast<float>(static_cast<int>(i % 2001) - 1000) * 0.0009765625f; }

void fill(Transformer& m) {
  for (std::size_t i = 0; i < m.params().size(); ++i) m.params()[i] = param_value(i);
}

template <class Fn>
std::string input_error(Fn&& fn) {
  try {
    fn();
  } catch (const InputError& e) {
    return e.what();
  }
  return "(no InputError)";
}

TEST(CheckpointZeroMoments, SavedWithoutBuffersAndLoadedAsZeros) {
  TempDir dir;
  Transformer model(gpt(2, 32));
  fill(model);
  TrainState st;
  st.step = 7;
  save_checkpoint(dir / "run", model, kTokenizer, 16, st, 1);
  const CheckpointMeta meta = read_checkpoint_meta(dir / "run");
  EXPECT_EQ(meta.dir.filename(), "step-00000007");
  EXPECT_TRUE(is_complete_checkpoint(meta.dir));
  const auto opt = SafetensorsReader::open(meta.dir / "optimizer.safetensors");
  EXPECT_TRUE(opt.tensors().empty());
  EXPECT_EQ(opt.metadata().at("moments"), "zero");

  Buffer<float> m(3), v(5);  // wrong sizes and non-zero contents: replaced by zeros of the model's size
  m[0] = 1.0f;
  v[4] = 2.0f;
  TrainState loaded;
  auto back = load_model(meta);
  load_train_state(meta, *back, loaded, m, v);
  EXPECT_EQ(loaded.step, 7);
  ASSERT_EQ(m.size(), model.params().size());
  ASSERT_EQ(v.size(), model.params().size());
  for (std::size_t i = 0; i < m.size(); ++i) {
    ASSERT_EQ(m[i], 0.0f) << i;
    ASSERT_EQ(v[i], 0.0f) << i;
  }
  for (std::size_t i = 0; i < model.params().size(); ++i) ASSERT_EQ(back->params()[i], param_value(i)) << i;

  // the same weights saved with explicit zero moments: the same model file, and the same state once loaded
  Buffer<float> zm(model.params().size()), zv(model.params().size());
  save_checkpoint(dir / "explicit", model, kTokenizer, 16, st, zm, zv, 1);
  const CheckpointMeta meta2 = read_checkpoint_meta(dir / "explicit");
  EXPECT_EQ(read_file(meta2.dir / "model.safetensors"), read_file(meta.dir / "model.safetensors"));
  EXPECT_EQ(SafetensorsReader::open(meta2.dir / "optimizer.safetensors").tensors().size(), 2 * model.specs().size());
  Buffer<float> m2, v2;
  load_train_state(meta2, *back, loaded, m2, v2);
  ASSERT_EQ(m2.size(), m.size());
  for (std::size_t i = 0; i < m2.size(); ++i) ASSERT_EQ(m2[i], 0.0f) << i;
}

TEST(CheckpointZeroMoments, BadOptimizerFilesAreRefusedByName) {
  TempDir dir;
  Transformer model(gpt(2, 32));
  TrainState st;
  save_checkpoint(dir / "run", model, kTokenizer, 16, st, 1);
  const CheckpointMeta meta = read_checkpoint_meta(dir / "run");
  const fs::path op = meta.dir / "optimizer.safetensors";
  Buffer<float> m, v;
  TrainState loaded;
  const std::string first = model.specs().front().name;

  SafetensorsWriter other;  // another marker
  other.set_metadata("moments", "adam");
  other.write(op);
  std::string e = input_error([&] { load_train_state(meta, model, loaded, m, v); });
  EXPECT_NE(e.find(op.string()), std::string::npos) << e;
  EXPECT_NE(e.find("\"adam\""), std::string::npos) << e;

  SafetensorsWriter both;  // marked zero, yet holding tensors
  both.set_metadata("moments", "zero");
  both.add_zeros("m." + first, DType::F32, model.specs().front().shape);
  both.write(op);
  e = input_error([&] { load_train_state(meta, model, loaded, m, v); });
  EXPECT_NE(e.find("holds 1 tensors"), std::string::npos) << e;

  SafetensorsWriter missing;  // unmarked and without v.<first>
  for (auto& s : model.specs()) {
    missing.add_zeros("m." + s.name, DType::F32, s.shape);
    if (s.name != first) missing.add_zeros("v." + s.name, DType::F32, s.shape);
  }
  missing.write(op);
  e = input_error([&] { load_train_state(meta, model, loaded, m, v); });
  EXPECT_NE(e.find("missing tensor 'v." + first + "'"), std::string::npos) << e;

  SafetensorsWriter empty;  // unmarked and empty: the first moment is missing
  empty.write(op);
  e = input_error([&] { load_train_state(meta, model, loaded, m, v); });
  EXPECT_NE(e.find("missing tensor 'm." + first + "'"), std::string::npos) << e;
}

TEST(CheckpointMemory, LoadPeaksAtTheWeightsAndSaveAddsAlmostNothing) {
  if (peak_memory::status_bytes("VmHWM") < 0) GTEST_SKIP() << "no VmHWM in /proc/self/status";
  TempDir dir;
  {
    // 15.9 M parameters, 64 MB of fp32 weights; STRETCH_PEAK_MEMORY_MB=N for about N MB (layers of width 1024:
    // 48 MB each)
    const char* mb = std::getenv("STRETCH_PEAK_MEMORY_MB");
    Transformer model(mb ? gpt(std::max(1, std::atoi(mb) / 48), 1024) : gpt(5, 512));
    fill(model);
    save_checkpoint(dir / "run", model, kTokenizer, 64, TrainState{}, 1);
  }
  int status = -1;
  auto f = peak_memory::run_child("CheckpointMemory.DISABLED_InFreshProcess", (dir / "figures.txt").string(),
                                  {"STRETCH_PEAK_MEMORY_RUN=" + (dir / "run").string()}, &status);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "child status " << status;
  ASSERT_GT(f["weights"], 60ll << 20);
  EXPECT_EQ(f["mismatches"], 0);
  const double load = static_cast<double>(f["load_peak"] - f["load_base"]) / static_cast<double>(f["weights"]);
  const double save = static_cast<double>(f["save_peak"] - f["save_base"]) / static_cast<double>(f["weights"]);
  std::printf("weights %lld MB: load_model grows the peak by %.3fx the weights, save_checkpoint by %.3fx\n",
              f["weights"] >> 20, load, save);
  EXPECT_GT(load, 0.95) << "the weights themselves must show: the measurement works";
  EXPECT_LT(load, 1.25);
  EXPECT_LT(save, 0.25);
}

// The child: loads the checkpoint, then saves it again (zero moments) to a second run directory, and writes the
// peak growth of each, the weights' size and the number of wrong values.
TEST(CheckpointMemory, DISABLED_InFreshProcess) {
  if (!peak_memory::child_output()) GTEST_SKIP() << "run by LoadPeaksAtTheWeightsAndSaveAddsAlmostNothing";
  const fs::path run = std::getenv("STRETCH_PEAK_MEMORY_RUN");
  const CheckpointMeta meta = read_checkpoint_meta(run);
  const long long load_base = peak_memory::baseline();
  auto model = load_model(meta);
  const long long load_peak = peak_memory::status_bytes("VmHWM");
  long long mismatches = 0;
  for (std::size_t i = 0; i < model->params().size(); ++i) mismatches += model->params()[i] != param_value(i);
  const long long save_base = peak_memory::baseline();
  save_checkpoint(run.parent_path() / "again", *model, meta.tokenizer, meta.train_length, TrainState{}, 1);
  const long long save_peak = peak_memory::status_bytes("VmHWM");
  peak_memory::write_figures({{"load_base", load_base},
                              {"load_peak", load_peak},
                              {"save_base", save_base},
                              {"save_peak", save_peak},
                              {"weights", static_cast<long long>(model->params().size() * sizeof(float))},
                              {"mismatches", mismatches}});
}

// Weights kept in bf16 (eval, passkey, generate --precision bf16): the load peaks at half the fp32 weights plus
// about two of the largest tensor (each matrix passes through its fp32 place and the file's pages, is rounded and
// released before the next; in this small model that tensor is 7% of the weights, in a 1B-class one under 1%), and
// every value is the checkpoint's, rounded.
TEST(CheckpointMemory, Bf16LoadPeaksAtHalfTheWeights) {
  if (peak_memory::status_bytes("VmHWM") < 0) GTEST_SKIP() << "no VmHWM in /proc/self/status";
  if (!matmul_backend().bf16) GTEST_SKIP() << "no bf16 products on this CPU";
  TempDir dir;
  {
    Transformer model(gpt(5, 512));
    fill(model);
    save_checkpoint(dir / "run", model, kTokenizer, 64, TrainState{}, 1);
  }
  int status = -1;
  auto f = peak_memory::run_child("CheckpointMemory.DISABLED_Bf16InFreshProcess", (dir / "figures.txt").string(),
                                  {"STRETCH_PEAK_MEMORY_RUN=" + (dir / "run").string()}, &status);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "child status " << status;
  ASSERT_GT(f["weights"], 60ll << 20);
  EXPECT_EQ(f["mismatches"], 0);
  const double load = static_cast<double>(f["load_peak"] - f["load_base"]) / static_cast<double>(f["weights"]);
  std::printf("fp32 weights %lld MB: load_model in bf16 grows the peak by %.3fx them\n", f["weights"] >> 20, load);
  EXPECT_GT(load, 0.45) << "the bf16 weights themselves must show: the measurement works";
  const double largest = static_cast<double>(f["largest"]) / static_cast<double>(f["weights"]);
#if defined(__SANITIZE_ADDRESS__)
  // ASan's allocator keeps freed blocks in quarantine (0.695x measured): the tight bound is the plain build's; here
  // the load must still stay far below the fp32 weights
  EXPECT_LT(load, 0.8) << "the largest tensor is " << largest << "x the weights";
#else
  EXPECT_LT(load, 0.5 + 2 * largest + 0.05) << "the largest tensor is " << largest << "x the weights";
#endif
}

TEST(CheckpointMemory, DISABLED_Bf16InFreshProcess) {
  if (!peak_memory::child_output()) GTEST_SKIP() << "run by Bf16LoadPeaksAtHalfTheWeights";
  const CheckpointMeta meta = read_checkpoint_meta(std::getenv("STRETCH_PEAK_MEMORY_RUN"));
  const long long load_base = peak_memory::baseline();
  auto model = load_model(meta, WeightStorage::bf16);
  const long long load_peak = peak_memory::status_bytes("VmHWM");
  long long mismatches = 0, largest = 0;
  for (const ParamSpec& s : model->specs()) largest = std::max(largest, static_cast<long long>(s.numel() * 4));
  for (const ParamSpec& s : model->specs())
    for (std::size_t i = s.offset; i < s.offset + s.numel(); ++i)
      mismatches += Transformer::kept_in_bf16(s) ? model->bf16_params()[i] != float_to_bf16(param_value(i))
                                                 : model->params()[i] != param_value(i);
  peak_memory::write_figures({{"load_base", load_base},
                              {"load_peak", load_peak},
                              {"weights", static_cast<long long>(model->params().size() * sizeof(float))},
                              {"largest", largest},
                              {"mismatches", mismatches}});
}

}  // namespace
}  // namespace stretch
