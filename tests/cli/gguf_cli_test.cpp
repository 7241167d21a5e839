// `stretch export gguf` / `import gguf` for GPT models (llama.cpp's "mpt" architecture) end to end: an ALiBi
// model trained here with the byte tokenizer and embed_scale sqrt goes out and back with the same perplexity at
// and past its training length, generates the same text, fine-tunes; models MPT cannot hold are refused by name.
// (The llama architecture's CLI round trip is in llama_cli_test.cpp; the mapping itself in
// tests/model/gguf_convert_test.cpp.)
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "test_util.hpp"

namespace stretch {
namespace {
using test::run_stretch;
using test::TempDir;

std::string q(const std::filesystem::path& p) { return test::shell_quote(p); }

std::vector<double> nlls(const std::filesystem::path& json_file) {
  auto j = nlohmann::json::parse(test::read_text(json_file));
  std::vector<double> out;
  for (const auto& r : j["models"][0]["results"]) out.push_back(r["nll"].get<double>());
  return out;
}

// The generated text: the output without the statistics line (timings differ run to run).
std::string text_of(const std::string& out) { return out.substr(0, out.rfind("\nprompt: ")); }

// The peak resident set of `stretch args` run to its end (the kernel's ru_maxrss of that one child), in bytes.
long long peak_rss_of(const std::vector<std::string>& args, int* exit_code) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    const int null = ::open("/dev/null", O_WRONLY);
    ::dup2(null, 1);
    ::dup2(null, 2);
    std::vector<char*> argv{const_cast<char*>(STRETCH_BINARY)};
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    ::execv(STRETCH_BINARY, argv.data());
    ::_exit(127);
  }
  int status = 0;
  struct rusage ru {};
  while (::wait4(pid, &status, 0, &ru) < 0 && errno == EINTR) {
  }
  *exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return static_cast<long long>(ru.ru_maxrss) * 1024;
}

// Importing a GGUF file grows the process by about the model, not by the model plus the file: each tensor's file
// pages are dropped once it is converted (GgufReader::release). Measured against the import of a tiny model (the
// binary's own pages): a 76 MB file grew the process by 2.01x its size before, 1.10x now.
TEST(GgufCli, ImportPeaksNearTheModelSizeNotTwice) {
#ifdef __SANITIZE_ADDRESS__
  GTEST_SKIP() << "AddressSanitizer's quarantine keeps freed conversion buffers resident";
#endif
  TempDir d;
  test::write_text(d / "t.txt", test::generated_text(20000, 3));
  auto make = [&](const std::string& name, const std::string& layers, const std::string& width) {
    auto r = run_stretch("train --text " + q(d / "t.txt") + " --out " + q(d / name) + " --cache-dir " + q(d / "c") +
                         " --arch llama --position rope --layers " + layers + " --width " + width +
                         " --heads 4 --length 16 --batch 1 --steps 1 --warmup 0 --eval-interval 0 --eval-tokens 16"
                         " --quiet");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    r = run_stretch("export gguf " + q(d / name) + " --out " + q(d / (name + ".gguf")));
    ASSERT_EQ(r.exit_code, 0) << r.output;
  };
  make("small", "1", "32");
  make("big", "8", "384");
  int rc = -1;
  const long long small = peak_rss_of({"import", "gguf", (d / "small.gguf").string(), "--out", (d / "s").string()}, &rc);
  ASSERT_EQ(rc, 0);
  const long long big = peak_rss_of({"import", "gguf", (d / "big.gguf").string(), "--out", (d / "b").string()}, &rc);
  ASSERT_EQ(rc, 0);
  const double file = static_cast<double>(std::filesystem::file_size(d / "big.gguf"));
  const double growth = static_cast<double>(big - small) / file;
  std::printf("import gguf: %.0f MB file, peak %.0f MB (a tiny model's import: %.0f MB), growth %.2fx the file\n",
              file / 1e6, static_cast<double>(big) / 1e6, static_cast<double>(small) / 1e6, growth);
  EXPECT_GT(growth, 0.8) << "the model itself must show: the measurement works";
  EXPECT_LT(growth, 1.4) << "the file's pages stayed resident beside the model";
}

TEST(GgufCli, AlibiGptGoesOutAsMptAndComesBackEvaluatingAndGeneratingTheSame) {
  TempDir d;
  test::write_text(d / "t.txt", test::generated_text(30000, 7));
  auto r = run_stretch("train --text " + q(d / "t.txt") + " --out " + q(d / "a") + " --cache-dir " + q(d / "c") +
                       " --position alibi --layers 2 --width 32 --heads 4 --length 32 --batch 4 --steps 40"
                       " --embed-scale sqrt --quiet");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = run_stretch("export gguf " + q(d / "a") + " --out " + q(d / "a.gguf"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = run_stretch("import gguf " + q(d / "a.gguf") + " --out " + q(d / "b"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("gpt (alibi)"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("(byte)"), std::string::npos) << r.output;
  for (const char* m : {"a", "b"}) {
    r = run_stretch(std::string("eval ") + q(d / m) + " --text " + q(d / "t.txt") + " --lengths 32,128 --json " +
                    q(d / (std::string(m) + ".json")) + " --cache-dir " + q(d / "c"));
    ASSERT_EQ(r.exit_code, 0) << r.output;
  }
  const auto a = nlls(d / "a.json"), b = nlls(d / "b.json");
  ASSERT_EQ(a.size(), 2u);
  ASSERT_EQ(b.size(), 2u);
  EXPECT_NEAR(a[0], b[0], 1e-6);  // at L
  EXPECT_NEAR(a[1], b[1], 1e-6);  // at 4L: ALiBi is carried over, not just the weights
  auto ga = run_stretch("generate " + q(d / "a") + " -p 'the cat' -n 60 -t 0");
  auto gb = run_stretch("generate " + q(d / "b") + " -p 'the cat' -n 60 -t 0");
  ASSERT_EQ(ga.exit_code, 0) << ga.output;
  ASSERT_EQ(gb.exit_code, 0) << gb.output;
  EXPECT_EQ(text_of(ga.output), text_of(gb.output));
  r = run_stretch("finetune " + q(d / "b") + " --text " + q(d / "t.txt") + " --out " + q(d / "ft") +
                  " --length 64 --steps 3 --batch 2 --quiet --cache-dir " + q(d / "c"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(std::filesystem::exists(d / "ft" / "checkpoints" / "step-00000003" / "config.json"));
}

TEST(GgufCli, ModelsMptCannotHoldAreRefusedByNameAndNothingIsWritten) {
  TempDir d;
  test::write_text(d / "t.txt", test::generated_text(8000, 3));
  auto r = run_stretch("train --text " + q(d / "t.txt") + " --out " + q(d / "t5") + " --cache-dir " + q(d / "c") +
                       " --position t5 --layers 1 --width 16 --heads 2 --length 16 --batch 2 --steps 2 --quiet");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = run_stretch("export gguf " + q(d / "t5") + " --out " + q(d / "t5.gguf"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("position method \"t5\""), std::string::npos) << r.output;
  EXPECT_FALSE(std::filesystem::exists(d / "t5.gguf"));
  // a file that is not GGUF: named, and no run directory is created
  test::write_text(d / "x.gguf", "GGUF but not really");
  r = run_stretch("import gguf " + q(d / "x.gguf") + " --out " + q(d / "x"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("x.gguf"), std::string::npos) << r.output;
  EXPECT_FALSE(std::filesystem::exists(d / "x"));
}

}  // namespace
}  // namespace stretch
