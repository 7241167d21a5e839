// Bad input through the command line: each case gets a clear message naming the file, flag or field, a
// non-zero exit, and no half-written file.
#include <gtest/gtest.h>

#include <fstream>

#include "test_util.hpp"

namespace stretch {
namespace {
using test::run_stretch;
using test::TempDir;

std::string q(const std::filesystem::path& p) { return test::shell_quote(p); }

// A trained tiny run to corrupt.
struct TinyRun {
  TempDir dir;
  std::filesystem::path run, ckpt;
  TinyRun() {
    test::write_text(dir / "c.txt", test::generated_text(20000));
    run = dir / "run";
    auto r = run_stretch("train --text " + q(dir / "c.txt") + " --out " + q(run) + " --cache-dir " +
                         q(dir / "cache") + " --layers 1 --width 16 --heads 2 --length 16 --batch 2 --steps 2 "
                         "--warmup 0 --quiet");
    EXPECT_EQ(r.exit_code, 0) << r.output;
    ckpt = run / "checkpoints" / "step-00000002";
  }
  std::string resume() {
    return "train --resume --text " + q(dir / "c.txt") + " --out " + q(run) + " --cache-dir " + q(dir / "cache") +
           " --layers 1 --width 16 --heads 2 --length 16 --batch 2 --steps 4 --warmup 0 --quiet";
  }
};

void expect_error(const test::RunResult& r, const std::string& needle) {
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find(needle), std::string::npos) << "expected '" << needle << "' in:\n" << r.output;
}

TEST(BadInput, MissingCorpus) {
  TempDir d;
  auto r = run_stretch("train --text " + q(d / "nope.txt") + " --out " + q(d / "run"));
  expect_error(r, "nope.txt");
  EXPECT_FALSE(std::filesystem::exists(d / "run"));
}

TEST(BadInput, EmptyCorpus) {
  TempDir d;
  test::write_text(d / "empty.txt", "");
  auto r = run_stretch("train --text " + q(d / "empty.txt") + " --out " + q(d / "run") + " --cache-dir " + q(d / "c"));
  expect_error(r, "empty.txt");
  EXPECT_NE(r.output.find("empty"), std::string::npos) << r.output;
  EXPECT_FALSE(std::filesystem::exists(d / "run"));
}

TEST(BadInput, CorpusShorterThanOneWindow) {
  TempDir d;
  test::write_text(d / "short.txt", "just a few words");
  auto r = run_stretch("train --text " + q(d / "short.txt") + " --out " + q(d / "run") + " --cache-dir " +
                       q(d / "c") + " --length 256");
  expect_error(r, "needs at least 257");
  EXPECT_FALSE(std::filesystem::exists(d / "run"));
}

TEST(BadInput, UnknownPositionMethod) {
  TempDir d;
  test::write_text(d / "c.txt", test::generated_text(5000));
  auto r = run_stretch("train --text " + q(d / "c.txt") + " --out " + q(d / "run") + " --position xpos");
  expect_error(r, "--position: unknown position method 'xpos'");
  EXPECT_NE(r.output.find("alibi"), std::string::npos);  // lists the choices
}

TEST(BadInput, HeadsThatDoNotDivideTheWidth) {
  TempDir d;
  test::write_text(d / "c.txt", test::generated_text(5000));
  auto r = run_stretch("train --text " + q(d / "c.txt") + " --out " + q(d / "run") + " --width 100 --heads 8");
  expect_error(r, "--heads: must divide");
}

TEST(BadInput, NegativeAndAbsurdFlagValues) {
  TempDir d;
  test::write_text(d / "c.txt", test::generated_text(5000));
  const std::string base = "train --text " + q(d / "c.txt") + " --out " + q(d / "run");
  expect_error(run_stretch(base + " --steps -5"), "--steps");
  expect_error(run_stretch(base + " --batch 1000000000"), "--batch");
  expect_error(run_stretch(base + " --lr -1"), "--lr");
  expect_error(run_stretch(base + " --lr nan"), "--lr");
  expect_error(run_stretch(base + " --dropout 1.5"), "--dropout");
  expect_error(run_stretch(base + " --layers 0"), "--layers");
  expect_error(run_stretch(base + " --steps ten"), "--steps");
  expect_error(run_stretch(base + " --tokenizer sentencepiece"), "--tokenizer");
  expect_error(run_stretch(base + " --precision fp8"), "--precision");
  expect_error(run_stretch(base + " --attention flash"), "--attention");
  EXPECT_FALSE(std::filesystem::exists(d / "run"));
}

TEST(BadInput, ExistingRunWithoutResumeIsNotOverwritten) {
  TinyRun t;
  const std::string before = test::read_text(t.ckpt / "model.safetensors");
  auto r = run_stretch("train --text " + q(t.dir / "c.txt") + " --out " + q(t.run) + " --cache-dir " +
                       q(t.dir / "cache") + " --layers 1 --width 16 --heads 2 --length 16 --steps 2 --quiet");
  expect_error(r, "--resume");
  EXPECT_EQ(test::read_text(t.ckpt / "model.safetensors"), before);
}

TEST(BadInput, TruncatedCheckpoint) {
  TinyRun t;
  std::string bytes = test::read_text(t.ckpt / "model.safetensors");
  test::write_text(t.ckpt / "model.safetensors", bytes.substr(0, bytes.size() / 2));
  expect_error(run_stretch(t.resume()), "model.safetensors");
}

TEST(BadInput, BadSafetensorsHeader) {
  TinyRun t;
  std::string bytes = test::read_text(t.ckpt / "model.safetensors");
  bytes[10] = '#';  // inside the JSON header
  test::write_text(t.ckpt / "model.safetensors", bytes);
  expect_error(run_stretch(t.resume()), "model.safetensors");
}

TEST(BadInput, TensorShapeDisagreesWithConfig) {
  TinyRun t;
  std::string cfg = test::read_text(t.ckpt / "config.json");
  auto at = cfg.find("\"mlp_hidden\": 64");
  ASSERT_NE(at, std::string::npos) << cfg;
  cfg.replace(at, 16, "\"mlp_hidden\": 32");
  test::write_text(t.ckpt / "config.json", cfg);
  auto r = run_stretch(t.resume());
  expect_error(r, "mlp.c_fc.weight");
}

TEST(BadInput, CheckpointConfigWithBadField) {
  TinyRun t;
  std::string cfg = test::read_text(t.ckpt / "config.json");
  auto at = cfg.find("\"position\": \"alibi\"");
  ASSERT_NE(at, std::string::npos) << cfg;
  cfg.replace(at, 19, "\"position\": \"wibble\"");
  test::write_text(t.ckpt / "config.json", cfg);
  expect_error(run_stretch(t.resume()), "position");
}

TEST(Cli, HelpListsTheOptionsWithDefaults) {
  auto r = run_stretch("train --help");
  EXPECT_EQ(r.exit_code, 0);
  for (const char* s : {"--position", "--length", "--resume", "alibi", "--grad-accum", "--clip"})
    EXPECT_NE(r.output.find(s), std::string::npos) << s;
}

}  // namespace
}  // namespace stretch
