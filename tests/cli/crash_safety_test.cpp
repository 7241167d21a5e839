// Crash safety of `stretch train`: SIGKILL at random moments (during steps, during checkpoint writes) always
// leaves only whole checkpoints, the newest of which resumes; a file-size limit (a full disk) makes a checkpoint
// write fail with a clear error and keeps the previous checkpoint; --nonfinite takes only its two values.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "io/safetensors.hpp"
#include "kernels/grad_norm.hpp"
#include "run/checkpoint.hpp"
#include "test_util.hpp"

namespace stretch {
namespace {
namespace fs = std::filesystem;
using test::TempDir;

// Starts the stretch binary with `args`, stdout and stderr into `log`; with fsize_limit > 0 the child gets that
// RLIMIT_FSIZE and ignores SIGXFSZ, so a write past the limit fails with EFBIG (as a full disk fails with ENOSPC).
pid_t spawn_stretch(const std::vector<std::string>& args, const fs::path& log, rlim_t fsize_limit = 0) {
  std::vector<std::string> all{STRETCH_BINARY};
  all.insert(all.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : all) argv.push_back(a.data());
  argv.push_back(nullptr);
  const std::string log_path = log.string();
  const pid_t pid = ::fork();
  if (pid == 0) {  // only async-signal-safe calls until exec
    int fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) ::_exit(127);
    ::dup2(fd, 1);
    ::dup2(fd, 2);
    ::close(fd);
    if (fsize_limit > 0) {
      ::signal(SIGXFSZ, SIG_IGN);
      struct rlimit rl = {fsize_limit, fsize_limit};
      if (::setrlimit(RLIMIT_FSIZE, &rl) != 0) ::_exit(126);
    }
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  return pid;
}

// Waits for the child; returns its exit code, or 128 + signal.
int wait_child(pid_t pid) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) return -1;
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

int run_to_end(const std::vector<std::string>& args, const fs::path& log, rlim_t fsize_limit = 0) {
  return wait_child(spawn_stretch(args, log, fsize_limit));
}

long newest_step(const fs::path& run) {
  auto s = list_checkpoints(run);
  return s.empty() ? 0 : checkpoint_step(s.back());
}

bool has_tmp_entries(const fs::path& run) {
  std::error_code ec;
  for (auto it = fs::directory_iterator(run / "checkpoints", ec); !ec && it != fs::directory_iterator();
       it.increment(ec))
    if (it->path().filename().string().find(".tmp") != std::string::npos) return true;
  return false;
}

// Every step-* folder is whole and loads (config, weights, optimizer state, at the step its name says);
// `latest`, when present, names one of them. Returns how many there are.
int check_every_checkpoint_loads(const fs::path& run, const std::string& when) {
  int n = 0;
  std::error_code ec;
  for (auto it = fs::directory_iterator(run / "checkpoints", ec); !ec && it != fs::directory_iterator();
       it.increment(ec)) {
    const fs::path d = it->path();
    if (checkpoint_step(d) < 0) continue;
    n++;
    EXPECT_TRUE(is_complete_checkpoint(d)) << when << ": half-written checkpoint folder " << d;
    if (!is_complete_checkpoint(d)) continue;
    try {
      CheckpointMeta meta = read_checkpoint_meta(d);
      auto model = load_model(meta);
      TrainState st;
      Buffer<float> m, v;
      load_train_state(meta, *model, st, m, v);
      EXPECT_EQ(st.step, checkpoint_step(d)) << when << ": " << d;
      EXPECT_EQ(count_nonfinite(model->params().data(), model->params().size()), 0u) << when << ": " << d;
    } catch (const std::exception& e) {
      ADD_FAILURE() << when << ": checkpoint " << d << " does not load: " << e.what();
    }
  }
  if (fs::exists(run / "checkpoints" / "latest")) {
    std::string name = test::read_text(run / "checkpoints" / "latest");
    if (!name.empty() && name.back() == '\n') name.pop_back();
    EXPECT_TRUE(is_complete_checkpoint(run / "checkpoints" / name)) << when << ": latest names '" << name << "'";
  }
  return n;
}

void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, static_cast<long>(ms % 1000) * 1000000L};
  while (::nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

struct Fixture {
  TempDir dir;
  std::vector<std::string> base(const fs::path& run, long steps) const {
    return {"train",         "--text",    (dir / "c.txt").string(), "--out",   run.string(),
            "--cache-dir",   (dir / "cache").string(), "--layers", "2", "--width", "64",
            "--heads",       "4",         "--length", "32",     "--batch",  "8",
            "--steps",       std::to_string(steps),   "--warmup", "0",      "--eval-interval",
            "0",             "--eval-tokens", "512",  "--threads", "1",     "--quiet"};
  }
  Fixture() { test::write_text(dir / "c.txt", test::generated_text(60000)); }
};

std::vector<std::string> with(std::vector<std::string> a, std::initializer_list<std::string> more) {
  a.insert(a.end(), more);
  return a;
}

TEST(CrashSafety, SigkillAtRandomMomentsAlwaysLeavesAWholeCheckpointThatResumes) {
  Fixture fx;
  const fs::path run = fx.dir / "run";
  // A step takes 5-12 ms on one thread and a checkpoint write (1.4 MB, four fsynced files) 5-60 ms, depending on the
  // host and its load; each killed session advances at most about delay / step time steps, and they add up over the
  // 24 sessions. The run must never reach its end before a kill (the test would then fail for a reason that has
  // nothing to do with crash safety, as it did on a fast host with 500 steps): 24 sessions of at most 260 ms make at
  // most about 24 x 53 = 1,270 steps even at 5 ms a step, well under 3,000.
  const long steps = 3000;
  const auto train = with(fx.base(run, steps), {"--ckpt-interval", "2", "--keep-checkpoints", "2"});
  // the token cache first, so every start below costs the same
  ASSERT_EQ(run_to_end(with(fx.base(fx.dir / "warm", 1), {}), fx.dir / "warm.log"), 0)
      << test::read_text(fx.dir / "warm.log");

  std::mt19937 rng(20261123);
  std::uniform_int_distribution<int> delay_ms(20, 260);
  const int kills_wanted = 24;
  int kills = 0, during_write = 0, before_first_new = 0, between = 0;
  long last_newest = 0;
  for (int i = 0; i < kills_wanted; i++) {
    const bool resume = !list_checkpoints(run).empty();
    const long before = newest_step(run);
    const fs::path log = fx.dir / ("kill-" + std::to_string(i) + ".log");
    const pid_t pid = spawn_stretch(resume ? with(train, {"--resume"}) : train, log);
    ASSERT_GT(pid, 0);
    sleep_ms(delay_ms(rng));
    ::kill(pid, SIGKILL);
    const int rc = wait_child(pid);
    ASSERT_EQ(rc, 128 + SIGKILL) << "the run ended before its kill (raise --steps): " << test::read_text(log);
    kills++;
    const std::string when = "after kill " + std::to_string(i);
    // where it landed: inside a checkpoint write leaves a hidden temporary; otherwise in a step (or start-up)
    if (has_tmp_entries(run)) during_write++;
    else if (newest_step(run) == before) before_first_new++;
    else between++;

    check_every_checkpoint_loads(run, when);
    const long newest = newest_step(run);
    EXPECT_GE(newest, last_newest) << when << ": the newest checkpoint went back";
    // --resume continues from the newest complete checkpoint and reaches the next one
    const fs::path log2 = fx.dir / ("resume-" + std::to_string(i) + ".log");
    const int rc2 = run_to_end(newest > 0 ? with(train, {"--resume", "--stop-after", "1"})
                                          : with(train, {"--stop-after", "1"}),
                               log2);
    ASSERT_EQ(rc2, 0) << when << ": " << test::read_text(log2);
    EXPECT_EQ(newest_step(run), newest + 1) << when;
    EXPECT_FALSE(has_tmp_entries(run)) << when << ": debris left after a clean resume";
    last_newest = newest + 1;
  }
  ASSERT_LT(last_newest, steps);
  std::printf("[crash-safety] %d kills: %d during a checkpoint write, %d before the session's first new checkpoint "
              "(start-up, resume or first steps), %d in a later step; step %ld of %ld reached before the final run\n",
              kills, during_write, before_first_new, between, last_newest, steps);
  EXPECT_EQ(kills, kills_wanted);

  // to the end: the final step count, and the same weights as a run never interrupted (same thread count)
  ASSERT_EQ(run_to_end(with(fx.base(run, steps), {"--resume", "--ckpt-interval", "100", "--keep-checkpoints", "2"}),
                       fx.dir / "final.log"),
            0)
      << test::read_text(fx.dir / "final.log");
  EXPECT_EQ(newest_step(run), steps);
  EXPECT_EQ(check_every_checkpoint_loads(run, "at the end"), 2);
  const fs::path whole = fx.dir / "whole";
  ASSERT_EQ(run_to_end(with(fx.base(whole, steps), {"--ckpt-interval", "0"}), fx.dir / "whole.log"), 0)
      << test::read_text(fx.dir / "whole.log");
  auto a = SafetensorsReader::open(resolve_checkpoint(run) / "model.safetensors");
  auto b = SafetensorsReader::open(resolve_checkpoint(whole) / "model.safetensors");
  for (auto& t : a.tensors()) EXPECT_EQ(a.read_f32(t.name), b.read_f32(t.name)) << t.name;
}

TEST(CrashSafety, FileSizeLimitFailsTheCheckpointClearlyAndKeepsThePreviousOne) {
  Fixture fx;
  const fs::path run = fx.dir / "run";
  const auto train = with(fx.base(run, 6), {"--ckpt-interval", "2"});
  ASSERT_EQ(run_to_end(with(train, {"--stop-after", "2"}), fx.dir / "a.log"), 0) << test::read_text(fx.dir / "a.log");
  ASSERT_EQ(newest_step(run), 2);
  const auto model_bytes = fs::file_size(run / "checkpoints" / "step-00000002" / "model.safetensors");
  // config.json, state.json, metrics.jsonl fit; model.safetensors (about 440 kB) does not
  const rlim_t limit = 64 * 1024;
  ASSERT_GT(model_bytes, limit);
  const int rc = run_to_end(with(train, {"--resume"}), fx.dir / "b.log", limit);
  const std::string out = test::read_text(fx.dir / "b.log");
  EXPECT_EQ(rc, 6) << out;  // IoError
  EXPECT_NE(out.find("model.safetensors"), std::string::npos) << out;
  EXPECT_NE(out.find("File too large"), std::string::npos) << out;
  EXPECT_NE(out.find("previous checkpoint"), std::string::npos) << out;
  EXPECT_NE(out.find("step-00000002"), std::string::npos) << out;
  // the previous checkpoint is whole and newest; the failed write left nothing behind
  EXPECT_EQ(check_every_checkpoint_loads(run, "after the failed write"), 1);
  EXPECT_EQ(newest_step(run), 2);
  EXPECT_FALSE(has_tmp_entries(run));
  // without the limit, the run resumes from it and completes
  ASSERT_EQ(run_to_end(with(train, {"--resume"}), fx.dir / "c.log"), 0) << test::read_text(fx.dir / "c.log");
  EXPECT_EQ(newest_step(run), 6);
  check_every_checkpoint_loads(run, "after the resume");
}

TEST(CrashSafety, NonfiniteFlagTakesStopOrSkipOnly) {
  Fixture fx;
  const fs::path run = fx.dir / "run";
  const int rc = run_to_end(with(fx.base(run, 2), {"--nonfinite", "ignore"}), fx.dir / "a.log");
  const std::string out = test::read_text(fx.dir / "a.log");
  EXPECT_EQ(rc, 2) << out;
  EXPECT_NE(out.find("--nonfinite"), std::string::npos) << out;
  EXPECT_NE(out.find("'ignore'"), std::string::npos) << out;
  EXPECT_FALSE(fs::exists(run / "checkpoints"));
  EXPECT_EQ(run_to_end(with(fx.base(run, 2), {"--nonfinite", "skip"}), fx.dir / "b.log"), 0)
      << test::read_text(fx.dir / "b.log");
  EXPECT_EQ(newest_step(run), 2);
}

// Lines in the run's metrics.jsonl so far (a running run's progress; --log-interval 1 logs every step).
int metric_lines(const fs::path& run) {
  const std::string m = test::read_text(run / "metrics.jsonl");
  return static_cast<int>(std::count(m.begin(), m.end(), '\n'));
}

// Waits (up to 120 s) until the running run has logged `lines` lines; false if the child ended first.
bool wait_for_progress(pid_t pid, const fs::path& run, int lines) {
  for (int i = 0; i < 12000; i++) {
    std::error_code ec;
    if (fs::exists(run / "metrics.jsonl", ec) && metric_lines(run) >= lines) return true;
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid) return false;
    sleep_ms(10);
  }
  return false;
}

// SIGTERM and SIGINT (outside MPI) finish the step, write a checkpoint, exit 143 / 130 naming it; the run resumes
// from it to the same weights as a run never interrupted.
TEST(CrashSafety, SigtermAndSigintStopCleanlyAtACheckpointThatResumesExactly) {
  Fixture fx;
  for (int sig : {SIGTERM, SIGINT}) {
    const fs::path run = fx.dir / ("run-" + std::to_string(sig));
    const long steps = 200000;  // never reached: the signal ends the session
    const auto train = with(fx.base(run, steps), {"--ckpt-interval", "0", "--log-interval", "1"});
    const fs::path log = fx.dir / ("sig-" + std::to_string(sig) + ".log");
    const pid_t pid = spawn_stretch(train, log);
    ASSERT_TRUE(wait_for_progress(pid, run, 3)) << test::read_text(log);
    ::kill(pid, sig);
    const int rc = wait_child(pid);
    const std::string out = test::read_text(log);
    ASSERT_EQ(rc, 128 + sig) << out;
    const long at = newest_step(run);
    ASSERT_GE(at, 3) << out;
    const std::string name = (sig == SIGTERM ? "SIGTERM" : "SIGINT");
    EXPECT_NE(out.find("stopped by " + name + " at step " + std::to_string(at)), std::string::npos) << out;
    char dir[32];
    std::snprintf(dir, sizeof dir, "step-%08ld", at);
    EXPECT_NE(out.find(dir), std::string::npos) << out;
    EXPECT_EQ(check_every_checkpoint_loads(run, "after " + name), 1);
    // the session's last metrics line says it stopped; a resume goes on from the checkpoint
    ASSERT_EQ(run_to_end(with(train, {"--resume", "--stop-after", "4"}), fx.dir / "resume.log"), 0)
        << test::read_text(fx.dir / "resume.log");
    EXPECT_EQ(newest_step(run), at + 4);
    const fs::path whole = fx.dir / ("whole-" + std::to_string(sig));
    ASSERT_EQ(run_to_end(with(fx.base(whole, steps), {"--ckpt-interval", "0", "--stop-after", std::to_string(at + 4)}),
                         fx.dir / "whole.log"),
              0)
        << test::read_text(fx.dir / "whole.log");
    auto a = SafetensorsReader::open(resolve_checkpoint(run) / "model.safetensors");
    auto b = SafetensorsReader::open(resolve_checkpoint(whole) / "model.safetensors");
    for (auto& t : a.tensors()) EXPECT_EQ(a.read_f32(t.name), b.read_f32(t.name)) << name << " " << t.name;
  }
}

// The stop signals never interrupt a compute thread: oneDNN 2.6's JIT GEMM kernels point rsp into the heap while
// they run, and a signal frame pushed there corrupted malloc (the clean stop aborted about one time in ten). While
// a two-thread run trains, every thread but the one named "stretch-signals" blocks SIGTERM and SIGINT, and that
// one exists; then stop after stop (each resuming the last) ends cleanly.
std::uint64_t status_mask(const std::string& status, const std::string& key) {
  const std::size_t at = status.find("\n" + key + ":");
  if (at == std::string::npos) return 0;
  return std::stoull(status.substr(at + key.size() + 2, 32), nullptr, 16);
}

TEST(CrashSafety, StopSignalsAreTakenOnTheirOwnThreadNeverOnAComputeThread) {
  Fixture fx;
  const fs::path run = fx.dir / "run";
  auto train = with(fx.base(run, 200000), {"--ckpt-interval", "0", "--log-interval", "1"});
  for (std::size_t i = 0; i + 1 < train.size(); i++)
    if (train[i] == "--threads") train[i + 1] = "2";  // OpenMP workers exist while it trains
  const std::uint64_t stops = (1ULL << (SIGTERM - 1)) | (1ULL << (SIGINT - 1));
  const pid_t pid = spawn_stretch(train, fx.dir / "a.log");
  ASSERT_TRUE(wait_for_progress(pid, run, 2)) << test::read_text(fx.dir / "a.log");
  int threads = 0, signal_threads = 0;
  std::string seen;
  for (const auto& task : fs::directory_iterator("/proc/" + std::to_string(pid) + "/task")) {
    std::string comm = test::read_text(task.path() / "comm");
    comm.erase(comm.find_last_not_of('\n') + 1);
    const std::string status = test::read_text(task.path() / "status");
    const std::uint64_t blocked = status_mask(status, "SigBlk");
    seen += task.path().filename().string() + " " + comm + " SigBlk " + std::to_string(blocked) + "\n";
    threads++;
    if (comm == "stretch-signals") {
      signal_threads++;
      EXPECT_EQ(blocked & stops, 0u) << "the signal thread blocks a stop signal\n" << seen;
    } else {
      EXPECT_EQ(blocked & stops, stops) << "a compute thread can be interrupted by SIGTERM or SIGINT\n" << seen;
    }
    EXPECT_EQ(status_mask(status, "SigCgt") & stops, stops) << "no handler for SIGTERM and SIGINT\n" << seen;
  }
  EXPECT_EQ(signal_threads, 1) << seen;
  EXPECT_GE(threads, 3) << "expected the main thread, an OpenMP worker and the signal thread\n" << seen;
  ::kill(pid, SIGTERM);
  ASSERT_EQ(wait_child(pid), 128 + SIGTERM) << test::read_text(fx.dir / "a.log");
  for (int i = 0; i < 6; i++) {  // before the fix, about half of such series had an abort in them
    const fs::path log = fx.dir / ("stop-" + std::to_string(i) + ".log");
    const long before = newest_step(run);
    const pid_t p = spawn_stretch(with(train, {"--resume"}), log);
    ASSERT_TRUE(wait_for_progress(p, run, static_cast<int>(before) + 2)) << test::read_text(log);
    const int sig = i % 2 ? SIGINT : SIGTERM;
    ::kill(p, sig);
    ASSERT_EQ(wait_child(p), 128 + sig) << test::read_text(log);
    EXPECT_GT(newest_step(run), before) << test::read_text(log);
  }
  EXPECT_GE(check_every_checkpoint_loads(run, "after the stops"), 1);
}

// A second signal does not wait for the step: the process dies of it (steps here take long enough for both
// signals to land inside one), writing nothing.
TEST(CrashSafety, ASecondSignalExitsAtOnce) {
  Fixture fx;
  const fs::path run = fx.dir / "run";
  auto train = fx.base(run, 200000);
  for (std::size_t i = 0; i + 1 < train.size(); i++) {  // slower steps: width 256, length 256
    if (train[i] == "--width") train[i + 1] = "256";
    if (train[i] == "--length") train[i + 1] = "256";
  }
  train = with(train, {"--ckpt-interval", "0", "--log-interval", "1"});
  const pid_t pid = spawn_stretch(train, fx.dir / "a.log");
  ASSERT_TRUE(wait_for_progress(pid, run, 2)) << test::read_text(fx.dir / "a.log");
  ::kill(pid, SIGTERM);
  sleep_ms(5);
  ::kill(pid, SIGTERM);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  const std::string out = test::read_text(fx.dir / "a.log");
  ASSERT_TRUE(WIFSIGNALED(status)) << "expected death by the second signal, got exit " << WEXITSTATUS(status) << "\n"
                                   << out;
  EXPECT_EQ(WTERMSIG(status), SIGTERM);
  EXPECT_NE(out.find("signal again to exit at once"), std::string::npos) << out;
  EXPECT_TRUE(list_checkpoints(run).empty());
}

// Two writers of one run folder: the second is refused at once, naming the first's pid; once the first is killed
// (its lock dies with it), a resume is not blocked by what it left.
TEST(CrashSafety, OneWriterPerRunFolder) {
  Fixture fx;
  const fs::path run = fx.dir / "run";
  const auto train = with(fx.base(run, 200000), {"--ckpt-interval", "5", "--log-interval", "1"});
  const pid_t pid = spawn_stretch(train, fx.dir / "a.log");
  ASSERT_TRUE(wait_for_progress(pid, run, 8)) << test::read_text(fx.dir / "a.log");
  for (const auto& second : {train, with(train, {"--resume"})}) {
    const int rc = run_to_end(second, fx.dir / "b.log");
    const std::string out = test::read_text(fx.dir / "b.log");
    EXPECT_EQ(rc, 2) << out;
    EXPECT_NE(out.find("being written by another stretch process (pid " + std::to_string(pid) + ")"), std::string::npos)
        << out;
  }
  // an import into it is refused too (it holds a run, and is locked)
  ::kill(pid, SIGKILL);
  ASSERT_EQ(wait_child(pid), 128 + SIGKILL);
  ASSERT_GE(newest_step(run), 5);
  EXPECT_TRUE(fs::exists(run / ".lock"));  // left by the killed process: it must not block
  ASSERT_EQ(run_to_end(with(train, {"--resume", "--stop-after", "2"}), fx.dir / "c.log"), 0)
      << test::read_text(fx.dir / "c.log");
}

}  // namespace
}  // namespace stretch
