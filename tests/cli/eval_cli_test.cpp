// `stretch eval` end to end through the command line: reports, and bad input.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "kernels/matmul.hpp"
#include "test_util.hpp"

namespace stretch {
namespace {
using test::run_stretch;
using test::TempDir;

std::string q(const std::filesystem::path& p) { return test::shell_quote(p); }

struct TwoRuns {
  TempDir dir;
  TwoRuns() {
    test::write_text(dir / "train.txt", test::generated_text(30000, 1));
    test::write_text(dir / "valid.txt", test::generated_text(3000, 2));
    for (const char* m : {"alibi", "learned"}) {
      auto r = run_stretch("train --text " + q(dir / "train.txt") + " --out " + q(dir / m) + " --position " + m +
                           " --cache-dir " + q(dir / "cache") +
                           " --layers 1 --width 16 --heads 2 --length 16 --batch 4 --steps 20 --quiet");
      EXPECT_EQ(r.exit_code, 0) << r.output;
    }
  }
  std::string eval(const std::string& args) {
    return "eval " + q(dir / "alibi") + " --text " + q(dir / "valid.txt") + " --cache-dir " + q(dir / "cache") +
           " " + args;
  }
};

TEST(EvalCli, TableJsonCsvAndPlot) {
  TwoRuns t;
  auto r = run_stretch("eval " + q(t.dir / "alibi") + " " + q(t.dir / "learned") + " --text " +
                       q(t.dir / "valid.txt") + " --cache-dir " + q(t.dir / "cache") +
                       " --lengths 8,16 --json " + q(t.dir / "r.json") + " --csv " + q(t.dir / "r.csv") +
                       " --plot " + q(t.dir / "p.png"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("alibi"), std::string::npos) << r.output;
  auto j = nlohmann::json::parse(test::read_text(t.dir / "r.json"));
  ASSERT_EQ(j["models"].size(), 2u);
  EXPECT_EQ(j["models"][0]["position"], "alibi");
  EXPECT_EQ(j["models"][0]["results"].size(), 2u);
  EXPECT_EQ(j["models"][0]["results"][1]["length"], 16);
  EXPECT_GT(j["models"][0]["results"][0]["tokens"].get<long>(), 2000);
  const std::string csv = test::read_text(t.dir / "r.csv");
  EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), 5);  // header + 2 models x 2 lengths
  const std::string png = test::read_text(t.dir / "p.png");
  ASSERT_GT(png.size(), 1000u);
  EXPECT_EQ(png.substr(1, 3), "PNG");
}

TEST(EvalCli, UpToMultiplesOfTheTrainingLength) {
  TwoRuns t;
  auto r = run_stretch(t.eval("--up-to 4x --json " + q(t.dir / "r.json")));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto j = nlohmann::json::parse(test::read_text(t.dir / "r.json"));
  std::vector<int> lengths;
  for (auto& row : j["models"][0]["results"]) lengths.push_back(row["length"]);
  EXPECT_EQ(lengths, (std::vector<int>{16, 32, 64}));
}

// --precision bf16 (eval, passkey, generate): the matrices kept in bf16; the NLL moves by bf16 rounding only, the
// report says so, and a word other than fp32 | bf16 is refused by name.
TEST(EvalCli, PrecisionBf16) {
  if (!matmul_backend().bf16) GTEST_SKIP() << "no bf16 products on this CPU";
  TwoRuns t;
  double nll[2];
  for (int i = 0; i < 2; i++) {
    const auto json = t.dir / ("p" + std::to_string(i) + ".json");
    auto r = run_stretch(t.eval("--lengths 16,64 --precision " + std::string(i ? "bf16" : "fp32") + " --json " + q(json)));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    auto j = nlohmann::json::parse(test::read_text(json));
    EXPECT_EQ(j["models"][0]["position"], i ? "alibi bf16" : "alibi");
    nll[i] = j["models"][0]["results"][1]["nll"].get<double>();
  }
  EXPECT_NE(nll[0], nll[1]);
  EXPECT_NEAR(nll[1], nll[0], 0.01 * nll[0]);
  auto g = run_stretch("generate " + q(t.dir / "alibi") + " -p abc -n 40 --temperature 0 --precision bf16");
  EXPECT_EQ(g.exit_code, 0) << g.output;
  auto p = run_stretch("passkey " + q(t.dir / "alibi") + " --lengths 300 --trials 2 --precision bf16");
  EXPECT_EQ(p.exit_code, 0) << p.output;
  for (const char* cmd : {"eval", "generate", "passkey"}) {
    auto r = run_stretch(std::string(cmd) + " " + q(t.dir / "alibi") + (std::string(cmd) == "eval" ? " --text " + q(t.dir / "valid.txt") + " --lengths 16" : "") + " --precision fp16");
    EXPECT_EQ(r.exit_code, 2) << cmd;
    EXPECT_NE(r.output.find("--precision: expected fp32 | bf16, got 'fp16'"), std::string::npos) << r.output;
  }
}

TEST(EvalCli, BadInput) {
  TwoRuns t;
  auto expect_error = [](const test::RunResult& r, const std::string& needle) {
    EXPECT_NE(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find(needle), std::string::npos) << "expected '" << needle << "' in:\n" << r.output;
  };
  expect_error(run_stretch(t.eval("--lengths 0")), "--lengths");
  expect_error(run_stretch(t.eval("--lengths 16,abc")), "--lengths");
  expect_error(run_stretch(t.eval("--lengths 16 --up-to 4x")), "exactly one");
  expect_error(run_stretch(t.eval("--up-to 0x")), "--up-to");
  expect_error(run_stretch(t.eval("--lengths 100000")), "needs at least 100001");
  expect_error(run_stretch(t.eval("--lengths 16 --protocol zigzag")), "--protocol");
  expect_error(run_stretch(t.eval("--lengths 16 --stride 4")), "--stride");
  expect_error(run_stretch(t.eval("--lengths 16 --tokenizer gpt2 --bpe-dir " + q(t.dir.path))), "encoder.json");
  // learned table past its length
  expect_error(run_stretch("eval " + q(t.dir / "learned") + " --text " + q(t.dir / "valid.txt") + " --cache-dir " +
                           q(t.dir / "cache") + " --lengths 32"),
               "--clamp-positions");
  EXPECT_EQ(run_stretch("eval " + q(t.dir / "learned") + " --text " + q(t.dir / "valid.txt") + " --cache-dir " +
                        q(t.dir / "cache") + " --lengths 32 --clamp-positions").exit_code, 0);
  // unreadable checkpoints
  expect_error(run_stretch("eval " + q(t.dir / "nope") + " --text " + q(t.dir / "valid.txt") + " --lengths 16"),
               "nope");
  test::write_text(t.dir / "alibi" / "checkpoints" / "step-00000020" / "config.json", "{ not json");
  expect_error(run_stretch(t.eval("--lengths 16")), "config.json");
}

}  // namespace
}  // namespace stretch

namespace stretch {
namespace {

TEST(EvalCli, CheckpointWhoseTokenizerDiffersFromTheAskedOne) {
  const auto bpe = test::shared_data() / "gpt2-bpe";
  if (!std::filesystem::exists(bpe / "encoder.json")) GTEST_SKIP() << "needs ../shared/data/gpt2-bpe (absent)";
  TwoRuns t;  // byte-level checkpoints
  auto r = run_stretch(t.eval("--lengths 16 --tokenizer gpt2 --bpe-dir " + q(bpe)));
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("tokenizer is byte"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("gpt2:"), std::string::npos) << r.output;
  EXPECT_EQ(run_stretch(t.eval("--lengths 16 --tokenizer byte")).exit_code, 0);
}

}  // namespace
}  // namespace stretch
