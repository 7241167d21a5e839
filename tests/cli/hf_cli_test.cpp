// `stretch import hf` / `export hf` end to end (docs/HF.md): transformers' own folders (tests/fixtures/hf, made by
// tools/make_hf_fixtures.py) import with their tokenizer and evaluate and generate; a model trained here goes out
// and comes back with the same perplexity and text; bad folders and models no transformers class computes are
// refused with the file / key named, a non-zero exit, and nothing written. (The mapping itself, logits against
// transformers, is tests/model/hf_convert_test.cpp.)
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "test_util.hpp"

namespace stretch {
namespace {
namespace fs = std::filesystem;
using test::run_stretch;
using test::TempDir;

std::string q(const fs::path& p) { return test::shell_quote(p); }
fs::path fixture(const std::string& name) { return fs::path(STRETCH_SOURCE_DIR) / "tests/fixtures/hf" / name; }

std::vector<double> nlls(const fs::path& json_file) {
  auto j = nlohmann::json::parse(test::read_text(json_file));
  std::vector<double> out;
  for (const auto& r : j["models"][0]["results"]) out.push_back(r["nll"].get<double>());
  return out;
}

std::string text_of(const std::string& out) { return out.substr(0, out.rfind("\nprompt: ")); }

TEST(HfCli, TransformersFoldersImportWithTheirTokenizerEvaluateAndGenerate) {
  TempDir d;
  test::write_text(d / "t.txt", test::generated_text(4000, 3));
  const std::pair<const char*, const char*> cases[] = {{"llama_gqa", "LlamaForCausalLM -> llama (rope"},
                                                      {"qwen2", "Qwen2ForCausalLM -> llama (rope"},
                                                      {"mpt", "MptForCausalLM -> gpt (alibi"},
                                                      {"bloom", "BloomForCausalLM -> gpt (alibi"},
                                                      {"gpt2", "GPT2LMHeadModel -> gpt (learned"}};
  for (const auto& [name, family] : cases) {
    SCOPED_TRACE(name);
    const fs::path run = d / name;
    auto r = run_stretch("import hf " + q(fixture(name)) + " --out " + q(run));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find(family), std::string::npos) << r.output;
    EXPECT_TRUE(fs::exists(run / "tokenizer" / "tokenizer.json"));
    r = run_stretch("eval " + q(run) + " --text " + q(d / "t.txt") + " --lengths 32 --cache-dir " + q(d / "c"));
    EXPECT_EQ(r.exit_code, 0) << r.output;
    r = run_stretch("generate " + q(run) + " -p 'the pass key is' -n 8 -t 0 --ignore-eos");
    EXPECT_EQ(r.exit_code, 0) << r.output;
    EXPECT_EQ(r.output.rfind("the pass key is", 0), 0u) << r.output;
  }
}

TEST(HfCli, TrainedModelsGoOutAndComeBackWithTheSamePerplexityAndText) {
  TempDir d;
  test::write_text(d / "t.txt", test::generated_text(30000, 11));
  const std::string common = " --text " + q(d / "t.txt") + " --cache-dir " + q(d / "c") +
                             " --layers 2 --width 32 --heads 4 --length 32 --batch 4 --steps 30 --quiet";
  const struct {
    const char* name;
    const char* flags;
    const char* family;
  } kinds[] = {
      {"llama", " --arch llama --position rope --kv-heads 2", "LlamaForCausalLM"},
      {"mpt", " --position alibi --no-bias --activation gelu", "MptForCausalLM"},
      {"bloom", " --position alibi --embed-norm", "BloomForCausalLM"},
      {"gpt2", " --position learned --untied", "GPT2LMHeadModel"},
  };
  for (const auto& k : kinds) {
    SCOPED_TRACE(k.name);
    const fs::path a = d / k.name, hf = d / (std::string(k.name) + "-hf"), b = d / (std::string(k.name) + "-back");
    auto r = run_stretch("train --out " + q(a) + common + k.flags);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    r = run_stretch("export hf " + q(a) + " --out " + q(hf));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find(k.family), std::string::npos) << r.output;
    for (const char* f : {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                          "generation_config.json"})
      EXPECT_TRUE(fs::exists(hf / f)) << f;
    r = run_stretch("import hf " + q(hf) + " --out " + q(b));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    for (const fs::path& m : {a, b}) {
      r = run_stretch("eval " + q(m) + " --text " + q(d / "t.txt") + " --lengths 32 --json " +
                      q(m.string() + ".json") + " --cache-dir " + q(d / "c"));
      ASSERT_EQ(r.exit_code, 0) << r.output;
    }
    EXPECT_NEAR(nlls(a.string() + ".json")[0], nlls(b.string() + ".json")[0], 1e-6);
    auto ga = run_stretch("generate " + q(a) + " -p 'the cat' -n 40 -t 0");
    auto gb = run_stretch("generate " + q(b) + " -p 'the cat' -n 40 -t 0");
    EXPECT_EQ(text_of(ga.output), text_of(gb.output));
  }
}

TEST(HfCli, RefusalsNameTheFileAndKeyExitNonZeroAndWriteNothing) {
  TempDir d;
  // an unknown architecture: config.json and the key named, exit 3 (InputError), no run folder left behind
  fs::create_directories(d / "m");
  for (const auto& e : fs::directory_iterator(fixture("llama_tied"))) fs::copy_file(e.path(), d / "m" / e.path().filename());
  auto cfg = nlohmann::json::parse(test::read_text(d / "m" / "config.json"));
  cfg["architectures"] = {"GPTNeoXForCausalLM"};
  std::ofstream(d / "m" / "config.json") << cfg.dump();
  auto r = run_stretch("import hf " + q(d / "m") + " --out " + q(d / "run"));
  EXPECT_EQ(r.exit_code, 3) << r.output;
  EXPECT_NE(r.output.find("config.json"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("architectures"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(d / "run"));
  // no tokenizer.json
  fs::remove(d / "m" / "tokenizer.json");
  cfg["architectures"] = {"LlamaForCausalLM"};
  std::ofstream(d / "m" / "config.json") << cfg.dump();
  r = run_stretch("import hf " + q(d / "m") + " --out " + q(d / "run"));
  EXPECT_EQ(r.exit_code, 3) << r.output;
  EXPECT_NE(r.output.find("tokenizer.json"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(d / "run"));
  // ... unless --tokenizer names a folder that has one
  r = run_stretch("import hf " + q(d / "m") + " --tokenizer " + q(fixture("llama_tied")) + " --out " + q(d / "run"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  // a model no transformers class computes: exit 4 (ConfigError), the reason named, no folder
  test::write_text(d / "t.txt", test::generated_text(8000, 5));
  r = run_stretch("train --text " + q(d / "t.txt") + " --out " + q(d / "t5") + " --cache-dir " + q(d / "c") +
                  " --position t5 --layers 1 --width 16 --heads 2 --length 16 --batch 2 --steps 2 --quiet");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = run_stretch("export hf " + q(d / "t5") + " --out " + q(d / "t5-hf"));
  EXPECT_EQ(r.exit_code, 4) << r.output;
  EXPECT_NE(r.output.find("t5"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(d / "t5-hf"));
  // an existing, non-empty output folder is never overwritten
  r = run_stretch("export hf " + q(d / "run") + " --out " + q(d / "m"));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("--out"), std::string::npos) << r.output;
  EXPECT_TRUE(fs::exists(d / "m" / "config.json"));
  // bad flag values
  r = run_stretch("export hf " + q(d / "run") + " --out " + q(d / "x") + " --dtype f8");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("--dtype"), std::string::npos) << r.output;
  r = run_stretch("export hf " + q(d / "run") + " --out " + q(d / "x") + " --as falcon");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("--as"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(d / "x"));
}

}  // namespace
}  // namespace stretch
