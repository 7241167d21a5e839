// Reliability, part 2 (docs/RELIABILITY.md, "Promises"): no string of the user's reaches a shell through the plot,
// numbers never wrap before they are checked, damaged or NaN weights are refused by every command that reads them,
// and the flags and outputs keep what their messages promise. (Signals and the run lock: crash_safety_test.cpp.)
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>

#include "io/safetensors.hpp"
#include "test_util.hpp"

namespace stretch {
namespace {
namespace fs = std::filesystem;
using test::run_stretch;
using test::TempDir;

std::string q(const fs::path& p) { return test::shell_quote(p); }

void expect_error(const test::RunResult& r, int code, std::initializer_list<std::string> needles) {
  EXPECT_EQ(r.exit_code, code) << r.output;
  for (const auto& n : needles) EXPECT_NE(r.output.find(n), std::string::npos) << "expected '" << n << "' in:\n" << r.output;
}

// A tiny trained run (llama architecture, so that every export format applies) to damage.
struct Tiny {
  TempDir dir;
  fs::path run, ckpt;
  explicit Tiny(const std::string& name = "run") {
    test::write_text(dir / "c.txt", test::generated_text(20000));
    run = dir / name;
    auto r = run_stretch("train --text " + q(dir / "c.txt") + " --out " + q(run) + " --cache-dir " + q(dir / "cache") +
                         " --arch llama --position rope --layers 1 --width 16 --heads 2 --length 16 --batch 2 "
                         "--steps 2 --warmup 0 --quiet");
    EXPECT_EQ(r.exit_code, 0) << r.output;
    ckpt = run / "checkpoints" / "step-00000002";
  }
  std::string eval(const std::string& more = "") const {
    return "eval " + q(run) + " --text " + q(dir / "c.txt") + " --lengths 16 --max-tokens 64 --cache-dir " +
           q(dir / "cache") + " " + more;
  }
  std::string resume(long steps = 2) const {
    return "train --resume --text " + q(dir / "c.txt") + " --out " + q(run) + " --cache-dir " + q(dir / "cache") +
           " --arch llama --position rope --layers 1 --width 16 --heads 2 --length 16 --batch 2 --steps " +
           std::to_string(steps) + " --warmup 0 --quiet";
  }
};

// The model file rewritten with one tensor's values replaced (the writer stores fresh checksums: the file is
// whole, only its numbers are bad).
void rewrite_tensor(const fs::path& file, const std::string& name, float value) {
  const auto r = SafetensorsReader::parse(test::read_text(file), file.string());
  std::vector<std::vector<float>> keep;
  SafetensorsWriter w;
  for (const auto& [k, v] : r.metadata())
    if (k.rfind(kChecksumPrefix, 0) != 0) w.set_metadata(k, v);
  for (const auto& e : r.tensors()) {
    keep.push_back(r.read_f32(e.name));
    if (e.name == name) keep.back()[keep.back().size() / 2] = value;
    w.add_f32(e.name, e.shape, keep.back().data());
  }
  w.write(file);
}

TEST(Reliability, NoStringReachesAShellThroughThePlot) {
  if (std::system("command -v gnuplot > /dev/null 2>&1") != 0) GTEST_SKIP() << "gnuplot is not installed";
  // a run folder whose name tries a gnuplot shell escape, a quote, backquotes and a macro; its name is a title
  const std::string pwned = "PWNED-" + std::to_string(::getpid());
  Tiny t("r\n!touch " + pwned + "\n'`touch " + pwned + "`@x,\"y");
  const fs::path cwd = fs::current_path();
  // a control character in the --plot path is refused before any evaluation
  auto r = run_stretch(t.eval("--plot " + q(t.dir / ("x\n!touch " + pwned + "\n.png"))));
  expect_error(r, 2, {"--plot", "control character"});
  EXPECT_EQ(r.output.find("nll"), std::string::npos) << "refused before evaluating:\n" << r.output;
  // quotes, backquotes and macros in the path are data: the plot is drawn where asked, nothing runs
  const fs::path png = t.dir / ("p'`touch " + pwned + "`@y $(touch " + pwned + ").png");
  r = run_stretch(t.eval("--plot " + q(png)));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(fs::exists(png)) << r.output;
  for (const fs::path& where : {cwd, t.dir.path})
    EXPECT_FALSE(fs::exists(where / pwned)) << "a command ran through the plot, in " << where;
  // the passkey heat map takes the same strings
  r = run_stretch("passkey " + q(t.run) + " --lengths 300 --depths 0.5 --trials 1 --plot " +
                  q(t.dir / ("h\n!touch " + pwned + ".png")));
  expect_error(r, 2, {"--plot", "control character"});
  const fs::path heat = t.dir / ("h'`touch " + pwned + "`.png");
  r = run_stretch("passkey " + q(t.run) + " --lengths 300 --depths 0.5 --trials 1 --plot " + q(heat));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(fs::exists(heat)) << r.output;
  for (const fs::path& where : {cwd, t.dir.path}) EXPECT_FALSE(fs::exists(where / pwned));
}

TEST(Reliability, ConfigIntegersAreCheckedBeforeTheyAreNarrowed) {
  Tiny t;
  const std::string cfg = test::read_text(t.ckpt / "config.json");
  auto with = [&](const std::string& key, const std::string& value) {
    auto j = nlohmann::json::parse(cfg);
    j["model"][key] = nlohmann::json::parse(value);
    test::write_text(t.ckpt / "config.json", j.dump(2));
  };
  // 4294967328 = 2^32 + 32 read as an int would be 32, a valid length; 2^40 would be 0; 2^64-1 as int64 is -1
  for (const char* key : {"block_size", "vocab_size", "n_embd", "n_layer"})
    for (const char* value : {"4294967328", "1099511627776", "18446744073709551615"}) {
      with(key, value);
      expect_error(run_stretch(t.eval()), 3, {"config.json", std::string("'") + key + "'", value});
    }
  with("block_size", "16");
  EXPECT_EQ(run_stretch(t.eval()).exit_code, 0);
  auto j = nlohmann::json::parse(cfg);
  j["train_length"] = nlohmann::json::parse("4294967312");
  test::write_text(t.ckpt / "config.json", j.dump(2));
  expect_error(run_stretch(t.eval()), 3, {"train_length", "4294967312"});
}

TEST(Reliability, StateStepMustBeTheFoldersAndWithinSteps) {
  Tiny t;
  const std::string state = test::read_text(t.ckpt / "state.json");
  auto j = nlohmann::json::parse(state);
  j["step"] = 1000000000000L;
  test::write_text(t.ckpt / "state.json", j.dump());
  expect_error(run_stretch(t.resume(2)), 3, {"state.json", "'step'", "1000000000000", "step-00000002"});
  test::write_text(t.ckpt / "state.json", state);
  // the folder's own step past --steps (a renamed folder): refused, not "trained nothing" with exit 0
  fs::rename(t.ckpt, t.run / "checkpoints" / "step-00000009");
  j = nlohmann::json::parse(state);
  j["step"] = 9;
  test::write_text(t.run / "checkpoints" / "step-00000009" / "state.json", j.dump());
  test::write_text(t.run / "checkpoints" / "latest", "step-00000009\n");
  expect_error(run_stretch(t.resume(2)), 2, {"--resume", "step 9", "past --steps 2"});
}

TEST(Reliability, NanWeightsAreRefusedByEveryReader) {
  Tiny t;
  rewrite_tensor(t.ckpt / "model.safetensors", "layers.0.feed_forward.w2.weight", std::nanf(""));
  const std::vector<std::string> needles{"model.safetensors", "'layers.0.feed_forward.w2.weight'", "NaN/Inf"};
  for (const std::string& cmd :
       {t.eval(), "generate " + q(t.run) + " --prompt hi -n 2",
        "passkey " + q(t.run) + " --lengths 300 --depths 0.5 --trials 1",
        "export gguf " + q(t.run) + " --out " + q(t.dir / "m.gguf"),
        "export llama2c " + q(t.run) + " --out " + q(t.dir / "m.bin"),
        "export hf " + q(t.run) + " --out " + q(t.dir / "hf"), t.resume(4)}) {
    auto r = run_stretch(cmd);
    EXPECT_EQ(r.exit_code, 5) << cmd << "\n" << r.output;
    for (const auto& n : needles) EXPECT_NE(r.output.find(n), std::string::npos) << cmd << "\n" << r.output;
  }
  EXPECT_FALSE(fs::exists(t.dir / "m.gguf"));
  EXPECT_FALSE(fs::exists(t.dir / "m.bin"));
  EXPECT_FALSE(fs::exists(t.dir / "hf"));
  rewrite_tensor(t.ckpt / "model.safetensors", "layers.0.feed_forward.w2.weight", std::numeric_limits<float>::infinity());
  expect_error(run_stretch(t.eval()), 5, {"'layers.0.feed_forward.w2.weight'"});
}

TEST(Reliability, FlippedBytesAreCaughtByTheChecksums) {
  Tiny t;
  const fs::path file = t.ckpt / "model.safetensors";
  const std::string good = test::read_text(file);
  const auto r = SafetensorsReader::parse(good, "good");
  const auto& e = r.entry("layers.0.attention.wqkv.weight");
  ASSERT_TRUE(r.checksum(e.name).has_value());
  std::uint64_t n = 0;
  std::memcpy(&n, good.data(), 8);
  std::string bad = good;
  bad[8 + n + e.begin + 5] ^= 0x01;  // one bit of one weight: a valid float either way
  test::write_text(file, bad);
  for (const std::string& cmd : {t.eval(), "generate " + q(t.run) + " --prompt hi -n 2",
                                 "export gguf " + q(t.run) + " --out " + q(t.dir / "m.gguf"), t.resume(4)})
    expect_error(run_stretch(cmd), 3, {"model.safetensors", "'layers.0.attention.wqkv.weight'", "checksum"});
  test::write_text(file, good);
  EXPECT_EQ(run_stretch(t.eval()).exit_code, 0);
}

TEST(Reliability, FlagsKeepWhatTheirMessagesSay) {
  Tiny t;
  expect_error(run_stretch(t.eval("--protocol sliding --stride 0")), 2, {"--stride"});
  expect_error(run_stretch(t.eval("--threads 0")), 2, {"--threads"});
  expect_error(run_stretch("generate " + q(t.run) + " --prompt hi -n 2 --ctx 0"), 2, {"--ctx"});
  expect_error(run_stretch("generate " + q(t.run) + " --prompt hi -n 2 --seed -1"), 2, {"--seed", "non-negative"});
  expect_error(run_stretch("passkey " + q(t.run) + " --lengths 300 --ctx 0"), 2, {"--ctx"});
  expect_error(run_stretch("train --text " + q(t.dir / "c.txt") + " --out " + q(t.dir / "s") + " --cache-dir " +
                           q(t.dir / "cache") + " --layers 1 --width 16 --heads 2 --length 16 --steps 1 --seed -1"),
               2,
               {"--seed", "non-negative"});
  EXPECT_FALSE(fs::exists(t.dir / "s"));
  // invalid UTF-8 prompts are refused as train refuses invalid UTF-8 text
  expect_error(run_stretch("generate " + q(t.run) + " --prompt \"$(printf 'ab\\377')\" -n 2"), 3,
               {"--prompt", "invalid UTF-8", "byte offset 2"});
  // a cache larger than the machine is named as such, not as "out of memory" with training flags
  auto r = run_stretch("generate " + q(t.run) + " --prompt hi -n 2 --ctx 2000000000");
  expect_error(r, 2, {"--ctx 2000000000", "key/value cache", "memory"});
  EXPECT_EQ(r.output.find("--batch"), std::string::npos) << r.output;
}

TEST(Reliability, OutputPathsAreCheckedBeforeTheWork) {
  Tiny t;
  for (const char* flag : {"--json", "--csv", "--plot"}) {
    auto r = run_stretch(t.eval(std::string(flag) + " " + q(t.dir / "missing" / "out")));
    expect_error(r, 2, {flag, "does not exist"});
    EXPECT_EQ(r.output.find("nll"), std::string::npos) << "refused before evaluating:\n" << r.output;
    r = run_stretch("passkey " + q(t.run) + " --lengths 300 --trials 1 " + flag + " " + q(t.dir.path));
    expect_error(r, 2, {flag, "is a folder"});
  }
}

TEST(Reliability, CsvFieldsAreQuoted) {
  Tiny t("a,b\"c");
  ASSERT_EQ(run_stretch(t.eval("--csv " + q(t.dir / "r.csv"))).exit_code, 0);
  const std::string csv = test::read_text(t.dir / "r.csv");
  const auto row = csv.substr(csv.find('\n') + 1);
  EXPECT_EQ(row.front(), '"') << csv;  // the model's name, quoted
  EXPECT_NE(row.find("a,b\"\"c\",rope,16,16,"), std::string::npos) << csv;
  // every line has the header's 11 columns once quoted fields are read as one
  std::size_t lines = 0;
  for (std::size_t at = 0; at < csv.size();) {
    const std::size_t end = csv.find('\n', at);
    std::string line = csv.substr(at, end - at);
    int cols = 1;
    bool quoted = false;
    for (char c : line) {
      if (c == '"') quoted = !quoted;
      else if (c == ',' && !quoted) cols++;
    }
    EXPECT_EQ(cols, 11) << line;
    lines++;
    at = end + 1;
  }
  EXPECT_EQ(lines, 2u);
}

TEST(Reliability, MaxTokensIsAnExactCap) {
  Tiny t;
  for (int cap : {1, 20, 33}) {
    const fs::path out = t.dir / ("m" + std::to_string(cap) + ".json");
    auto r = run_stretch("eval " + q(t.run) + " --text " + q(t.dir / "c.txt") + " --lengths 16 --max-tokens " +
                         std::to_string(cap) + " --batch-tokens 8192 --cache-dir " + q(t.dir / "cache") + " --json " +
                         q(out));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const auto j = nlohmann::json::parse(test::read_text(out));
    EXPECT_EQ(j["models"][0]["results"][0]["tokens"].get<long>(), cap);
  }
}

TEST(Reliability, ResumingAFinishedRunAddsNoSecondFinalLine) {
  Tiny t;
  auto count_final = [&] {
    const std::string m = test::read_text(t.run / "metrics.jsonl");
    int n = 0;
    for (std::size_t at = 0; (at = m.find("\"final\"", at)) != std::string::npos; at++) n++;
    return n;
  };
  ASSERT_EQ(count_final(), 1);
  auto r = run_stretch(t.resume(2));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("nothing to train: the run is at step 2 of --steps 2"), std::string::npos) << r.output;
  EXPECT_EQ(count_final(), 1) << test::read_text(t.run / "metrics.jsonl");
}

TEST(Reliability, AFailedImportLeavesNoRunFolder) {
  Tiny t;
  ASSERT_EQ(run_stretch("export hf " + q(t.run) + " --out " + q(t.dir / "hf")).exit_code, 0);
  // a NaN in the Hugging Face weights: the import reads them, makes the folder, and refuses to write the checkpoint
  rewrite_tensor(t.dir / "hf" / "model.safetensors", "model.layers.0.mlp.down_proj.weight", std::nanf(""));
  auto r = run_stretch("import hf " + q(t.dir / "hf") + " --out " + q(t.dir / "imported"));
  expect_error(r, 5, {"refusing to write a checkpoint", "NaN/Inf"});
  EXPECT_FALSE(fs::exists(t.dir / "imported")) << r.output;
  // into a folder that existed: what the import wrote goes, what was there stays
  fs::create_directories(t.dir / "mine");
  test::write_text(t.dir / "mine" / "notes.txt", "mine");
  r = run_stretch("import hf " + q(t.dir / "hf") + " --out " + q(t.dir / "mine"));
  expect_error(r, 5, {"refusing to write a checkpoint"});
  EXPECT_EQ(test::read_text(t.dir / "mine" / "notes.txt"), "mine");
  for (const char* gone : {"checkpoints", "tokenizer", ".lock"}) EXPECT_FALSE(fs::exists(t.dir / "mine" / gone)) << gone;
}

TEST(Reliability, GgufBadMagicIsShownInHex) {
  TempDir d;
  test::write_text(d / "x.gguf", std::string("\x01\xab" "GU", 4) + std::string(64, '\0'));
  auto r = run_stretch("import gguf " + q(d / "x.gguf") + " --out " + q(d / "run"));
  expect_error(r, 3, {"x.gguf", "bad magic '\\x01\\xabGU'"});
}

}  // namespace
}  // namespace stretch
