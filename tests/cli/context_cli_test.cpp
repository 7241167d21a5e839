// The training-time context ideas through the command line, for both families: a llama model with grouped-query
// attention, randomized positions, log-n scaling and a sliding window trains, stores them in its checkpoint and
// evaluates with them; a gpt model trains with shifted positions; overrides at evaluation change the result;
// bad values are refused naming the flag.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "test_util.hpp"

namespace stretch {
namespace {
using test::run_stretch;
using test::TempDir;

std::string q(const std::filesystem::path& p) { return test::shell_quote(p); }

struct Data {
  TempDir dir;
  Data() {
    test::write_text(dir / "train.txt", test::generated_text(30000, 3));
    test::write_text(dir / "valid.txt", test::generated_text(4000, 4));
  }
  std::string train(const std::string& out, const std::string& args) {
    return "train --text " + q(dir / "train.txt") + " --out " + q(dir / out) + " --cache-dir " + q(dir / "cache") +
           " --layers 1 --width 16 --heads 4 --length 32 --batch 2 --steps 4 --quiet " + args;
  }
  std::string eval(const std::string& run, const std::string& args) {
    return "eval " + q(dir / run) + " --text " + q(dir / "valid.txt") + " --cache-dir " + q(dir / "cache") + " " + args;
  }
  nlohmann::json config(const std::string& run) {
    return nlohmann::json::parse(test::read_text(dir / run / "checkpoints" / "step-00000004" / "config.json"))["model"];
  }
};

double nll(const std::filesystem::path& p) {
  return nlohmann::json::parse(test::read_text(p))["models"][0]["results"][0]["nll"].get<double>();
}

TEST(ContextCli, LlamaWithEveryTrainingTimeIdeaTrainsStoresAndEvaluates) {
  Data d;
  auto r = run_stretch(d.train("llama", "--arch llama --kv-heads 2 --position rope --positions randomized:256 "
                                        "--logn full --attn-window 8"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto c = d.config("llama");
  EXPECT_EQ(c["architecture"], "llama");
  EXPECT_EQ(c["n_kv_head"], 2);
  EXPECT_EQ(c["bias"], false);
  EXPECT_EQ(c["logn"], "full");
  EXPECT_EQ(c["attn_window"], 8);
  EXPECT_EQ(c["position_ids"]["kind"], "randomized");
  EXPECT_EQ(c["position_ids"]["param"], 256);
  r = run_stretch(d.eval("llama", "--lengths 64 --json " + q(d.dir / "a.json")));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  // the same seed draws the same random positions; another seed others; a wider window another result
  ASSERT_EQ(run_stretch(d.eval("llama", "--lengths 64 --json " + q(d.dir / "b.json"))).exit_code, 0);
  EXPECT_EQ(nll(d.dir / "a.json"), nll(d.dir / "b.json"));
  ASSERT_EQ(run_stretch(d.eval("llama", "--lengths 64 --seed 9 --json " + q(d.dir / "c.json"))).exit_code, 0);
  EXPECT_NE(nll(d.dir / "a.json"), nll(d.dir / "c.json"));
  ASSERT_EQ(run_stretch(d.eval("llama", "--lengths 64 --attn-window 0 --json " + q(d.dir / "w.json"))).exit_code, 0);
  EXPECT_NE(nll(d.dir / "a.json"), nll(d.dir / "w.json"));
  // more than the randomized range is refused with the reason
  r = run_stretch(d.eval("llama", "--lengths 512"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("256"), std::string::npos) << r.output;
}

TEST(ContextCli, GptWithShiftedPositionsAndRopeScalingOverride) {
  Data d;
  auto r = run_stretch(d.train("gpt", "--position rope --positions shifted:100"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(d.config("gpt")["position_ids"]["kind"], "shifted");
  ASSERT_EQ(run_stretch(d.eval("gpt", "--lengths 64 --json " + q(d.dir / "p.json"))).exit_code, 0);
  ASSERT_EQ(run_stretch(d.eval("gpt", "--lengths 64 --rope-scaling linear:2 --json " + q(d.dir / "l.json"))).exit_code, 0);
  EXPECT_NE(nll(d.dir / "p.json"), nll(d.dir / "l.json"));
  r = run_stretch(d.eval("gpt", "--lengths 64 --positions modulo:32 --json " + q(d.dir / "m.json")));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(nll(d.dir / "p.json"), nll(d.dir / "m.json"));
}

TEST(ContextCli, BadContextValuesAreRefusedNamingTheFlag) {
  Data d;
  auto expect = [&](const std::string& args, const std::string& needle) {
    auto r = run_stretch(d.train("bad", args));
    EXPECT_NE(r.exit_code, 0) << args;
    EXPECT_NE(r.output.find(needle), std::string::npos) << args << "\n" << r.output;
    EXPECT_FALSE(std::filesystem::exists(d.dir / "bad" / "checkpoints")) << args;
  };
  expect("--position rope --rope-scaling foo:2", "--rope-scaling");
  expect("--position rope --rope-scaling linear:0.5", "--rope-scaling");
  expect("--position alibi --rope-scaling linear:2", "--rope-scaling");
  expect("--positions randomized:0", "--positions");
  expect("--positions sideways", "--positions");
  expect("--logn sometimes", "--logn");
  expect("--attn-window -3", "--attn-window");
  expect("--arch llama --kv-heads 3", "--kv-heads");
  expect("--arch mamba", "--arch");
}

}  // namespace
}  // namespace stretch
