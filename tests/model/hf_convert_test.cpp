// Hugging Face checkpoints against transformers itself: tools/make_hf_fixtures.py (PyPI's transformers) made each
// folder of tests/fixtures/hf with save_pretrained and recorded transformers' logits and greedy continuations.
// model_from_hf must give the same logits (within 1e-4 of the largest) and the same greedy tokens, for every family
// and every rope_scaling type (at lengths past the original context); export then import must give the model back
// bit for bit, in transformers' tensor layout; bad folders are refused naming the file and the key.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>

#include "core/error.hpp"
#include "core/fs.hpp"
#include "io/hf_weights.hpp"
#include "io/safetensors.hpp"
#include "model/decoder.hpp"
#include "model/hf_convert.hpp"
#include "test_util.hpp"

namespace stretch {
namespace {
namespace fs = std::filesystem;
using json = nlohmann::json;
using test::TempDir;

fs::path fixtures() { return fs::path(STRETCH_SOURCE_DIR) / "tests/fixtures/hf"; }

const SafetensorsReader& expected() {
  static SafetensorsReader r = SafetensorsReader::open(fixtures() / "expected.safetensors");
  return r;
}

// max |ours - theirs| / max |theirs| over the recorded rows
double logit_error(Transformer& m, const std::string& rows_key, const std::string& logits_key,
                   const std::vector<std::int32_t>& tokens) {
  const auto rows = expected().read_i32(rows_key);
  const auto want = expected().read_f32(logits_key);
  const int T = static_cast<int>(tokens.size()), V = m.config().vocab_size;
  EXPECT_EQ(want.size(), rows.size() * V);
  ForwardOptions fo;
  fo.keep_logits = true;
  m.forward(tokens.data(), nullptr, nullptr, 1, T, fo);
  double err = 0, scale = 0;
  for (std::size_t r = 0; r < rows.size(); r++)
    for (int v = 0; v < V; v++) {
      const double a = m.logits()[static_cast<std::size_t>(rows[r]) * V + v], b = want[r * V + v];
      err = std::max(err, std::fabs(a - b));
      scale = std::max(scale, std::fabs(b));
    }
  return err / scale;
}

// greedy continuation of the first `prompt` tokens through the key/value cache, as transformers' generate()
std::vector<std::int32_t> greedy(Transformer& m, const std::vector<std::int32_t>& tokens, int prompt, int n) {
  Decoder d(m, prompt + n, false);
  const int V = m.config().vocab_size;
  const float* logits = d.append(tokens.data(), prompt);
  std::vector<std::int32_t> out;
  for (int i = 0; i < n; i++) {
    const std::int32_t next = static_cast<std::int32_t>(std::max_element(logits, logits + V) - logits);
    out.push_back(next);
    if (i + 1 < n) logits = d.append(&next, 1);
  }
  return out;
}

const std::string kCases[] = {"llama_gqa", "llama_tied", "mistral", "qwen2", "gpt2", "gpt2_gelu_noprefix", "mpt", "bloom"};

class HfFamilies : public ::testing::TestWithParam<std::string> {};

TEST_P(HfFamilies, LogitsAndGreedyMatchTransformers) {
  const std::string name = GetParam();
  HfImport imp = model_from_hf(fixtures() / name);
  const json cases = json::parse(expected().metadata().at("cases"));
  EXPECT_EQ(std::string(hf_architecture(imp.family)), cases[name]["family"].get<std::string>());
  const auto tokens = expected().read_i32(name + ".tokens");
  EXPECT_LT(logit_error(*imp.model, name + ".rows", name + ".logits", tokens), 1e-4) << name;
  const auto want = expected().read_i32(name + ".greedy");
  EXPECT_EQ(greedy(*imp.model, tokens, cases[name]["prompt"].get<int>(), static_cast<int>(want.size())), want) << name;
}

TEST_P(HfFamilies, ExportThenImportGivesTheModelBackInTransformersLayout) {
  const std::string name = GetParam();
  HfImport imp = model_from_hf(fixtures() / name);
  TempDir dir;
  HfExportOptions o;
  const HfFamily f = model_to_hf(*imp.model, dir.path, o);
  EXPECT_EQ(f, imp.family);
  HfImport back = model_from_hf(dir.path);
  ASSERT_EQ(back.model->params().size(), imp.model->params().size());
  EXPECT_TRUE(std::equal(back.model->params().data(), back.model->params().data() + back.model->params().size(),
                         imp.model->params().data()))
      << name << ": F32 export then import changed a weight";
  EXPECT_EQ(back.model->config().to_json(), imp.model->config().to_json());
  // the same tensor names and shapes as transformers' own folder (GPT-2 files are written with the prefix)
  const HfWeights theirs = HfWeights::open(fixtures() / (name == "gpt2_gelu_noprefix" ? std::string("gpt2") : name));
  const HfWeights ours = HfWeights::open(dir.path);
  std::vector<std::string> tn = theirs.names(), on = ours.names();
  if (name == "gpt2_gelu_noprefix") {  // untied and a different MLP width: compare names only with lm_head added
    tn.push_back("lm_head.weight");
    std::sort(tn.begin(), tn.end());
  }
  EXPECT_EQ(on, tn) << name;
  if (name != "gpt2_gelu_noprefix") {
    for (const auto& n : on) EXPECT_EQ(ours.entry(n).shape, theirs.entry(n).shape) << n;
  }
  // config.json: the keys transformers' class reads, with our values
  const json cfg = json::parse(read_file(dir / "config.json"));
  EXPECT_EQ(cfg["architectures"][0], std::string(hf_architecture(f)));
}

INSTANTIATE_TEST_SUITE_P(Fixtures, HfFamilies, ::testing::ValuesIn(kCases), [](const auto& info) { return info.param; });

// ---------------------------------------------------------------------------------------- every rope_scaling type

const std::string kRope[] = {"default", "linear",        "linear_v4", "dynamic", "yarn",    "yarn_mscale",
                             "yarn_explicit", "yarn_v4", "llama3",    "longrope"};

class HfRopeTypes : public ::testing::TestWithParam<std::string> {};

TEST_P(HfRopeTypes, LogitsPastTheOriginalContextMatchTransformers) {
  const std::string name = GetParam();
  TempDir dir;
  fs::copy_file(fixtures() / "rope" / (name + ".json"), dir / "config.json");
  fs::copy_file(fixtures() / "llama_rope" / "model.safetensors", dir / "model.safetensors");
  HfImport imp = model_from_hf(dir.path);
  const auto tokens = expected().read_i32("rope.tokens");
  EXPECT_LT(logit_error(*imp.model, "rope.rows", "rope." + name + ".logits", tokens), 1e-4) << name << ": " << imp.model->config().to_json().dump();
  if (expected().has("rope." + name + ".greedy")) {
    const auto want = expected().read_i32("rope." + name + ".greedy");
    EXPECT_EQ(greedy(*imp.model, tokens, 12, static_cast<int>(want.size())), want) << name;
  }
}

INSTANTIATE_TEST_SUITE_P(Types, HfRopeTypes, ::testing::ValuesIn(kRope), [](const auto& info) { return info.param; });

// ---------------------------------------------------------------------------------------- refusals

// A copy of a fixture folder whose config.json is edited by `edit` (and files by `files`).
struct Broken {
  TempDir dir;
  explicit Broken(const std::string& from) {
    for (const auto& e : fs::directory_iterator(fixtures() / from)) fs::copy_file(e.path(), dir / e.path().filename().string());
  }
  void edit(const std::function<void(json&)>& f) {
    json j = json::parse(read_file(dir / "config.json"));
    f(j);
    std::ofstream(dir / "config.json") << j.dump(2);
  }
};

std::string import_error(const fs::path& p) {
  try {
    model_from_hf(p);
  } catch (const InputError& e) {
    return e.what();
  }
  return "(no error)";
}

void expect_mentions(const std::string& msg, std::initializer_list<std::string> parts) {
  for (const auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' missing from: " << msg;
}

TEST(HfImport, RefusesUnknownArchitecturesAndUnsupportedFeaturesNamingTheKey) {
  {
    Broken b("llama_tied");
    b.edit([](json& j) { j["architectures"] = {"FalconForCausalLM"}; });
    expect_mentions(import_error(b.dir.path), {"config.json", "architectures", "FalconForCausalLM", "LlamaForCausalLM"});
  }
  {
    Broken b("mpt");
    b.edit([](json& j) { j["attn_config"]["clip_qkv"] = 6.0; });
    expect_mentions(import_error(b.dir.path), {"config.json", "clip_qkv"});
  }
  {
    Broken b("llama_tied");
    b.edit([](json& j) { j["rope_parameters"] = {{"rope_type", "su"}, {"rope_theta", 10000.0}}; });
    expect_mentions(import_error(b.dir.path), {"config.json", "su"});
  }
  {
    Broken b("llama_tied");
    b.edit([](json& j) { j["hidden_act"] = "gelu"; });
    expect_mentions(import_error(b.dir.path), {"config.json", "hidden_act"});
  }
  {
    Broken b("llama_tied");
    b.edit([](json& j) { j["head_dim"] = 16; });
    expect_mentions(import_error(b.dir.path), {"config.json", "head_dim"});
  }
  {
    Broken b("bloom");
    b.edit([](json& j) { j["apply_residual_connection_post_layernorm"] = true; });
    expect_mentions(import_error(b.dir.path), {"apply_residual_connection_post_layernorm"});
  }
  {
    Broken b("gpt2");
    b.edit([](json& j) { j["n_embd"] = 4294967328LL; });  // 2^32 + 32: refused as itself, not wrapped to 32
    expect_mentions(import_error(b.dir.path), {"n_embd", "4294967328"});
  }
}

TEST(HfImport, RefusesShardsThatDisagreeWithTheIndexAndWrongShapes) {
  {  // a missing shard
    Broken b("llama_gqa");
    fs::remove(b.dir / "model-00002-of-00004.safetensors");
    expect_mentions(import_error(b.dir.path), {"model.safetensors.index.json", "model-00002-of-00004.safetensors", "missing"});
  }
  {  // the index maps a tensor to a shard that does not hold it
    Broken b("llama_gqa");
    json j = json::parse(read_file(b.dir / "model.safetensors.index.json"));
    const std::string first = j["weight_map"].begin().key();
    j["weight_map"][first] = j["weight_map"][first] == "model-00001-of-00004.safetensors"
                                 ? "model-00002-of-00004.safetensors" : "model-00001-of-00004.safetensors";
    std::ofstream(b.dir / "model.safetensors.index.json") << j.dump();
    expect_mentions(import_error(b.dir.path), {first});
  }
  {  // a shard name that leaves the folder
    Broken b("llama_gqa");
    json j = json::parse(read_file(b.dir / "model.safetensors.index.json"));
    j["weight_map"][j["weight_map"].begin().key()] = "../model.safetensors";
    std::ofstream(b.dir / "model.safetensors.index.json") << j.dump();
    expect_mentions(import_error(b.dir.path), {"not a file name"});
  }
  {  // config.json claims another width: the shapes disagree, named with the tensor and the file
    Broken b("qwen2");
    b.edit([](json& j) { j["intermediate_size"] = 65; });
    expect_mentions(import_error(b.dir.path), {"model.safetensors", "mlp.gate_proj.weight", "[65, 32]"});
  }
  {  // no weights at all, only a pickle
    Broken b("llama_tied");
    fs::remove(b.dir / "model.safetensors");
    std::ofstream(b.dir / "pytorch_model.bin") << "pickle";
    expect_mentions(import_error(b.dir.path), {"pytorch_model.bin", "safetensors"});
  }
  {  // a tensor the config does not explain
    Broken b("mpt");
    SafetensorsReader r = SafetensorsReader::open(b.dir / "model.safetensors");
    SafetensorsWriter w;
    std::vector<std::vector<float>> keep;
    for (const auto& t : r.tensors()) {
      keep.push_back(r.read_f32(t.name));
      w.add_f32(t.name, t.shape, keep.back().data());
    }
    const float extra[4] = {1, 2, 3, 4};
    w.add_f32("transformer.blocks.0.attn.q_ln.weight", {4}, extra);
    w.write(b.dir / "model.safetensors");
    expect_mentions(import_error(b.dir.path), {"transformer.blocks.0.attn.q_ln.weight", "not part of"});
  }
}

TEST(HfExport, RefusesWhatNoTransformersClassComputesNamingTheDifference) {
  auto base = [] {
    ModelConfig c;
    c.vocab_size = 64;
    c.n_layer = 1;
    c.n_head = 4;
    c.n_embd = 32;
    c.mlp_hidden = 128;
    c.block_size = 32;
    return c;
  };
  auto why = [](const ModelConfig& c, const std::string& as = "auto") {
    try {
      hf_export_family(c, as);
    } catch (const ConfigError& e) {
      return std::string(e.what());
    }
    return std::string("(exported)");
  };
  ModelConfig c = base();
  c.position = PositionMethod::t5;
  expect_mentions(why(c), {"t5", "nothing written"});
  c = base();
  c.position = PositionMethod::alibi;  // biases + tanh GELU, no embedding LayerNorm: neither MPT nor BLOOM
  expect_mentions(why(c), {"MptForCausalLM", "biases", "BloomForCausalLM", "embedding LayerNorm"});
  c.bias = false;
  c.activation = Activation::gelu;
  EXPECT_EQ(hf_export_family(c, "auto"), HfFamily::mpt);
  c = base();
  c.position = PositionMethod::alibi;
  c.embed_norm = true;
  EXPECT_EQ(hf_export_family(c, "auto"), HfFamily::bloom);
  c = base();
  c.position = PositionMethod::sinusoidal;
  EXPECT_EQ(hf_export_family(c, "auto"), HfFamily::gpt2);
  c.logn = LognMode::full;
  expect_mentions(why(c), {"log-n"});
  c.logn = LognMode::off;
  c.position = PositionMethod::alibi;
  c.bias = false;
  c.activation = Activation::gelu;
  c.alibi_interp = 64;
  expect_mentions(why(c), {"ALiBi interpolation"});
  c = base();
  c.arch = Arch::llama;
  c.bias = false;
  c.position = PositionMethod::rope;
  EXPECT_EQ(hf_export_family(c, "auto"), HfFamily::llama);
  c.attn_window = 8;
  EXPECT_EQ(hf_export_family(c, "auto"), HfFamily::mistral);
  expect_mentions(why(c, "llama"), {"window"});
  c.qkv_bias = true;
  EXPECT_EQ(hf_export_family(c, "auto"), HfFamily::qwen2);
  EXPECT_THROW(hf_export_family(c, "falcon"), UsageError);
}

// A sinusoidal GPT exports as GPT-2 with the table as learned rows; an embed_scale is folded into the embedding:
// the imported model computes the same logits.
TEST(HfExport, SinusoidalAndScaledEmbeddingsExportExactly) {
  ModelConfig c;
  c.vocab_size = 40;
  c.n_layer = 2;
  c.n_head = 2;
  c.n_embd = 16;
  c.mlp_hidden = 64;
  c.block_size = 24;
  c.position = PositionMethod::sinusoidal;
  c.embed_scale = 4.0f;
  Transformer m(c);
  m.init_weights(5);
  TempDir dir;
  EXPECT_EQ(model_to_hf(m, dir.path, {}), HfFamily::gpt2);
  HfImport back = model_from_hf(dir.path);
  EXPECT_FALSE(back.model->config().tie_embeddings);
  std::vector<std::int32_t> tok(24);
  for (int i = 0; i < 24; i++) tok[i] = (i * 7 + 1) % 40;
  ForwardOptions fo;
  fo.keep_logits = true;
  m.forward(tok.data(), nullptr, nullptr, 1, 24, fo);
  std::vector<float> a(m.logits(), m.logits() + 24 * 40);
  back.model->forward(tok.data(), nullptr, nullptr, 1, 24, fo);
  for (std::size_t i = 0; i < a.size(); i++) EXPECT_NEAR(back.model->logits()[i], a[i], 1e-5f * (1 + std::fabs(a[i])));
}

TEST(HfExport, ShardsAndHalfPrecisionRoundTrip) {
  HfImport imp = model_from_hf(fixtures() / "qwen2");
  TempDir dir;
  HfExportOptions o;
  o.dtype = DType::BF16;
  o.max_shard_bytes = 30000;
  model_to_hf(*imp.model, dir.path, o);
  EXPECT_TRUE(fs::exists(dir / "model.safetensors.index.json"));
  EXPECT_GT(HfWeights::open(dir.path).shard_count(), 1u);
  HfImport back = model_from_hf(dir.path);
  // every weight rounded to bf16 once: within 2^-8 relative
  const auto& p = imp.model->params();
  for (std::size_t i = 0; i < p.size(); i++)
    ASSERT_NEAR(back.model->params()[i], p[i], std::fabs(p[i]) * (1.0f / 256) + 1e-30f) << i;
}

}  // namespace
}  // namespace stretch
