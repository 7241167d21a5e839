// Helpers shared by the io tests: a scratch folder removed at the end, and the shared data location.
#pragma once
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <string>

#include "core/fs.hpp"

namespace stretch::testing {

// A fresh, empty folder under the system temp folder, deleted (with its contents) on destruction.
class TempDir {
 public:
  TempDir() {
    static std::atomic<int> counter{0};
    path_ = std::filesystem::temp_directory_path() /
            ("stretch-io-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }
  // Writes `bytes` to `name` inside the folder and returns the full path.
  std::filesystem::path write(const std::string& name, const std::string& bytes) const {
    auto p = path_ / name;
    write_file_atomic(p, bytes);
    return p;
  }

 private:
  std::filesystem::path path_;
};

// ../shared/data relative to the repository root (absent in a fresh clone: tests needing it skip).
inline std::filesystem::path shared_data_dir() { return std::filesystem::path(STRETCH_SOURCE_DIR "/../shared/data"); }
inline std::filesystem::path test_data_dir() { return std::filesystem::path(STRETCH_SOURCE_DIR "/tests/io/data"); }

}  // namespace stretch::testing
