// The training job end to end: learning, determinism, exact resume, checkpoint layout.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "io/safetensors.hpp"
#include "run/checkpoint.hpp"
#include "run/trainer.hpp"
#include "test_util.hpp"

namespace stretch {
namespace {
using test::TempDir;

std::string corpus_text() {
  auto ts = test::shared_data() / "tinystories" / "train.txt";
  if (std::filesystem::exists(ts)) return test::read_text(ts).substr(0, 120000);
  return test::generated_text(120000);
}

// Unigram (byte) entropy of a text in nats: the loss of the best model that ignores context.
double unigram_entropy(const std::string& s) {
  std::map<unsigned char, double> counts;
  for (unsigned char c : s) counts[c] += 1;
  double h = 0;
  for (auto& [c, n] : counts) h -= n / s.size() * std::log(n / s.size());
  return h;
}

TrainOptions small_options(const TempDir& dir, const std::string& name) {
  TrainOptions o;
  o.text = {dir / "corpus.txt"};
  o.out = dir / name;
  o.cache_dir = dir / "cache";
  o.model.n_layer = 2;
  o.model.n_embd = 64;
  o.model.n_head = 4;
  o.model.mlp_hidden = 256;
  o.model.block_size = 64;
  o.batch = 8;
  o.lr = 3e-3;
  o.warmup = -1;  // auto: steps / 10
  o.eval_interval = 0;
  o.quiet = true;
  return o;
}

std::vector<std::string> loss_lines(const std::filesystem::path& metrics) {
  std::vector<std::string> out;
  std::istringstream in(test::read_text(metrics));
  std::string line;
  while (std::getline(in, line)) {
    auto j = nlohmann::json::parse(line);
    if (j.contains("loss")) out.push_back(std::to_string(j["step"].get<long>()) + ":" + j["loss"].dump());
  }
  return out;
}

TEST(Train, TwoHundredStepsGoWellBelowTheUnigramEntropy) {
  TempDir dir;
  const std::string text = corpus_text();
  test::write_text(dir / "corpus.txt", text);
  const double h = unigram_entropy(text);
  for (auto method : {PositionMethod::alibi, PositionMethod::rope}) {
    TrainOptions o = small_options(dir, std::string(to_string(method)));
    o.model.position = method;
    o.steps = 200;
    TrainResult r = train(o);
    EXPECT_LT(r.final_train_loss, 0.75 * h) << to_string(method) << ": unigram entropy " << h;
    EXPECT_LT(r.val_loss, 0.8 * h) << to_string(method);
    EXPECT_GT(r.val_tokens, 0);
  }
}

TEST(Train, SameSeedGivesTheSameRunBitForBit) {
  TempDir dir;
  test::write_text(dir / "corpus.txt", corpus_text());
  TrainOptions a = small_options(dir, "a"), b = small_options(dir, "b");
  a.steps = b.steps = 12;
  a.log_interval = b.log_interval = 1;
  a.model.dropout = b.model.dropout = 0.1f;
  a.model.position = b.model.position = PositionMethod::t5;
  train(a);
  train(b);
  EXPECT_EQ(loss_lines(a.out / "metrics.jsonl"), loss_lines(b.out / "metrics.jsonl"));
  auto wa = SafetensorsReader::open(resolve_checkpoint(a.out) / "model.safetensors");
  auto wb = SafetensorsReader::open(resolve_checkpoint(b.out) / "model.safetensors");
  EXPECT_EQ(wa.read_f32("wte"), wb.read_f32("wte"));
  EXPECT_EQ(wa.read_f32("t5_bias"), wb.read_f32("t5_bias"));
}

TEST(Train, ResumedRunGivesTheSameLossesAsOneNeverStopped) {
  TempDir dir;
  test::write_text(dir / "corpus.txt", corpus_text());
  TrainOptions whole = small_options(dir, "whole");
  whole.steps = 30;
  whole.log_interval = 1;
  whole.grad_accum = 2;
  whole.model.dropout = 0.05f;
  train(whole);

  TrainOptions part = whole;
  part.out = dir / "part";
  part.stop_after = 13;
  TrainResult r1 = train(part);
  EXPECT_EQ(r1.steps, 13);
  part.resume = true;
  part.stop_after = 0;
  TrainResult r2 = train(part);
  EXPECT_EQ(r2.steps, 30);
  EXPECT_EQ(loss_lines(whole.out / "metrics.jsonl"), loss_lines(part.out / "metrics.jsonl"));
  // the first session's end-of-session validation was marked "stopped" (not "final", which scripts take for a
  // finished run) and the resumed run dropped it: one final line, at step 30
  const std::string log = test::read_text(part.out / "metrics.jsonl");
  EXPECT_EQ(log.find("\"stopped\""), std::string::npos) << log;
  EXPECT_NE(log.find("\"final\":true"), std::string::npos) << log;
  EXPECT_EQ(log.find("\"final\""), log.rfind("\"final\"")) << log;
  auto wa = SafetensorsReader::open(resolve_checkpoint(whole.out) / "model.safetensors");
  auto wb = SafetensorsReader::open(resolve_checkpoint(part.out) / "model.safetensors");
  for (auto& t : wa.tensors()) EXPECT_EQ(wa.read_f32(t.name), wb.read_f32(t.name)) << t.name;
}

TEST(Train, ResumeWithDifferentOptionsIsRefusedByName) {
  TempDir dir;
  test::write_text(dir / "corpus.txt", corpus_text());
  TrainOptions o = small_options(dir, "run");
  o.steps = 4;
  train(o);
  o.resume = true;
  o.lr = 1e-4;
  try {
    train(o);
    FAIL() << "expected UsageError";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("lr"), std::string::npos) << e.what();
  }
}

TEST(Train, CheckpointLayoutAndLoadableWeights) {
  TempDir dir;
  test::write_text(dir / "corpus.txt", corpus_text());
  TrainOptions o = small_options(dir, "run");
  o.steps = 6;
  o.ckpt_interval = 2;
  o.keep_checkpoints = 2;
  o.model.position = PositionMethod::learned;
  train(o);
  const auto root = o.out / "checkpoints";
  EXPECT_EQ(test::read_text(root / "latest"), "step-00000006\n");
  EXPECT_TRUE(std::filesystem::exists(root / "step-00000004"));
  EXPECT_FALSE(std::filesystem::exists(root / "step-00000002"));  // pruned (keep 2)
  CheckpointMeta meta = read_checkpoint_meta(o.out);
  EXPECT_EQ(meta.model.position, PositionMethod::learned);
  EXPECT_EQ(meta.train_length, 64);
  auto model = load_model(meta);
  EXPECT_EQ(model->num_parameters(), Transformer(meta.model).num_parameters());
  // no temporary files left behind
  for (auto& e : std::filesystem::recursive_directory_iterator(o.out))
    EXPECT_EQ(e.path().filename().string().find(".tmp"), std::string::npos) << e.path();
}

}  // namespace
}  // namespace stretch
