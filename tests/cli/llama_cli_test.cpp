// stories260K end to end through the CLI: import (llama2.c .bin + tokenizer), evaluation on TinyStories valid.txt
// with ../shared/REFERENCE.md's protocol (documents split at "\n\n", stripped, BOS each; chunked windows), the
// reference figures of an independent float64 implementation, a short fine-tune at a longer length with a
// scaling, export; and bad llama2.c / tokenizer files rejected with messages naming them.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "io/llama2c.hpp"
#include "test_util.hpp"

namespace stretch {
namespace {
using namespace stretch::test;

namespace fs = std::filesystem;

fs::path dir() { return shared_data() / "llama2c"; }

#define REQUIRE_DATA()                                                                                    \
  if (!fs::exists(dir() / "stories260K.bin") || !fs::exists(shared_data() / "tinystories" / "valid.txt")) \
  GTEST_SKIP() << "needs ../shared/data/llama2c/stories260K.bin and tinystories/valid.txt"

std::string import_cmd(const fs::path& model, const fs::path& tok, const fs::path& out) {
  return "import llama2c " + shell_quote(model.string()) + " --tokenizer " + shell_quote(tok.string()) + " --out " +
         shell_quote(out.string());
}

double nll_of(const fs::path& json_file, std::size_t length_index = 0) {
  auto j = nlohmann::json::parse(read_text(json_file));
  return j["models"][0]["results"][length_index]["nll"].get<double>();
}

TEST(LlamaCli, ImportedStories260kReproducesTheReferenceFigures) {
  REQUIRE_DATA();
  TempDir t;
  auto r = run_stretch(import_cmd(dir() / "stories260K.bin", dir() / "tok512.bin", t / "s260"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string eval = "eval " + shell_quote((t / "s260").string()) + " --text " +
                           shell_quote((shared_data() / "tinystories" / "valid.txt").string()) +
                           " --doc-sep '\\n\\n' --protocol chunked --cache-dir " + shell_quote((t / "cache").string());
  r = run_stretch(eval + " --lengths 256,512 --json " + shell_quote((t / "plain.json").string()));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NEAR(nll_of(t / "plain.json", 0), 1.8137, 6e-4) << r.output;
  EXPECT_NEAR(nll_of(t / "plain.json", 1), 1.8205, 6e-4) << r.output;
  auto j = nlohmann::json::parse(read_text(t / "plain.json"));
  EXPECT_EQ(j["models"][0]["results"][0]["tokens"].get<long>(), 77831 - 305);  // 892 stories, 305 windows
  r = run_stretch(eval + " --lengths 1024 --rope-scaling linear:2 --json " + shell_quote((t / "linear.json").string()));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NEAR(nll_of(t / "linear.json"), 2.9681, 6e-4) << r.output;
  r = run_stretch(eval + " --lengths 1024 --rope-scaling ntk:2 --json " + shell_quote((t / "ntk.json").string()));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NEAR(nll_of(t / "ntk.json"), 1.8737, 6e-4) << r.output;
}

TEST(LlamaCli, FinetuneAtALongerLengthKeepsTheScalingAndExports) {
  REQUIRE_DATA();
  TempDir t;
  ASSERT_EQ(run_stretch(import_cmd(dir() / "stories260K.bin", dir() / "tok512.bin", t / "s260")).exit_code, 0);
  write_text(t / "train.txt", read_text(shared_data() / "tinystories" / "train.txt").substr(0, 60000));
  auto r = run_stretch("finetune " + shell_quote((t / "s260").string()) + " --text " +
                       shell_quote((t / "train.txt").string()) + " --out " + shell_quote((t / "ft").string()) +
                       " --doc-sep '\\n\\n' --length 1024 --rope-scaling yarn:2 --steps 3 --batch 1 --quiet --cache-dir " +
                       shell_quote((t / "cache").string()));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto cfg = nlohmann::json::parse(read_text(t / "ft" / "checkpoints" / "step-00000003" / "config.json"));
  EXPECT_EQ(cfg["model"]["architecture"], "llama");
  EXPECT_EQ(cfg["model"]["block_size"], 1024);
  EXPECT_EQ(cfg["model"]["rope_scaling"]["type"], "yarn");
  EXPECT_EQ(cfg["model"]["rope_scaling"]["original_context"], 512);
  // a scaled model is not expressible in llama2.c's format: refused by name
  r = run_stretch("export llama2c " + shell_quote((t / "ft").string()) + " --out " + shell_quote((t / "x.bin").string()));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("llama2.c export"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(t / "x.bin"));
  // the imported one is, and exports to a file that imports again
  r = run_stretch("export llama2c " + shell_quote((t / "s260").string()) + " --out " + shell_quote((t / "y.bin").string()));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  ASSERT_EQ(fs::file_size(t / "y.bin"), fs::file_size(dir() / "stories260K.bin"));
  // import -> our safetensors checkpoint -> export keeps every weight bit for bit
  const Llama2cWeights a = read_llama2c(dir() / "stories260K.bin"), b = read_llama2c(t / "y.bin");
  EXPECT_EQ(a.tok_embeddings, b.tok_embeddings);
  EXPECT_EQ(a.wq, b.wq);
  EXPECT_EQ(a.wk, b.wk);
  EXPECT_EQ(a.wv, b.wv);
  EXPECT_EQ(a.wo, b.wo);
  EXPECT_EQ(a.w1, b.w1);
  EXPECT_EQ(a.w2, b.w2);
  EXPECT_EQ(a.w3, b.w3);
  EXPECT_EQ(a.rms_att, b.rms_att);
  EXPECT_EQ(a.rms_ffn, b.rms_ffn);
  EXPECT_EQ(a.rms_final, b.rms_final);
}

TEST(LlamaCli, GgufExportImportKeepsTheModelTheTokenizerAndThePerplexity) {
  REQUIRE_DATA();
  TempDir t;
  ASSERT_EQ(run_stretch(import_cmd(dir() / "stories260K.bin", dir() / "tok512.bin", t / "s260")).exit_code, 0);
  auto r = run_stretch("export gguf " + shell_quote((t / "s260").string()) + " --out " + shell_quote((t / "s.gguf").string()));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = run_stretch("import gguf " + shell_quote((t / "s.gguf").string()) + " --out " + shell_quote((t / "back").string()));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  // the GGUF's tokenizer.ggml.* become a tokenizer.bin identical to llama2.c's own
  EXPECT_EQ(read_text(t / "back" / "tokenizer.bin"), read_text(dir() / "tok512.bin"));
  r = run_stretch("eval " + shell_quote((t / "back").string()) + " --text " +
                  shell_quote((shared_data() / "tinystories" / "valid.txt").string()) +
                  " --doc-sep '\\n\\n' --protocol chunked --lengths 256 --json " + shell_quote((t / "e.json").string()) +
                  " --cache-dir " + shell_quote((t / "cache").string()));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NEAR(nll_of(t / "e.json"), 1.8137, 6e-4) << r.output;
  // unknown type and format are refused by name
  r = run_stretch("export gguf " + shell_quote((t / "s260").string()) + " --type q4 --out " + shell_quote((t / "x.gguf").string()));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("--type"), std::string::npos) << r.output;
  r = run_stretch("import onnx " + shell_quote((t / "s.gguf").string()) + " --out " + shell_quote((t / "y").string()));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("format"), std::string::npos) << r.output;
}

TEST(LlamaCli, BadLlama2cFilesAndTokenizersAreRejectedByName) {
  REQUIRE_DATA();
  TempDir t;
  const std::string bin = read_text(dir() / "stories260K.bin");
  write_text(t / "truncated.bin", bin.substr(0, bin.size() / 2));
  auto r = run_stretch(import_cmd(t / "truncated.bin", dir() / "tok512.bin", t / "a"));
  EXPECT_EQ(r.exit_code, 3) << r.output;
  EXPECT_NE(r.output.find("truncated.bin"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(t / "a" / "checkpoints"));
  std::string bad = bin;
  bad[8] = '\x7f';  // n_layers = huge
  write_text(t / "corrupt.bin", bad);
  r = run_stretch(import_cmd(t / "corrupt.bin", dir() / "tok512.bin", t / "b"));
  EXPECT_EQ(r.exit_code, 3) << r.output;
  EXPECT_NE(r.output.find("corrupt.bin"), std::string::npos) << r.output;
  const std::string tok = read_text(dir() / "tok512.bin");
  write_text(t / "tok_truncated.bin", tok.substr(0, tok.size() - 100));
  r = run_stretch(import_cmd(dir() / "stories260K.bin", t / "tok_truncated.bin", t / "c"));
  EXPECT_EQ(r.exit_code, 3) << r.output;
  EXPECT_NE(r.output.find("tok_truncated.bin"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(t / "c" / "checkpoints"));
  write_text(t / "garbage.model", "not a sentencepiece model at all");
  r = run_stretch(import_cmd(dir() / "stories260K.bin", t / "garbage.model", t / "d"));
  EXPECT_EQ(r.exit_code, 3) << r.output;
  EXPECT_NE(r.output.find("garbage.model"), std::string::npos) << r.output;
  // the SentencePiece model of the same vocabulary is accepted
  r = run_stretch(import_cmd(dir() / "stories260K.bin", dir() / "tok512.model", t / "e"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

}  // namespace
}  // namespace stretch
