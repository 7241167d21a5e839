// Data-parallel training over MPI (`mpirun -np 2 stretch train`, docs/DISTRIBUTED.md), on loopback:
// two ranks with the global batch split between them follow one rank's loss curve; checkpoints written by
// two ranks resume with two ranks or one; a rank killed with SIGKILL stops the job within seconds with the
// last checkpoint loadable; flags that cannot be split and subcommands that do not run distributed are refused.
// Skipped, saying why, when this build has no MPI or mpirun is not on PATH.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/cpu.hpp"
#include "distributed/comm.hpp"
#include "model/transformer.hpp"
#include "run/checkpoint.hpp"
#include "test_util.hpp"

namespace stretch {
namespace {
namespace fs = std::filesystem;
using test::run_shell;
using test::shell_quote;
using test::TempDir;

// mpirun as root needs --allow-run-as-root; --oversubscribe lets 2 ranks start on a machine with fewer slots.
// In the sanitized build (build-asan/), leak checking is off for processes under mpirun: Open MPI's components
// (plugins it dlopens and unloads at MPI_Finalize) keep allocations until exit, which LeakSanitizer reports with
// stacks in unloaded code that no suppression can name. Every other sanitizer check stays on, and the same code
// run as one process (no MPI initialised) is leak-checked by the rest of the suite.
std::string mpirun(int np) {
  return "ASAN_OPTIONS=\"${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0\" mpirun --allow-run-as-root --oversubscribe -np " +
         std::to_string(np) + " ";
}

bool mpi_usable(std::string& why) {
  if (!mpi_built()) {
    why = "this stretch was built without MPI (install libopenmpi-dev, reconfigure)";
    return false;
  }
  if (std::system("command -v mpirun > /dev/null 2>&1") != 0) {
    why = "mpirun is not on PATH (Debian: openmpi-bin)";
    return false;
  }
  return true;
}

#define SKIP_WITHOUT_MPI()                    \
  do {                                        \
    std::string why;                          \
    if (!mpi_usable(why)) GTEST_SKIP() << why; \
  } while (0)

test::RunResult stretch_on(int ranks, const std::string& args) {
  return run_shell((ranks > 0 ? mpirun(ranks) : std::string()) + STRETCH_BINARY + " " + args);
}

struct Fixture {
  TempDir dir;
  Fixture() { test::write_text(dir / "c.txt", test::generated_text(60000)); }
  std::string train(const fs::path& run, long steps, int batch = 8) const {
    return "train --text " + shell_quote(dir / "c.txt") + " --out " + shell_quote(run) + " --cache-dir " +
           shell_quote(dir / "cache") + " --layers 2 --width 64 --heads 4 --length 32 --batch " +
           std::to_string(batch) + " --steps " + std::to_string(steps) +
           " --lr 3e-3 --warmup 5 --eval-interval 20 --eval-tokens 1024 --log-interval 1 --ckpt-interval 10"
           " --threads 1 --quiet";
  }
};

struct Metrics {
  std::vector<double> loss;     // per step, from 1
  std::vector<double> val;      // interval validations, then the final one (not a stopped session's)
  nlohmann::json final_line;
};

Metrics read_metrics(const fs::path& run) {
  Metrics m;
  std::ifstream in(run / "metrics.jsonl");
  std::string line;
  while (std::getline(in, line)) {
    auto j = nlohmann::json::parse(line);
    if (j.contains("loss")) {
      const long step = j["step"];
      if (static_cast<long>(m.loss.size()) < step) m.loss.resize(static_cast<std::size_t>(step), NAN);
      m.loss[static_cast<std::size_t>(step - 1)] = j["loss"];
    }
    if (j.contains("val_loss")) m.val.push_back(j["val_loss"]);
    if (j.contains("final")) m.final_line = j;
  }
  return m;
}

// The largest relative difference between two runs' per-step losses and validations (and that they have the
// same steps).
double max_rel_diff(const Metrics& a, const Metrics& b) {
  EXPECT_EQ(a.loss.size(), b.loss.size());
  EXPECT_EQ(a.val.size(), b.val.size());
  double d = 0.0;
  for (std::size_t i = 0; i < std::min(a.loss.size(), b.loss.size()); i++)
    d = std::max(d, std::fabs(a.loss[i] - b.loss[i]) / std::fabs(a.loss[i]));
  for (std::size_t i = 0; i < std::min(a.val.size(), b.val.size()); i++)
    d = std::max(d, std::fabs(a.val[i] - b.val[i]) / std::fabs(a.val[i]));
  return std::isnan(d) ? 1.0 : d;
}

float max_weight_diff(const fs::path& a, const fs::path& b) {
  auto ma = load_model(read_checkpoint_meta(a));
  auto mb = load_model(read_checkpoint_meta(b));
  EXPECT_EQ(ma->params().size(), mb->params().size());
  float d = 0.0f;
  for (std::size_t i = 0; i < std::min(ma->params().size(), mb->params().size()); i++)
    d = std::max(d, std::fabs(ma->params().data()[i] - mb->params().data()[i]));
  return d;
}

TEST(Distributed, TwoRanksFollowOneRankWithTheSameGlobalBatch) {
  SKIP_WITHOUT_MPI();
  Fixture fx;
  const long steps = 40;
  auto one = stretch_on(0, fx.train(fx.dir / "one", steps));
  ASSERT_EQ(one.exit_code, 0) << one.output;
  auto two = stretch_on(2, fx.train(fx.dir / "two", steps));
  ASSERT_EQ(two.exit_code, 0) << two.output;
  EXPECT_NE(two.output.find("ranks: 2; gradient all-reduce"), std::string::npos) << two.output;
  // rank 0 alone reports: one summary line, not two
  EXPECT_EQ(two.output.find("trained 40 steps"), two.output.rfind("trained 40 steps")) << two.output;

  const Metrics m1 = read_metrics(fx.dir / "one"), m2 = read_metrics(fx.dir / "two");
  ASSERT_EQ(m1.loss.size(), static_cast<std::size_t>(steps));
  EXPECT_EQ(m2.final_line.value("ranks", 0), 2);
  EXPECT_GT(m2.final_line.value("allreduce_s", -1.0), 0.0);
  // the same windows and the same averaged gradients: only the order of the gradient sums differs (measured:
  // about 1e-7 relative after 30 steps), and losses move a lot over 40 steps, so 1e-4 tells them apart
  EXPECT_LT(max_rel_diff(m1, m2), 1e-4);
  EXPECT_GT(m1.loss.front() - m1.loss.back(), 1.0) << "the tiny model did not learn: the comparison says little";
  EXPECT_LT(max_weight_diff(fx.dir / "one", fx.dir / "two"), 1e-3f);

  // 2 ranks stopped at step 20 and resumed by 2 ranks, or by 1: the same run again
  auto a = stretch_on(2, fx.train(fx.dir / "resume2", steps) + " --stop-after 20");
  ASSERT_EQ(a.exit_code, 0) << a.output;
  a = stretch_on(2, fx.train(fx.dir / "resume2", steps) + " --resume");
  ASSERT_EQ(a.exit_code, 0) << a.output;
  EXPECT_LT(max_rel_diff(m1, read_metrics(fx.dir / "resume2")), 1e-4);
  auto b = stretch_on(2, fx.train(fx.dir / "resume1", steps) + " --stop-after 20");
  ASSERT_EQ(b.exit_code, 0) << b.output;
  b = stretch_on(0, fx.train(fx.dir / "resume1", steps) + " --resume");
  ASSERT_EQ(b.exit_code, 0) << b.output;
  EXPECT_LT(max_rel_diff(m1, read_metrics(fx.dir / "resume1")), 1e-4);
}

// A LoRA fine-tune (the base frozen: only the adapter's and the norms' gradient ranges are all-reduced) on 2 ranks
// follows the one-rank run, and leaves the base as it was on every rank.
TEST(Distributed, TwoRanksFollowOneRankInALoraFineTune) {
  SKIP_WITHOUT_MPI();
  Fixture fx;
  auto base = stretch_on(0, fx.train(fx.dir / "base", 10));
  ASSERT_EQ(base.exit_code, 0) << base.output;
  const std::string ft = "finetune " + shell_quote(fx.dir / "base") + " --text " + shell_quote(fx.dir / "c.txt") +
                         " --cache-dir " + shell_quote(fx.dir / "cache") +
                         " --batch 8 --steps 30 --lr 1e-2 --warmup 3 --eval-interval 10 --eval-tokens 1024"
                         " --log-interval 1 --threads 1 --quiet --lora 4 --lora-targets q,v,up --train-also norm --out ";
  auto one = stretch_on(0, ft + shell_quote(fx.dir / "one"));
  ASSERT_EQ(one.exit_code, 0) << one.output;
  auto two = stretch_on(2, ft + shell_quote(fx.dir / "two"));
  ASSERT_EQ(two.exit_code, 0) << two.output;
  const Metrics m1 = read_metrics(fx.dir / "one"), m2 = read_metrics(fx.dir / "two");
  ASSERT_EQ(m1.loss.size(), 30u);
  EXPECT_LT(max_rel_diff(m1, m2), 1e-4);
  EXPECT_GT(m1.loss.front() - m1.loss.back(), 0.05) << "the adapter did not learn: the comparison says little";
  EXPECT_LT(max_weight_diff(fx.dir / "one", fx.dir / "two"), 1e-3f);
  // the frozen base's matrices and embeddings are untouched (the norms, with their biases, trained)
  auto b = load_model(read_checkpoint_meta(fx.dir / "base"));
  auto t = load_model(read_checkpoint_meta(fx.dir / "two"));
  for (std::size_t i = 0; i < b->specs().size(); i++) {
    const ParamSpec& s = b->specs()[i];
    if (s.kind != ParamKind::matrix && s.kind != ParamKind::embedding) continue;
    EXPECT_TRUE(std::equal(b->params().data() + s.offset, b->params().data() + s.offset + s.numel(),
                           t->params().data() + s.offset))
        << s.name;
  }
}

TEST(Distributed, ABatchThatDoesNotSplitAndOtherSubcommandsAreRefused) {
  SKIP_WITHOUT_MPI();
  Fixture fx;
  auto r = stretch_on(2, fx.train(fx.dir / "odd", 10, 7));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("--batch 7"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("multiple of 2"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(fx.dir / "odd" / "checkpoints"));
  r = stretch_on(2, "generate " + shell_quote(fx.dir / "none") + " -p x");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("stretch generate runs as one process"), std::string::npos) << r.output;
}

// Ranks on CPUs that take different kernel paths (here: one rank capped with STRETCH_MAX_ISA=avx2 on an AVX-512 CPU,
// as on a host without AVX-512) would round differently and drift apart: refused before the run folder exists,
// naming the variables that align them. With the cap on both ranks the job runs.
TEST(Distributed, RanksThatComputeWithDifferentInstructionSetsAreRefusedUpFront) {
  SKIP_WITHOUT_MPI();
  if (!cpu_features().avx512) GTEST_SKIP() << "this CPU has no AVX-512: the cap changes no path here";
  Fixture fx;
  const std::string one = std::string(STRETCH_BINARY) + " " + fx.train(fx.dir / "mixed", 6, 8);
  const std::string base = "ASAN_OPTIONS=\"${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0\" mpirun --allow-run-as-root "
                           "--oversubscribe ";
  auto r = run_shell(base + "-np 1 env STRETCH_MAX_ISA=avx2 " + one + " : -np 1 " + one);
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("different instruction-set paths"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("STRETCH_MAX_ISA"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(fx.dir / "mixed" / "checkpoints"));
  const std::string both = std::string(STRETCH_BINARY) + " " + fx.train(fx.dir / "capped", 6, 8);
  r = run_shell(base + "-np 2 env STRETCH_MAX_ISA=avx2 " + both);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(fs::exists(fx.dir / "capped" / "checkpoints" / "step-00000006")) << r.output;
}

// `stretch eval` under mpirun: each rank scores its shard of every length's batches, the sums are all-reduced, and
// rank 0 alone prints and writes: the same tokens, NLL and per-position buckets as one process (the sums added in
// another order), for every protocol that batches differently.
TEST(Distributed, EvalOnTwoRanksGivesOneProcesssResults) {
  SKIP_WITHOUT_MPI();
  Fixture fx;
  auto t = stretch_on(0, fx.train(fx.dir / "ev", 10));
  ASSERT_EQ(t.exit_code, 0) << t.output;
  // (with --keep, attention sinks: each window streamed through the decoder, one window per batch)
  for (const std::string protocol : {"nonoverlapping", "sliding", "nonoverlapping --keep 4 --ctx 16"}) {
    // small batches, so that each length has several for the ranks to share
    const std::string args = "eval " + shell_quote(fx.dir / "ev") + " --text " + shell_quote(fx.dir / "c.txt") +
                             " --protocol " + protocol + " --lengths 32,64 --batch-tokens 256 --threads 1 --json ";
    auto one = stretch_on(0, args + shell_quote(fx.dir / "one.json"));
    ASSERT_EQ(one.exit_code, 0) << one.output;
    auto two = stretch_on(2, args + shell_quote(fx.dir / "two.json"));
    ASSERT_EQ(two.exit_code, 0) << two.output;
    EXPECT_EQ(two.output.find("length"), two.output.rfind("length")) << two.output;  // one table, rank 0's
    auto a = nlohmann::json::parse(test::read_text(fx.dir / "one.json"))["models"][0]["results"];
    auto b = nlohmann::json::parse(test::read_text(fx.dir / "two.json"))["models"][0]["results"];
    ASSERT_EQ(a.size(), 2u);
    ASSERT_EQ(b.size(), 2u);
    for (std::size_t i = 0; i < 2; i++) {
      EXPECT_EQ(a[i]["tokens"], b[i]["tokens"]) << protocol;
      EXPECT_GT(a[i]["tokens"].get<long>(), 1000) << protocol;
      EXPECT_NEAR(a[i]["nll"].get<double>(), b[i]["nll"].get<double>(), 1e-12) << protocol;
      EXPECT_NEAR(a[i]["stderr_nll"].get<double>(), b[i]["stderr_nll"].get<double>(), 1e-12) << protocol;
      ASSERT_EQ(a[i]["nll_by_position"].size(), b[i]["nll_by_position"].size());
      for (std::size_t k = 0; k < a[i]["nll_by_position"].size(); k++)
        EXPECT_NEAR(a[i]["nll_by_position"][k].get<double>(), b[i]["nll_by_position"][k].get<double>(), 1e-12);
    }
  }
}

// `stretch passkey` under mpirun: the trials are split across the ranks, rank 0 alone prints and writes, and the
// results are one process's.
TEST(Distributed, PasskeyOnTwoRanksGivesOneProcesssResults) {
  SKIP_WITHOUT_MPI();
  Fixture fx;
  auto t = stretch_on(0, fx.train(fx.dir / "pk", 10));
  ASSERT_EQ(t.exit_code, 0) << t.output;
  const std::string args = "passkey " + shell_quote(fx.dir / "pk") +
                           " --lengths 260,330 --depths 0,1 --trials 3 --answer-tokens 4 --threads 1 --json ";
  auto one = stretch_on(0, args + shell_quote(fx.dir / "one.json"));
  ASSERT_EQ(one.exit_code, 0) << one.output;
  auto two = stretch_on(2, args + shell_quote(fx.dir / "two.json"));
  ASSERT_EQ(two.exit_code, 0) << two.output;
  EXPECT_EQ(two.output.find("accuracy"), two.output.rfind("accuracy")) << two.output;  // one table, rank 0's
  auto a = nlohmann::json::parse(test::read_text(fx.dir / "one.json"));
  auto b = nlohmann::json::parse(test::read_text(fx.dir / "two.json"));
  auto strip = [](nlohmann::json& j) {
    for (auto& c : j["models"][0]["cells"])
      for (auto& tr : c["trials"]) tr.erase("seconds");
  };
  strip(a);
  strip(b);
  ASSERT_EQ(a["models"][0]["cells"].size(), 4u);
  EXPECT_EQ(a, b);
}

// The pid of the process whose environment says it is rank `rank` and whose command line mentions `marker`.
pid_t find_rank(int rank, const std::string& marker) {
  const std::string want = "OMPI_COMM_WORLD_RANK=" + std::to_string(rank);
  std::error_code ec;
  for (auto it = fs::directory_iterator("/proc", ec); !ec && it != fs::directory_iterator(); it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    const std::string cmdline = test::read_text(it->path() / "cmdline");
    if (cmdline.find(marker) == std::string::npos || cmdline.find("mpirun") != std::string::npos) continue;
    const std::string env = test::read_text(it->path() / "environ");
    std::size_t at = 0;
    while ((at = env.find(want, at)) != std::string::npos) {
      const bool whole = (at == 0 || env[at - 1] == '\0') && (at + want.size() == env.size() || env[at + want.size()] == '\0');
      if (whole) return static_cast<pid_t>(std::stol(name));
      at += want.size();
    }
  }
  return -1;
}

TEST(Distributed, AKilledRankStopsTheJobWithinSecondsAndTheCheckpointLoads) {
  SKIP_WITHOUT_MPI();
  Fixture fx;
  const fs::path run = fx.dir / "killed";
  const fs::path log = fx.dir / "killed.log";
  const std::string cmd = mpirun(2) + STRETCH_BINARY + " " + fx.train(run, 1000000) + " > " + shell_quote(log) + " 2>&1";
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  // wait for a checkpoint past the first, then kill rank 1 (not rank 0, which writes them)
  const auto t0 = std::chrono::steady_clock::now();
  auto seconds = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); };
  pid_t victim = -1;
  while (seconds() < 120) {
    const auto cks = list_checkpoints(run);
    if (!cks.empty() && checkpoint_step(cks.back()) >= 20) {
      victim = find_rank(1, run.string());
      if (victim > 0) break;
    }
    ::usleep(50000);
  }
  if (victim <= 0) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    FAIL() << "rank 1 not found or no checkpoint after 120 s; log:\n" << test::read_text(log);
  }
  ASSERT_EQ(::kill(victim, SIGKILL), 0);
  const auto t_kill = std::chrono::steady_clock::now();
  int status = 0;
  pid_t done = 0;
  while ((done = ::waitpid(pid, &status, WNOHANG)) == 0 &&
         std::chrono::steady_clock::now() - t_kill < std::chrono::seconds(60))
    ::usleep(20000);
  const double stop_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_kill).count();
  if (done == 0) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
  }
  const std::string out = test::read_text(log);
  ASSERT_EQ(done, pid) << "the job still ran 60 s after rank 1 died; log:\n" << out;
  EXPECT_LT(stop_s, 15.0) << out;
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) != 0) << out;
  EXPECT_NE(out.find("rank 1"), std::string::npos) << out;  // mpirun names the rank that died
  // and rank 0, ended by mpirun's SIGTERM, says why and where the checkpoint is
  EXPECT_NE(out.find("rank 0: stopped by SIGTERM"), std::string::npos) << out;
  EXPECT_EQ(find_rank(0, run.string()), -1) << "rank 0 outlived the job";

  // every checkpoint left is whole and loads, and the run goes on from the newest with one rank
  const auto cks = list_checkpoints(run);
  ASSERT_FALSE(cks.empty());
  for (const auto& d : cks) {
    EXPECT_TRUE(is_complete_checkpoint(d)) << d;
    EXPECT_NO_THROW(load_model(read_checkpoint_meta(d))) << d;
  }
  const long step = checkpoint_step(cks.back());
  auto r = stretch_on(0, fx.train(run, 1000000) + " --resume --stop-after 5");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(checkpoint_step(list_checkpoints(run).back()), step + 5);
}

}  // namespace
}  // namespace stretch
