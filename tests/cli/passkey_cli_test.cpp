// `stretch passkey` end to end through the command line: the tables, JSON (every trial), CSV and the heat map of a
// tiny byte-level model; --up-to; the same seed gives the same keys and answers; bad values are refused naming
// the flag, with the exit code of a usage error.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "run/passkey.hpp"
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
    for (const char* m : {"alibi", "learned"}) {
      auto r = run_stretch("train --text " + q(dir / "train.txt") + " --out " + q(dir / m) + " --position " + m +
                           " --cache-dir " + q(dir / "cache") +
                           " --layers 1 --width 16 --heads 2 --length 64 --batch 4 --steps 10 --threads 1 --quiet");
      EXPECT_EQ(r.exit_code, 0) << r.output;
    }
  }
  std::string passkey(const std::string& args) const {
    return "passkey " + q(dir / "alibi") + " --threads 1 " + args;
  }
};

TEST(PasskeyCli, TablesJsonCsvAndHeatMap) {
  Runs t;
  auto r = run_stretch(t.passkey("--lengths 256,400 --depths 0,0.5,1 --trials 2 --answer-tokens 4 --json " +
                                 q(t.dir / "p.json") + " --csv " + q(t.dir / "p.csv") + " --plot " + q(t.dir / "p.png")));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("accuracy"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("d=0.5"), std::string::npos) << r.output;
  auto j = nlohmann::json::parse(test::read_text(t.dir / "p.json"));
  ASSERT_EQ(j["models"].size(), 1u);
  const auto& m = j["models"][0];
  EXPECT_EQ(m["position"], "alibi");
  EXPECT_EQ(m["train_length"], 64);
  ASSERT_EQ(m["cells"].size(), 6u);  // 2 lengths x 3 depths
  ASSERT_EQ(m["accuracy_by_length"].size(), 2u);
  for (auto& c : m["cells"]) {
    ASSERT_EQ(c["trials"].size(), 2u);
    for (std::size_t k = 0; k < 2; k++) {
      const auto& tr = c["trials"][k];
      // the key is the documented function of (seed 1, length, depth, trial), and the prompt fits the length
      EXPECT_EQ(tr["key"].get<int>(), passkey_key(1, c["length"], c["depth"].get<double>(), static_cast<int>(k)));
      EXPECT_LE(tr["prompt_tokens"].get<int>(), c["length"].get<int>());
      EXPECT_GT(tr["prompt_tokens"].get<int>(), c["length"].get<int>() - 91);  // within one filler (90 bytes + 1)
      EXPECT_EQ(tr["correct"].get<bool>(), first_integer(tr["output"].get<std::string>()) == tr["key"].get<int>());
    }
  }
  const std::string csv = test::read_text(t.dir / "p.csv");
  EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n') - std::count(csv.begin(), csv.end(), '\r'), 13)
      << csv;  // header + 12 trials (outputs here have no newline: the byte model's answers are 4 bytes)
  const std::string png = test::read_text(t.dir / "p.png");
  ASSERT_GT(png.size(), 1000u);
  EXPECT_EQ(png.substr(1, 3), "PNG");

  // the same seed: the same keys and answers
  auto again = run_stretch(t.passkey("--lengths 256,400 --depths 0,0.5,1 --trials 2 --answer-tokens 4 --json " +
                                     q(t.dir / "p2.json")));
  ASSERT_EQ(again.exit_code, 0) << again.output;
  auto j2 = nlohmann::json::parse(test::read_text(t.dir / "p2.json"));
  for (std::size_t c = 0; c < 6; c++)
    for (std::size_t k = 0; k < 2; k++) {
      EXPECT_EQ(j2["models"][0]["cells"][c]["trials"][k]["key"], m["cells"][c]["trials"][k]["key"]);
      EXPECT_EQ(j2["models"][0]["cells"][c]["trials"][k]["output"], m["cells"][c]["trials"][k]["output"]);
    }
}

TEST(PasskeyCli, UpToMultiplesOfTheTrainingLength) {
  Runs t;
  auto r = run_stretch(t.passkey("--up-to 8x --depths 0.5 --answer-tokens 2 --json " + q(t.dir / "p.json")));
  // 64 and 128 cannot hold the fixed lines of a byte-level prompt (245 bytes): refused naming --lengths
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("--lengths"), std::string::npos) << r.output;
  r = run_stretch("passkey " + q(t.dir / "alibi") + " --up-to 16x --lengths 300");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("exactly one"), std::string::npos) << r.output;
}

TEST(PasskeyCli, BadValuesAreRefusedNamingTheFlag) {
  Runs t;
  auto expect_error = [](const test::RunResult& r, const std::string& needle, int code = 2) {
    EXPECT_EQ(r.exit_code, code) << r.output;
    EXPECT_NE(r.output.find(needle), std::string::npos) << "expected '" << needle << "' in:\n" << r.output;
  };
  expect_error(run_stretch(t.passkey("--lengths 300 --depths 1.5")), "--depths");
  expect_error(run_stretch(t.passkey("--lengths 300 --depths 0.5,x")), "--depths");
  expect_error(run_stretch(t.passkey("--lengths 300 --trials 0")), "--trials");
  expect_error(run_stretch(t.passkey("--lengths 300 --answer-tokens 0")), "--answer-tokens");
  expect_error(run_stretch(t.passkey("--lengths 0")), "--lengths");
  expect_error(run_stretch(t.passkey("--lengths 100")), "--lengths");  // below the fixed lines
  expect_error(run_stretch(t.passkey("--lengths 300 --ctx -5")), "--ctx");
  expect_error(run_stretch("passkey " + q(t.dir / "learned") + " --lengths 300"), "--lengths");  // table of 64
  expect_error(run_stretch(t.passkey("")), "exactly one");
  expect_error(run_stretch("passkey " + q(t.dir / "nope") + " --lengths 300"), "nope", 3);
  test::write_text(t.dir / "short.txt", "only five words in here");
  expect_error(run_stretch(t.passkey("--lengths 300 --haystack " + q(t.dir / "short.txt"))), "short.txt", 3);
  expect_error(run_stretch(t.passkey("--lengths 300 --haystack " + q(t.dir / "absent.txt"))), "--haystack");
}

TEST(PasskeyCli, NeedleInATextHaystack) {
  Runs t;
  test::write_text(t.dir / "hay.txt", test::generated_text(3000, 5));
  auto r = run_stretch(t.passkey("--lengths 300,600 --depths 0.5 --trials 2 --answer-tokens 2 --haystack " +
                                 q(t.dir / "hay.txt") + " --json " + q(t.dir / "h.json")));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto j = nlohmann::json::parse(test::read_text(t.dir / "h.json"));
  EXPECT_EQ(j["protocol"], "passkey in a text haystack");
  EXPECT_EQ(j["haystack"], (t.dir / "hay.txt").string());
  for (auto& c : j["models"][0]["cells"])
    for (auto& tr : c["trials"]) {
      EXPECT_LE(tr["prompt_tokens"].get<int>(), c["length"].get<int>());
      EXPECT_GT(tr["prompt_tokens"].get<int>(), c["length"].get<int>() - 20);  // whole words fill it
    }
}

}  // namespace
}  // namespace stretch
