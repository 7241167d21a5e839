// Reliability of the training job: non-finite loss / gradients are caught and named (stop and skip modes), a
// checkpoint never holds NaN, and leftovers of interrupted checkpoint writes are ignored and cleaned.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.hpp"
#include "io/safetensors.hpp"
#include "kernels/grad_norm.hpp"
#include "model/transformer.hpp"
#include "run/checkpoint.hpp"
#include "run/trainer.hpp"
#include "test_util.hpp"

namespace stretch {
namespace {
using test::TempDir;
namespace fs = std::filesystem;

TrainOptions tiny_options(const TempDir& dir, const std::string& name) {
  if (!fs::exists(dir / "corpus.txt")) test::write_text(dir / "corpus.txt", test::generated_text(30000));
  TrainOptions o;
  o.text = {dir / "corpus.txt"};
  o.out = dir / name;
  o.cache_dir = dir / "cache";
  o.model.n_layer = 2;
  o.model.n_embd = 32;
  o.model.n_head = 2;
  o.model.mlp_hidden = 64;
  o.model.block_size = 16;
  o.batch = 2;
  o.lr = 1e-3;
  o.warmup = 0;
  o.eval_interval = 0;
  o.eval_tokens = 256;
  o.quiet = true;
  return o;
}

const ParamSpec& spec(const Transformer& m, const std::string& name) {
  for (auto& s : m.specs())
    if (s.name == name) return s;
  throw std::runtime_error("no tensor " + name);
}

std::string error_of(const TrainOptions& o) {
  try {
    train(o);
  } catch (const NumericError& e) {
    return e.what();
  }
  return "(no NumericError)";
}

void expect_has(const std::string& msg, const std::string& needle) {
  EXPECT_NE(msg.find(needle), std::string::npos) << "expected '" << needle << "' in: " << msg;
}

// The newest complete checkpoint loads (weights and optimizer state), holds only finite values, and is at `step`.
void expect_loadable_at(const fs::path& run, long step) {
  auto steps = list_checkpoints(run);
  ASSERT_FALSE(steps.empty());
  EXPECT_EQ(checkpoint_step(steps.back()), step);
  CheckpointMeta meta = read_checkpoint_meta(run);
  EXPECT_EQ(meta.dir, steps.back());
  auto model = load_model(meta);
  TrainState st;
  Buffer<float> m, v;
  load_train_state(meta, *model, st, m, v);
  EXPECT_EQ(st.step, step);
  EXPECT_EQ(count_nonfinite(model->params().data(), model->params().size()), 0u);
  EXPECT_EQ(count_nonfinite(m.data(), m.size()), 0u);
  EXPECT_EQ(count_nonfinite(v.data(), v.size()), 0u);
}

std::vector<nlohmann::json> metrics_of(const fs::path& run) {
  std::vector<nlohmann::json> out;
  std::istringstream in(test::read_text(run / "metrics.jsonl"));
  std::string line;
  while (std::getline(in, line)) out.push_back(nlohmann::json::parse(line));
  return out;
}

TEST(NonFinite, PoisonedGradientStopsNamingTheStepLayerAndTensor) {
  TempDir dir;
  TrainOptions o = tiny_options(dir, "run");
  o.steps = 8;
  o.ckpt_interval = 2;
  o.after_backward = [](long step, Transformer& m) {
    if (step != 5) return;
    const ParamSpec& s = spec(m, "h.1.attn.c_attn.weight");
    m.grads().data()[s.offset + 7] = std::numeric_limits<float>::quiet_NaN();
    m.grads().data()[s.offset + 9] = std::numeric_limits<float>::infinity();
  };
  const std::string msg = error_of(o);
  expect_has(msg, "at step 5:");
  expect_has(msg, "gradients: 'h.1.attn.c_attn.weight' (layer 1): 2 of " +
                      std::to_string(3 * 32 * 32) + " values");
  EXPECT_EQ(msg.find("loss is"), std::string::npos) << msg;  // the loss was finite
  EXPECT_EQ(msg.find("h.0."), std::string::npos) << msg;     // no other tensor is blamed
  // the checkpoint before the failure (step 4) is the newest and loads; nothing later was written
  expect_loadable_at(o.out, 4);
}

TEST(NonFinite, PoisonedWeightNamesTheLossAndTheTensor) {
  TempDir dir;
  TrainOptions o = tiny_options(dir, "run");
  o.steps = 6;
  o.ckpt_interval = 2;
  o.after_backward = [](long step, Transformer& m) {
    if (step == 3) m.params().data()[spec(m, "h.0.mlp.c_fc.weight").offset + 3] = std::nanf("");
  };
  const std::string msg = error_of(o);
  expect_has(msg, "at step 4:");  // the weight went bad in step 3's update; step 4's loss is NaN
  expect_has(msg, "loss is NaN");
  expect_has(msg, "weights: 'h.0.mlp.c_fc.weight' (layer 0): 1 of 2048 values");
  expect_loadable_at(o.out, 2);  // step 4's checkpoint (after the failed step) is never written
  EXPECT_FALSE(fs::exists(o.out / "checkpoints" / "step-00000004"));
}

TEST(NonFinite, SkipModeDropsTheUpdateAndTrainingGoesOn) {
  TempDir dir;
  TrainOptions o = tiny_options(dir, "run");
  o.steps = 8;
  o.ckpt_interval = 4;
  o.log_interval = 1;
  o.nonfinite = NonFinite::skip;
  std::map<long, std::vector<float>> seen;  // the weights at each step's hook (before that step's update)
  o.after_backward = [&](long step, Transformer& m) {
    seen[step].assign(m.params().data(), m.params().data() + m.params().size());
    if (step == 3 || step == 4) m.grads().data()[spec(m, "h.0.ln_1.weight").offset] = std::nanf("");
  };
  TrainResult r = train(o);
  EXPECT_EQ(r.steps, 8);
  EXPECT_EQ(r.skipped_steps, 2);
  EXPECT_TRUE(std::isfinite(r.final_train_loss));
  // no update in steps 3 and 4: the weights seen at steps 3, 4 and 5 are those after step 2
  EXPECT_EQ(seen[3], seen[4]);
  EXPECT_EQ(seen[4], seen[5]);
  EXPECT_NE(seen[5], seen[6]);  // step 5 updated again
  EXPECT_NE(seen[2], seen[3]);
  // the metrics log has one record per skipped step, with a running count, and the total at the end
  std::vector<long> skipped;
  long final_count = -1;
  for (auto& j : metrics_of(o.out)) {
    if (j.value("skipped", false)) {
      skipped.push_back(j["step"].get<long>());
      EXPECT_EQ(j["skipped_steps"].get<long>(), static_cast<long>(skipped.size()));
      expect_has(j["reason"].get<std::string>(), "'h.0.ln_1.weight' (layer 0): 1 of 32 values");
    }
    if (j.value("final", false)) final_count = j.value("skipped_steps", 0L);
    if (j.contains("loss")) {
      EXPECT_TRUE(j["loss"].is_number()) << j.dump();  // no NaN line
    }
  }
  EXPECT_EQ(skipped, (std::vector<long>{3, 4}));
  EXPECT_EQ(final_count, 2);
  expect_loadable_at(o.out, 8);
  TrainState st;
  Buffer<float> m, v;
  CheckpointMeta meta = read_checkpoint_meta(o.out);
  load_train_state(meta, *load_model(meta), st, m, v);
  EXPECT_EQ(st.skipped_steps, 2);
}

TEST(NonFinite, SkipModeStopsAfterTooManyConsecutiveSkips) {
  TempDir dir;
  TrainOptions o = tiny_options(dir, "run");
  o.steps = 20;
  o.ckpt_interval = 1;
  o.nonfinite = NonFinite::skip;
  o.max_consecutive_skips = 3;
  o.after_backward = [](long step, Transformer& m) {
    if (step >= 3) m.grads().data()[spec(m, "lm_head.weight").offset] = std::numeric_limits<float>::infinity();
  };
  o.model.tie_embeddings = false;
  const std::string msg = error_of(o);
  expect_has(msg, "at step 6:");  // steps 3, 4, 5 skipped; the 4th in a row stops
  expect_has(msg, "more than 3 consecutive steps skipped");
  expect_has(msg, "'lm_head.weight' (output): 1 of");
  expect_loadable_at(o.out, 5);  // skipped steps are checkpointed with the weights of step 2
}

TEST(CheckpointWrite, NonFiniteWeightsAreNeverWritten) {
  TempDir dir;
  TrainOptions o = tiny_options(dir, "run");
  o.steps = 2;
  train(o);
  CheckpointMeta meta = read_checkpoint_meta(o.out);
  auto model = load_model(meta);
  TrainState st;
  Buffer<float> m, v;
  load_train_state(meta, *model, st, m, v);
  model->params().data()[spec(*model, "h.1.mlp.c_proj.weight").offset + 5] = -std::numeric_limits<float>::infinity();
  st.step = 3;
  try {
    save_checkpoint(o.out, *model, meta.tokenizer, meta.train_length, st, m, v);
    FAIL() << "expected NumericError";
  } catch (const NumericError& e) {
    expect_has(e.what(), "'h.1.mlp.c_proj.weight' holds 1 NaN/Inf value(s)");
  }
  model->params().data()[spec(*model, "h.1.mlp.c_proj.weight").offset + 5] = 0.0f;
  v.data()[0] = std::nanf("");
  EXPECT_THROW(save_checkpoint(o.out, *model, meta.tokenizer, meta.train_length, st, m, v), NumericError);
  EXPECT_FALSE(fs::exists(o.out / "checkpoints" / "step-00000003"));
  expect_loadable_at(o.out, 2);
}

TEST(CheckpointWrite, SameStepSavedAgainIsReplacedWhole) {
  TempDir dir;
  TrainOptions o = tiny_options(dir, "run");
  o.steps = 2;
  train(o);
  CheckpointMeta meta = read_checkpoint_meta(o.out);
  auto model = load_model(meta);
  TrainState st;
  Buffer<float> m, v;
  load_train_state(meta, *model, st, m, v);
  st.elapsed_s = 12345.0;
  save_checkpoint(o.out, *model, meta.tokenizer, meta.train_length, st, m, v);
  TrainState again;
  load_train_state(read_checkpoint_meta(o.out), *model, again, m, v);
  EXPECT_EQ(again.elapsed_s, 12345.0);
  for (auto& e : fs::directory_iterator(o.out / "checkpoints"))
    EXPECT_EQ(e.path().filename().string().find(".tmp"), std::string::npos) << e.path();
}

// What a crash can leave (and what an older writer could): a temporary folder of a dead process, a temporary of
// `latest`, a stale `latest`, an incomplete step folder. Resolution ignores them; a resume removes them.
TEST(CheckpointWrite, LeftoversOfInterruptedWritesAreIgnoredAndCleaned) {
  TempDir dir;
  TrainOptions o = tiny_options(dir, "run");
  o.steps = 6;
  o.stop_after = 4;
  o.ckpt_interval = 2;
  o.keep_checkpoints = 5;
  train(o);
  const fs::path root = o.out / "checkpoints";
  ASSERT_TRUE(is_complete_checkpoint(root / "step-00000004"));
  const fs::path dead_tmp = root / ".tmp-step-00000006-4194399";  // above Linux's pid_max: no such process
  fs::create_directory(dead_tmp);
  fs::copy_file(root / "step-00000004" / "config.json", dead_tmp / "config.json");
  test::write_text(dead_tmp / ".model.safetensors.tmp-abcdef", "half");
  const fs::path partial = root / "step-00000009";  // no state.json, no optimizer
  fs::create_directory(partial);
  fs::copy_file(root / "step-00000004" / "config.json", partial / "config.json");
  fs::copy_file(root / "step-00000004" / "model.safetensors", partial / "model.safetensors");
  test::write_text(root / ".latest.tmp-Q1w2e3", "step-000");
  test::write_text(root / "latest", "step-00000002\n");  // a crash between the rename and `latest`

  EXPECT_FALSE(is_complete_checkpoint(partial));
  EXPECT_EQ(resolve_checkpoint(o.out), root / "step-00000004");
  auto steps = list_checkpoints(o.out);
  ASSERT_EQ(steps.size(), 2u);
  EXPECT_EQ(steps[0].filename(), "step-00000002");

  o.resume = true;
  o.stop_after = 0;
  TrainResult r = train(o);
  EXPECT_EQ(r.steps, 6);
  EXPECT_FALSE(fs::exists(dead_tmp));
  EXPECT_FALSE(fs::exists(partial));
  EXPECT_FALSE(fs::exists(root / ".latest.tmp-Q1w2e3"));
  EXPECT_EQ(test::read_text(root / "latest"), "step-00000006\n");
  expect_loadable_at(o.out, 6);
}

TEST(CheckpointWrite, RunStoppedBeforeItsFirstCheckpointStartsAgain) {
  TempDir dir;
  TrainOptions o = tiny_options(dir, "run");
  o.steps = 2;
  fs::create_directories(o.out / "checkpoints" / ".tmp-step-00000001-4194399");
  try {
    TrainOptions r = o;
    r.resume = true;
    train(r);
    FAIL() << "expected UsageError";
  } catch (const UsageError& e) {
    expect_has(e.what(), "no complete checkpoint yet");
  }
  EXPECT_EQ(train(o).steps, 2);  // without --resume: starts again, debris removed
  EXPECT_FALSE(fs::exists(o.out / "checkpoints" / ".tmp-step-00000001-4194399"));
  expect_loadable_at(o.out, 2);
}

}  // namespace
}  // namespace stretch

namespace stretch {
namespace {

// A config.json that claims a far larger model than model.safetensors holds (a hand-edited or mismatched
// checkpoint) fails on the first tensor whose shape differs, naming it, before any buffer is sized from the
// config: here 1024 layers of width 65536, about 53 billion parameters (200 GB), which the old order of
// allocate-then-read would have tried to allocate.
TEST(CheckpointRead, ConfigClaimingAHugeModelFailsByNameBeforeAllocating) {
  TempDir dir;
  TrainOptions o = tiny_options(dir, "run");
  o.steps = 1;
  train(o);
  const fs::path ck = resolve_checkpoint(o.out);
  nlohmann::json cfg = nlohmann::json::parse(test::read_text(ck / "config.json"));
  nlohmann::json& model = cfg.contains("model") ? cfg["model"] : cfg;
  ASSERT_TRUE(model.contains("n_layer") && model.contains("n_embd")) << cfg.dump();
  model["n_layer"] = 1024;
  model["n_embd"] = 65536;
  model["n_head"] = 64;
  if (model.contains("mlp_hidden")) model["mlp_hidden"] = 65536;
  test::write_text(ck / "config.json", cfg.dump());
  try {
    load_model(read_checkpoint_meta(ck));
    ADD_FAILURE() << "the mismatched checkpoint loaded";
  } catch (const InputError& e) {
    const std::string msg = e.what();
    expect_has(msg, "model.safetensors");
    expect_has(msg, "the model config needs");
  }
}

}  // namespace
}  // namespace stretch
