// Fine-tuning-free extension through the command line (eval, passkey, generate): --self-extend, --rerope,
// --alibi-interp and --keep run, show in the reports, and bad values are refused naming the flag (exit 2).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "test_util.hpp"

namespace stretch {
namespace {
using test::run_stretch;
using test::TempDir;

std::string q(const std::filesystem::path& p) { return test::shell_quote(p); }

struct Runs {
  TempDir dir;
  Runs() {
    test::write_text(dir / "train.txt", test::generated_text(30000, 1));
    test::write_text(dir / "valid.txt", test::generated_text(4000, 2));
    for (const char* m : {"rope", "alibi", "learned"}) {
      auto r = run_stretch("train --text " + q(dir / "train.txt") + " --out " + q(dir / m) + " --position " + m +
                           " --cache-dir " + q(dir / "cache") +
                           " --layers 1 --width 16 --heads 2 --length 32 --batch 4 --steps 10 --threads 1 --quiet");
      EXPECT_EQ(r.exit_code, 0) << r.output;
    }
  }
  std::string eval(const char* m, const std::string& args) const {
    return "eval " + q(dir / m) + " --text " + q(dir / "valid.txt") + " --cache-dir " + q(dir / "cache") +
           " --threads 1 " + args;
  }
};

void expect_error(const test::RunResult& r, const std::string& needle) {
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find(needle), std::string::npos) << "expected '" << needle << "' in:\n" << r.output;
}

TEST(ExtensionCli, EvalPasskeyAndGenerateRunWithEachMethod) {
  Runs t;
  for (const char* flags : {"--self-extend 2,8", "--rerope 8", "--rerope 8,4"}) {
    auto r = run_stretch(t.eval("rope", std::string("--lengths 32,128 --json ") + q(t.dir / "e.json") + " " + flags));
    ASSERT_EQ(r.exit_code, 0) << flags << "\n" << r.output;
    auto j = nlohmann::json::parse(test::read_text(t.dir / "e.json"));
    const std::string pos = j["models"][0]["position"];
    EXPECT_NE(pos.find(std::string(flags).substr(2, 4)), std::string::npos) << pos;  // "self" / "rero"
  }
  // alibi models take Self-Extend and ReRoPE as distances in their bias
  for (const char* flags : {"--self-extend 2,8", "--rerope 8,4"}) {
    auto r = run_stretch(t.eval("alibi", std::string("--lengths 128 --json ") + q(t.dir / "e.json") + " " + flags));
    ASSERT_EQ(r.exit_code, 0) << flags << "\n" << r.output;
    const std::string pos = nlohmann::json::parse(test::read_text(t.dir / "e.json"))["models"][0]["position"];
    EXPECT_NE(pos.find(std::string(flags).substr(2, 4)), std::string::npos) << pos;
  }
  // eval with attention sinks: windows of 128 streamed through a cache of the trained 32 that keeps 4
  for (const char* m : {"rope", "alibi"}) {
    auto r = run_stretch(t.eval(m, "--lengths 32,128 --keep 4 --json " + q(t.dir / "s.json")));
    ASSERT_EQ(r.exit_code, 0) << m << "\n" << r.output;
    auto j = nlohmann::json::parse(test::read_text(t.dir / "s.json"))["models"][0];
    EXPECT_NE(j["position"].get<std::string>().find("keep:4 ctx:32"), std::string::npos) << j["position"];
    EXPECT_GT(j["results"][1]["tokens"].get<long>(), 0);
  }
  auto r = run_stretch(t.eval("alibi", "--lengths 32,128 --alibi-interp auto --json " + q(t.dir / "a.json")));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(nlohmann::json::parse(test::read_text(t.dir / "a.json"))["models"][0]["position"], "alibi alibi-interp:auto");
  // auto at the trained length is plain ALiBi; at 4x it is not
  auto p = run_stretch(t.eval("alibi", "--lengths 32,128 --json " + q(t.dir / "p.json")));
  ASSERT_EQ(p.exit_code, 0) << p.output;
  auto a = nlohmann::json::parse(test::read_text(t.dir / "a.json"))["models"][0]["results"];
  auto b = nlohmann::json::parse(test::read_text(t.dir / "p.json"))["models"][0]["results"];
  EXPECT_DOUBLE_EQ(a[0]["nll"].get<double>(), b[0]["nll"].get<double>());
  EXPECT_NE(a[1]["nll"].get<double>(), b[1]["nll"].get<double>());

  r = run_stretch("passkey " + q(t.dir / "rope") + " --lengths 260 --depths 0.5 --answer-tokens 2 --threads 1 "
                  "--self-extend 4,16 --json " + q(t.dir / "k.json"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("self-extend:4,16"), std::string::npos) << r.output;
  // a prompt longer than the cache: rope slides with attention sinks
  r = run_stretch("passkey " + q(t.dir / "rope") + " --lengths 300 --depths 0.5 --answer-tokens 2 --threads 1 "
                  "--ctx 64 --keep 4");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = run_stretch("passkey " + q(t.dir / "alibi") + " --lengths 260 --depths 0.5 --answer-tokens 2 --threads 1 "
                  "--alibi-interp auto");
  ASSERT_EQ(r.exit_code, 0) << r.output;

  r = run_stretch("generate " + q(t.dir / "rope") + " -p 'the cat' -n 120 --ctx 24 --keep 2 -t 0 --ignore-eos --threads 1");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("keeping 2 sink tokens"), std::string::npos) << r.output;
  r = run_stretch("generate " + q(t.dir / "rope") + " -p 'the cat' -n 20 --rerope 8,2 -t 0 --threads 1");
  ASSERT_EQ(r.exit_code, 0) << r.output;
}

TEST(ExtensionCli, BadValuesAreRefusedNamingTheFlag) {
  Runs t;
  expect_error(run_stretch(t.eval("rope", "--lengths 64 --self-extend 0,8")), "--self-extend");    // group size 0
  expect_error(run_stretch(t.eval("rope", "--lengths 64 --self-extend 4,32")), "--self-extend");   // window >= L
  expect_error(run_stretch(t.eval("rope", "--lengths 64 --self-extend 4")), "--self-extend");
  expect_error(run_stretch(t.eval("rope", "--lengths 64 --rerope 0")), "--rerope");
  expect_error(run_stretch(t.eval("rope", "--lengths 64 --rerope 8,1")), "--rerope");
  expect_error(run_stretch(t.eval("rope", "--lengths 64 --rerope 40")), "--rerope");             // window >= L
  expect_error(run_stretch(t.eval("rope", "--lengths 64 --rerope 8 --self-extend 2,8")), "give one");
  expect_error(run_stretch(t.eval("learned", "--lengths 32 --self-extend 2,8")), "--self-extend");  // absolute
  expect_error(run_stretch(t.eval("alibi", "--lengths 64 --rerope 32")), "--rerope");              // window >= L
  expect_error(run_stretch(t.eval("rope", "--lengths 64 --alibi-interp 64")), "--alibi-interp");  // not alibi
  expect_error(run_stretch(t.eval("alibi", "--lengths 64 --alibi-interp 16")), "--alibi-interp"); // below L
  expect_error(run_stretch(t.eval("alibi", "--lengths 64 --alibi-interp x")), "--alibi-interp");
  const std::string gen = "generate " + q(t.dir / "rope") + " -p 'the cat' -n 5 --threads 1 ";
  expect_error(run_stretch(gen + "--ctx 16 --keep 16"), "--keep");            // as many sinks as slots
  expect_error(run_stretch(gen + "--ctx 16 --keep 2 --no-slide"), "--keep");
  expect_error(run_stretch(gen + "--keep -3"), "--keep");
  expect_error(run_stretch("generate " + q(t.dir / "learned") + " -p 'the cat' -n 5 --keep 2"), "--keep");
  expect_error(run_stretch("passkey " + q(t.dir / "rope") + " --lengths 300 --keep -2"), "--keep");
  expect_error(run_stretch(t.eval("rope", "--lengths 64 --keep -2")), "--keep");
  expect_error(run_stretch(t.eval("rope", "--lengths 64 --ctx 16")), "--ctx");          // --ctx without --keep
  expect_error(run_stretch(t.eval("rope", "--lengths 64 --keep 2 --ctx 0")), "--ctx");  // 0 slots, typed
  expect_error(run_stretch(t.eval("rope", "--lengths 64 --keep 16 --ctx 16")), "--keep");  // no room to slide
  expect_error(run_stretch(t.eval("learned", "--lengths 32 --keep 2")), "--keep");
}

}  // namespace
}  // namespace stretch
