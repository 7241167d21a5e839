// Helpers shared by the tests: temporary folders, shared data lookup, running the stretch binary.
#pragma once
#include <gtest/gtest.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>
#include <sys/wait.h>

namespace stretch::test {

// Expects `what` to throw E whose message contains every string in `parts`.
template <class E, class Fn>
void expect_message(Fn&& what, const std::vector<std::string>& parts) {
  try {
    what();
    ADD_FAILURE() << "no exception";
  } catch (const E& e) {
    const std::string m = e.what();
    for (const auto& p : parts) EXPECT_NE(m.find(p), std::string::npos) << "'" << p << "' not in: " << m;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "wrong exception type: " << e.what();
  }
}

// A fresh folder under the system temp dir, removed at destruction.
struct TempDir {
  std::filesystem::path path;
  TempDir() {
    std::random_device rd;
    path = std::filesystem::temp_directory_path() /
           ("stretch-test-" + std::to_string(::getpid()) + "-" + std::to_string(rd()));
    std::filesystem::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  std::filesystem::path operator/(const std::string& s) const { return path / s; }
};

// ../shared/data beside the repository (absent on a fresh clone: tests that need it skip).
inline std::filesystem::path shared_data() {
  return std::filesystem::path(STRETCH_SOURCE_DIR) / ".." / "shared" / "data";
}

inline void write_text(const std::filesystem::path& p, const std::string& s) {
  std::ofstream out(p, std::ios::binary);
  out << s;
}

inline std::string read_text(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// A small English-like corpus generated from a fixed grammar (used when ../shared/data is absent).
inline std::string generated_text(std::size_t bytes, unsigned seed = 7) {
  const char* subj[] = {"the cat", "a little girl", "the old man", "my friend", "the dog", "Tom", "the bird"};
  const char* verb[] = {"saw", "liked", "found", "wanted", "made", "took", "helped"};
  const char* obj[] = {"a red ball", "the big tree", "some bread", "a small box", "the blue sky", "a nice hat"};
  const char* tail[] = {" in the park", " at home", " after lunch", "", " with joy", " by the river"};
  std::mt19937 g(seed);
  std::string s;
  while (s.size() < bytes) {
    s += subj[g() % 7];
    s += " ";
    s += verb[g() % 7];
    s += " ";
    s += obj[g() % 6];
    s += tail[g() % 6];
    s += (g() % 5 == 0) ? ".\n" : ". ";
  }
  s[0] = 'T';
  return s;
}

// A path quoted for the shell (single quotes).
inline std::string shell_quote(const std::filesystem::path& p) {
  std::string s(1, '\'');
  for (char c : p.string()) {
    if (c == '\'') s += "'\\''";
    else s.push_back(c);
  }
  s.push_back('\'');
  return s;
}

struct RunResult {
  int exit_code;
  std::string output;  // stdout and stderr together
};

// Runs a shell command line, stdout and stderr together.
inline RunResult run_shell(const std::string& cmd) {
  RunResult r{-1, ""};
  FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
  if (!p) return r;
  std::array<char, 4096> buf;
  std::size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) r.output.append(buf.data(), n);
  int status = ::pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

// Runs the stretch binary with `args` (a shell-quoted string).
inline RunResult run_stretch(const std::string& args) { return run_shell(std::string(STRETCH_BINARY) + " " + args); }

}  // namespace stretch::test
