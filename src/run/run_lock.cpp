#include "run/run_lock.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "core/error.hpp"

namespace stretch {
namespace fs = std::filesystem;

RunLock RunLock::acquire(const fs::path& dir, const std::string& flag) {
  const fs::path path = dir / ".lock";
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) throw IoError(path.string() + ": cannot create the run's lock file: " + std::strerror(errno));
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    char buf[32] = {};
    const ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
    ::close(fd);
    if (err != EWOULDBLOCK)
      throw IoError(path.string() + ": cannot lock the run folder: " + std::strerror(err));
    std::string pid(buf, n > 0 ? static_cast<std::size_t>(n) : 0);
    while (!pid.empty() && (pid.back() == '\n' || pid.back() == ' ')) pid.pop_back();
    if (pid.empty() || pid.find_first_not_of("0123456789") != std::string::npos) pid = "unknown";
    throw UsageError(flag + ": " + dir.string() + " is being written by another stretch process (pid " + pid +
                     "); wait for it to finish, or choose another folder");
  }
  const std::string pid = std::to_string(::getpid()) + "\n";
  // the pid is for messages only: a failure to record it does not stop the run
  if (::ftruncate(fd, 0) == 0) {
    const ssize_t ignored = ::pwrite(fd, pid.data(), pid.size(), 0);
    (void)ignored;
  }
  return RunLock(fd);
}

RunLock::~RunLock() {
  if (fd_ >= 0) ::close(fd_);  // closing the last descriptor releases the flock
}

namespace {
// Creates `dir` when missing (says whether it did); IoError naming it otherwise.
bool create_folder(const fs::path& dir) {
  std::error_code ec;
  if (fs::is_directory(dir, ec)) return false;
  fs::create_directories(dir, ec);
  if (ec) throw IoError(dir.string() + ": cannot create the run directory: " + ec.message());
  return true;
}
}  // namespace

NewRunFolder::NewRunFolder(const fs::path& dir, const std::string& flag)
    : dir_(dir), created_(create_folder(dir)), lock_(RunLock::acquire(dir, flag)) {
  std::error_code ec;
  // checked under the lock: no other import can be half-way (a throw here skips the destructor: nothing is removed)
  if (fs::exists(dir / "checkpoints", ec))
    throw UsageError(flag + ": " + dir.string() + " already holds a run (checkpoints/); choose another folder");
}

NewRunFolder::~NewRunFolder() {
  if (keep_) return;
  std::error_code ec;
  if (created_) {
    fs::remove_all(dir_, ec);
    return;
  }
  for (const auto& p : written_) fs::remove_all(p, ec);
  fs::remove_all(dir_ / "checkpoints", ec);  // only ever written by this import (checked absent above)
  fs::remove(dir_ / ".lock", ec);            // still held: nobody else can be using it
}

}  // namespace stretch
