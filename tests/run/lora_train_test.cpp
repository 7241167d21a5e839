// LoRA fine-tuning end to end (run/trainer with model.lora): the base stays bit for bit what it was, the adapter
// and the --train-also groups train, the optimizer saves moments for those alone, resume is exact, the loss goes
// down, and the merged checkpoint evaluates as the adapted one.
#include <gtest/gtest.h>
#include <xxhash.h>

#include <cmath>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.hpp"
#include "io/safetensors.hpp"
#include "model/lora.hpp"
#include "run/checkpoint.hpp"
#include "run/evaluate.hpp"
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

TrainOptions small(const TempDir& dir, const std::string& name, Arch arch) {
  TrainOptions o;
  o.text = {dir / "corpus.txt"};
  o.out = dir / name;
  o.cache_dir = dir / "cache";
  o.model.arch = arch;
  o.model.bias = arch == Arch::gpt;
  o.model.position = arch == Arch::llama ? PositionMethod::rope : PositionMethod::alibi;
  o.model.n_layer = 2;
  o.model.n_embd = 64;
  o.model.n_head = 4;
  o.model.n_kv_head = arch == Arch::llama ? 2 : 0;
  o.model.mlp_hidden = 128;
  o.model.block_size = 32;
  o.batch = 8;
  o.lr = 3e-3;
  o.eval_interval = 0;
  o.quiet = true;
  return o;
}

// A fine-tune of `base`'s model with a rank-4 adapter at twice the length.
TrainOptions lora_of(const TrainOptions& base, const std::string& name, const char* targets) {
  TrainOptions o = base;
  o.out = base.out.parent_path() / name;
  o.init_from = base.out;
  o.model = read_checkpoint_meta(base.out).model;
  o.model.block_size = 64;
  o.model.lora.rank = 4;
  o.model.lora.alpha = 8.0;
  o.model.lora.targets = parse_lora_targets(targets, o.model.arch, "test");
  o.lr = 1e-2;
  o.weight_decay = 0.0;
  return o;
}

std::uint64_t tensor_hash(SafetensorsReader& r, const std::string& name) {
  const std::vector<float> v = r.read_f32(name);
  return XXH3_64bits(v.data(), v.size() * sizeof(float));
}

class LoraTrain : public ::testing::TestWithParam<Arch> {};

TEST_P(LoraTrain, TheBaseStaysFrozenAndTheAdapterLearns) {
  TempDir dir;
  test::write_text(dir / "corpus.txt", corpus_text());
  TrainOptions base = small(dir, "base", GetParam());
  base.steps = 30;
  train(base);
  TrainOptions ft = lora_of(base, "lora", GetParam() == Arch::llama ? "q,k,v,o,gate,up,down" : "q,v,down");
  ft.train_also = "norm";
  ft.steps = 40;
  ft.log_interval = 1;
  const TrainResult r = train(ft);

  auto before = SafetensorsReader::open(resolve_checkpoint(base.out) / "model.safetensors");
  auto after = SafetensorsReader::open(resolve_checkpoint(ft.out) / "model.safetensors");
  auto moments = SafetensorsReader::open(resolve_checkpoint(ft.out) / "optimizer.safetensors");
  std::size_t adapter = 0, norms = 0, frozen = 0;
  for (const TensorEntry& t : after.tensors()) {
    const bool is_adapter = t.name.find(".lora.") != std::string::npos;
    const bool is_norm = t.name.find("norm") != std::string::npos || t.name.find("ln_") != std::string::npos;
    if (is_adapter) {
      adapter++;
      EXPECT_FALSE(before.has(t.name));
      EXPECT_TRUE(moments.has("m." + t.name)) << t.name;
      if (t.name.back() == 'B') {  // started at zero, trained away from it
        double norm = 0;
        for (float x : after.read_f32(t.name)) norm += std::abs(x);
        EXPECT_GT(norm, 0.0) << t.name;
      }
    } else if (is_norm) {
      norms++;
      EXPECT_NE(tensor_hash(before, t.name), tensor_hash(after, t.name)) << t.name << ": --train-also norm";
      EXPECT_TRUE(moments.has("v." + t.name)) << t.name;
    } else {
      frozen++;
      EXPECT_EQ(tensor_hash(before, t.name), tensor_hash(after, t.name)) << t.name << " is frozen, yet it changed";
      EXPECT_FALSE(moments.has("m." + t.name)) << t.name << ": a frozen tensor has no AdamW state";
    }
  }
  EXPECT_GT(adapter, 0u);
  EXPECT_GT(norms, 0u);
  EXPECT_GT(frozen, 0u);
  EXPECT_EQ(moments.tensors().size(), 2 * (adapter + norms));

  // it learned: the training loss of the last steps is below the first steps'
  std::istringstream in(test::read_text(ft.out / "metrics.jsonl"));
  std::vector<double> losses;
  for (std::string line; std::getline(in, line);) {
    auto j = nlohmann::json::parse(line);
    if (j.contains("loss")) losses.push_back(j["loss"].get<double>());
  }
  ASSERT_GE(losses.size(), 40u);
  double first = 0, last = 0;
  for (int i = 0; i < 5; i++) {
    first += losses[i];
    last += losses[losses.size() - 1 - i];
  }
  EXPECT_LT(last, first - 0.05) << "first five " << first / 5 << ", last five " << last / 5;
  const CheckpointMeta meta = read_checkpoint_meta(ft.out);
  EXPECT_TRUE(meta.model.lora.enabled());
  std::size_t adapter_floats = 0;
  const auto model = load_model(meta);
  for (const ParamSpec& s : model->specs())
    if (s.kind == ParamKind::lora_a || s.kind == ParamKind::lora_b || s.kind == ParamKind::norm) adapter_floats += s.numel();
  if (GetParam() == Arch::gpt) {
    EXPECT_GT(r.trained_parameters, adapter_floats);  // and the LayerNorm biases
  } else {
    EXPECT_EQ(r.trained_parameters, adapter_floats);
  }
}

TEST_P(LoraTrain, AResumedFineTuneEndsWhereOneNeverStoppedDoes) {
  TempDir dir;
  test::write_text(dir / "corpus.txt", corpus_text());
  TrainOptions base = small(dir, "base", GetParam());
  base.steps = 10;
  train(base);
  TrainOptions whole = lora_of(base, "whole", "q,k,v,o");
  whole.steps = 16;
  whole.grad_accum = 2;
  whole.model.lora.dropout = 0.1f;
  whole.train_also = "embed";
  whole.s2_attn = GetParam() == Arch::llama;  // LongLoRA's S2-Attn on one of the two
  train(whole);
  TrainOptions part = whole;
  part.out = dir / "part";
  part.stop_after = 7;
  EXPECT_EQ(train(part).steps, 7);
  part.resume = true;
  part.stop_after = 0;
  EXPECT_EQ(train(part).steps, 16);
  auto wa = SafetensorsReader::open(resolve_checkpoint(whole.out) / "model.safetensors");
  auto wb = SafetensorsReader::open(resolve_checkpoint(part.out) / "model.safetensors");
  for (auto& t : wa.tensors()) EXPECT_EQ(wa.read_f32(t.name), wb.read_f32(t.name)) << t.name;
  auto ma = SafetensorsReader::open(resolve_checkpoint(whole.out) / "optimizer.safetensors");
  auto mb = SafetensorsReader::open(resolve_checkpoint(part.out) / "optimizer.safetensors");
  ASSERT_EQ(ma.tensors().size(), mb.tensors().size());
  for (auto& t : ma.tensors()) EXPECT_EQ(ma.read_f32(t.name), mb.read_f32(t.name)) << t.name;
  // and a resume with another adapter is refused by name
  part.model.lora.rank = 8;
  try {
    train(part);
    ADD_FAILURE() << "a resume with another rank was accepted";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("model"), std::string::npos) << e.what();
  }
}

// load_model_merged (what eval, generate, passkey and the exporters load) gives the adapted model's loss.
TEST_P(LoraTrain, TheMergedCheckpointEvaluatesAsTheAdaptedOne) {
  TempDir dir;
  test::write_text(dir / "corpus.txt", corpus_text());
  TrainOptions base = small(dir, "base", GetParam());
  base.steps = 10;
  train(base);
  TrainOptions ft = lora_of(base, "lora", "q,k,v,o");
  ft.steps = 10;
  train(ft);
  const CheckpointMeta meta = read_checkpoint_meta(ft.out);
  auto adapted = load_model(meta);
  auto merged = load_model_merged(meta);
  EXPECT_TRUE(adapted->config().lora.enabled());
  EXPECT_FALSE(merged->config().lora.enabled());
  std::vector<std::int32_t> tokens(65);
  const std::string text = corpus_text();
  for (int i = 0; i < 65; i++) tokens[i] = static_cast<unsigned char>(text[1000 + i]);
  const double la = adapted->forward(tokens.data(), tokens.data() + 1, nullptr, 1, 64);
  const double lm = merged->forward(tokens.data(), tokens.data() + 1, nullptr, 1, 64);
  EXPECT_NEAR(la, lm, 1e-5 * la);
}

TEST(LoraTrainErrors, AnAdapterOnAModelWithAnotherOneIsRefusedNamingTheFlag) {
  TempDir dir;
  test::write_text(dir / "corpus.txt", corpus_text());
  TrainOptions base = small(dir, "base", Arch::gpt);
  base.steps = 4;
  train(base);
  TrainOptions ft = lora_of(base, "lora", "q");
  ft.steps = 4;
  train(ft);
  TrainOptions again = lora_of(ft, "again", "q");
  again.model.lora.rank = 2;
  try {
    train(again);
    ADD_FAILURE() << "accepted another rank";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("`lora` 4"), std::string::npos) << e.what();
  }
  TrainOptions also = small(dir, "also", Arch::gpt);
  also.train_also = "norm";
  try {
    train(also);
    ADD_FAILURE() << "`train_also` without an adapter was accepted";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("`train_also`"), std::string::npos) << e.what();
  }
}

INSTANTIATE_TEST_SUITE_P(Families, LoraTrain, ::testing::Values(Arch::gpt, Arch::llama),
                         [](const auto& info) { return std::string(to_string(info.param)); });

}  // namespace
}  // namespace stretch
