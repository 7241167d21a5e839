// `stretch finetune --lora` and `stretch lora merge | extract | apply` end to end (docs/LORA.md): a LoRA fine-tune
// evaluates the same as its merged model, its stretch adapter file and its PEFT folder put back on the base, and
// bad values are refused naming the flag, with a non-zero exit and nothing written. (The mathematics is
// tests/model/lora_test.cpp and peft_parity_test.cpp; the trainer tests/run/lora_train_test.cpp.)
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <utility>

#include "test_util.hpp"

namespace stretch {
namespace {
namespace fs = std::filesystem;
using test::run_stretch;
using test::TempDir;

std::string q(const fs::path& p) { return test::shell_quote(p); }

double nll_of(const fs::path& json_file) {
  auto j = nlohmann::json::parse(test::read_text(json_file));
  return j["models"][0]["results"][0]["nll"].get<double>();
}

struct LoraRuns {
  TempDir d;
  std::string data;
  LoraRuns(const std::string& arch_flags) {
    test::write_text(d / "t.txt", test::generated_text(30000, 5));
    data = " --text " + q(d / "t.txt") + " --cache-dir " + q(d / "c") + " --batch 4 --quiet";
    auto r = run_stretch("train" + data + " --layers 2 --width 32 --heads 4 --length 32 --steps 20 " + arch_flags +
                         " --out " + q(d / "base"));
    EXPECT_EQ(r.exit_code, 0) << r.output;
  }
  double eval(const fs::path& run, const std::string& name) {
    auto r = run_stretch("eval " + q(run) + " --text " + q(d / "t.txt") + " --cache-dir " + q(d / "c") +
                         " --lengths 64 --max-tokens 2048 --json " + q(d / (name + ".json")));
    EXPECT_EQ(r.exit_code, 0) << r.output;
    return nll_of(d / (name + ".json"));
  }
};

TEST(LoraCli, AFineTuneItsMergeItsAdapterFileAndItsPeftFolderEvaluateAlike) {
  LoraRuns w("--arch llama --position rope --kv-heads 2");
  auto r = run_stretch("finetune " + q(w.d / "base") + w.data +
                       " --lora 4 --lora-alpha 8 --lora-targets q,k,v,o,gate,up,down --train-also norm --steps 15"
                       " --length 64 --rope-scaling linear:2 --lr 3e-3 --out " + q(w.d / "lora"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const double adapted = w.eval(w.d / "lora", "lora");
  const double base = w.eval(w.d / "base", "base");
  EXPECT_NE(adapted, base);

  r = run_stretch("lora merge " + q(w.d / "lora") + " --out " + q(w.d / "merged"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NEAR(w.eval(w.d / "merged", "merged"), adapted, 1e-6);

  r = run_stretch("lora extract " + q(w.d / "lora") + " --out " + q(w.d / "a.safetensors"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("with the trained norm"), std::string::npos) << r.output;
  r = run_stretch("lora apply " + q(w.d / "base") + " " + q(w.d / "a.safetensors") + " --out " + q(w.d / "applied"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NEAR(w.eval(w.d / "applied", "applied"), adapted, 1e-6);  // the context settings came with it
  // extracted again from the applied run: the same file content (the trained norms with it), applicable to the base
  r = run_stretch("lora extract " + q(w.d / "applied") + " --out " + q(w.d / "b.safetensors"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("with the trained norm"), std::string::npos) << r.output;
  r = run_stretch("lora apply " + q(w.d / "base") + " " + q(w.d / "b.safetensors") + " --out " + q(w.d / "again"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NEAR(w.eval(w.d / "again", "again"), adapted, 1e-6);

  // PEFT and GGUF adapters hold no norms: without the base under them (--base-out) the extract is refused
  for (const auto& [format, out] : {std::pair{"peft", "peft"}, std::pair{"gguf", "a.gguf"}}) {
    r = run_stretch("lora extract " + q(w.d / "lora") + " --format " + format + " --out " + q(w.d / out));
    EXPECT_NE(r.exit_code, 0) << format;
    EXPECT_NE(r.output.find("--base-out"), std::string::npos) << r.output;
    EXPECT_FALSE(fs::exists(w.d / out)) << format;
  }
  // PEFT: the adapter goes on this run's base (it trained the norms), exported beside it; imported back
  r = run_stretch("lora extract " + q(w.d / "lora") + " --format peft --out " + q(w.d / "peft") + " --base-out " +
                  q(w.d / "peft-base"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto cfg = nlohmann::json::parse(test::read_text(w.d / "peft" / "adapter_config.json"));
  EXPECT_EQ(cfg["r"], 4);
  EXPECT_EQ(cfg["target_modules"].size(), 7u);
  r = run_stretch("import hf " + q(w.d / "peft-base") + " --out " + q(w.d / "hf-base"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = run_stretch("lora apply " + q(w.d / "hf-base") + " " + q(w.d / "peft") + " --out " + q(w.d / "from-peft"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  // PEFT carries no context settings: evaluated with the fine-tune's scaling, the same model
  auto e = run_stretch("eval " + q(w.d / "from-peft") + " --text " + q(w.d / "t.txt") + " --cache-dir " +
                       q(w.d / "c") + " --lengths 64 --max-tokens 2048 --rope-scaling linear:2 --json " +
                       q(w.d / "from-peft.json"));
  ASSERT_EQ(e.exit_code, 0) << e.output;
  EXPECT_NEAR(nll_of(w.d / "from-peft.json"), adapted, 1e-5);

  // GGUF (llama.cpp): the base written carries the trained norms and the scaling
  r = run_stretch("lora extract " + q(w.d / "lora") + " --format gguf --out " + q(w.d / "a.gguf") + " --base-out " +
                  q(w.d / "base.gguf"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(fs::is_regular_file(w.d / "a.gguf"));
  r = run_stretch("import gguf " + q(w.d / "base.gguf") + " --out " + q(w.d / "gguf-base"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto scaling = nlohmann::json::parse(test::read_text(w.d / "gguf-base" / "checkpoints" / "step-00000000" /
                                                             "config.json"))["model"]["rope_scaling"];
  EXPECT_EQ(scaling["type"], "linear") << scaling.dump();
  EXPECT_EQ(scaling["factor"], 2.0) << scaling.dump();
  // read back onto that base: the fine-tune again (context settings from the GGUF base)
  r = run_stretch("lora apply " + q(w.d / "gguf-base") + " " + q(w.d / "a.gguf") + " --out " + q(w.d / "from-gguf"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NEAR(w.eval(w.d / "from-gguf", "from-gguf"), adapted, 1e-5);
  r = run_stretch("lora apply " + q(w.d / "gguf-base") + " " + q(w.d / "a.gguf") + " --other-base --out " +
                  q(w.d / "from-gguf2"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("--other-base"), std::string::npos) << r.output;
  r = run_stretch("lora extract " + q(w.d / "lora") + " --format stretch --type f16 --out " + q(w.d / "c.safetensors"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("--type"), std::string::npos) << r.output;
  r = run_stretch("lora extract " + q(w.d / "lora") + " --format gguf --out " + q(w.d / "d.gguf") + " --base-out " +
                  q(w.d / "d-base.gguf") + " --type q4");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("--type"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(w.d / "d.gguf"));
  EXPECT_FALSE(fs::exists(w.d / "d-base.gguf"));
}

TEST(LoraCli, BadValuesAreRefusedNamingTheFlagAndNothingIsWritten) {
  LoraRuns w("");
  const std::string ft = "finetune " + q(w.d / "base") + w.data + " --steps 3 --out " + q(w.d / "x");
  const std::pair<std::string, std::string> cases[] = {
      {" --lora 0", "--lora"},
      {" --lora 4 --lora-alpha 0", "--lora-alpha"},
      {" --lora 4 --lora-alpha -2", "--lora-alpha"},
      {" --lora 4 --lora-targets q,gate", "--lora-targets"},
      {" --lora 4 --lora-targets q,wq", "--lora-targets"},
      {" --lora 4 --lora-dropout 1", "--lora-dropout"},
      {" --lora-alpha 8", "--lora-alpha"},
      {" --train-also norm", "--train-also"},
      {" --lora 2 --train-also norms", "--train-also"},
      {" --s2-attn --attention materialized", "--attention"},
  };
  for (const auto& [flags, flag] : cases) {
    SCOPED_TRACE(flags);
    auto r = run_stretch(ft + flags);
    EXPECT_NE(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find(flag), std::string::npos) << r.output;
    EXPECT_FALSE(fs::exists(w.d / "x" / "checkpoints"));
  }
  // an adapter of another rank on a model that has one
  auto r = run_stretch("finetune " + q(w.d / "base") + w.data + " --steps 3 --lora 2 --out " + q(w.d / "l2"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = run_stretch("finetune " + q(w.d / "l2") + w.data + " --steps 3 --lora 8 --out " + q(w.d / "y"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("--lora 8"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("rank 2"), std::string::npos) << r.output;
  r = run_stretch("finetune " + q(w.d / "l2") + w.data + " --steps 3 --out " + q(w.d / "y"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("--lora 2"), std::string::npos) << r.output;
  // the same rank continues it
  r = run_stretch("finetune " + q(w.d / "l2") + w.data + " --steps 3 --lora 2 --out " + q(w.d / "l2b"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  // lora commands on a model without an adapter; an adapter file on another architecture
  r = run_stretch("lora merge " + q(w.d / "base") + " --out " + q(w.d / "m"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("no LoRA adapter"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(w.d / "m"));
  r = run_stretch("lora extract " + q(w.d / "l2") + " --out " + q(w.d / "a.safetensors"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = run_stretch("train" + w.data + " --layers 1 --width 32 --heads 4 --length 32 --steps 2 --out " + q(w.d / "other"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = run_stretch("lora apply " + q(w.d / "other") + " " + q(w.d / "a.safetensors") + " --out " + q(w.d / "z"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("n_layer"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(w.d / "z"));
  // the same architecture, other weights
  r = run_stretch("train" + w.data + " --layers 2 --width 32 --heads 4 --length 32 --steps 2 --seed 9 --out " +
                  q(w.d / "twin"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = run_stretch("lora apply " + q(w.d / "twin") + " " + q(w.d / "a.safetensors") + " --out " + q(w.d / "z"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("--other-base"), std::string::npos) << r.output;
  r = run_stretch("lora apply " + q(w.d / "twin") + " " + q(w.d / "a.safetensors") + " --other-base --out " +
                  q(w.d / "z"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

}  // namespace
}  // namespace stretch
