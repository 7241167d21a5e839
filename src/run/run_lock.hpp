// One writer per run folder. train, finetune and import hold an exclusive lock on RUN/.lock for as long as they
// write the folder; a second writer is refused at once, with the holder's pid, instead of both exiting 0 while one
// run's checkpoints and metrics silently replace the other's.
//
// The lock is flock(2) on the file, not the file's existence: the kernel drops it when its holder exits however it
// exits (SIGKILL, OOM, power loss and reboot), so a lock left by a killed process never blocks a resume. The file
// stays (removing it would race with a process about to lock it) and holds the last holder's pid, for the
// message. Among MPI ranks only rank 0 writes the folder and takes the lock.
#pragma once
#include <filesystem>
#include <string>
#include <vector>

namespace stretch {

class RunLock {
 public:
  // Locks `dir` (which must exist). UsageError naming `flag`, the folder and the holder's pid when another
  // process holds the lock; IoError when the lock file cannot be created.
  static RunLock acquire(const std::filesystem::path& dir, const std::string& flag);
  RunLock(RunLock&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  RunLock& operator=(RunLock&&) = delete;
  RunLock(const RunLock&) = delete;
  ~RunLock();

 private:
  explicit RunLock(int fd) : fd_(fd) {}
  int fd_ = -1;
};

// The --out folder of an import: must not hold a run yet; created when missing and locked. Unless keep() is
// called (the import succeeded), the destructor removes what the import wrote: the whole folder when it created
// it, else the files it names with wrote(), its checkpoints/ and its lock file (a failed import leaves --out as it
// found it).
class NewRunFolder {
 public:
  NewRunFolder(const std::filesystem::path& dir, const std::string& flag);
  ~NewRunFolder();
  NewRunFolder(const NewRunFolder&) = delete;
  NewRunFolder& operator=(const NewRunFolder&) = delete;
  const std::filesystem::path& path() const { return dir_; }
  // Call before writing `p`: removed on failure unless it existed already.
  void wrote(const std::filesystem::path& p) {
    std::error_code ec;
    if (!std::filesystem::exists(p, ec)) written_.push_back(p);
  }
  void keep() { keep_ = true; }

 private:
  std::filesystem::path dir_;
  bool created_ = false;
  bool keep_ = false;
  std::vector<std::filesystem::path> written_;
  RunLock lock_;
};

}  // namespace stretch
