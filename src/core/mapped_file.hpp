// A whole file's bytes, read-only, without reading it into memory: mmap(PROT_READ, MAP_PRIVATE) of a regular
// file, so a reader touches only the pages it parses or converts, and those pages come from the page cache.
//
// Pages a loader has finished with can be dropped from the process's resident set with release(offset, n):
// madvise(MADV_DONTNEED) on the whole pages inside [offset, offset + n). The mapping is private and never
// written, so the bytes stay readable: a later access faults them in again from the file. A loader that converts
// tensor by tensor into its own buffers and releases each source range afterwards therefore peaks at about the
// size of its destination, not destination + file.
//
// What is not a regular file (a pipe, /dev/stdin) is read into memory instead (same interface; release() does
// nothing there), and MappedFile::hold(bytes) wraps bytes already in memory (parsers given a buffer: tests, fuzz
// targets). An empty file has empty bytes(). The file must not be truncated while mapped (the kernel would raise
// SIGBUS on access past its new end); this project's writers never modify a file in place: they write a
// temporary and rename it, which leaves an existing mapping on the old, unchanged file.
#pragma once
#include <cstddef>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

namespace stretch {

class MappedFile {
 public:
  MappedFile() = default;
  // Maps the file. InputError naming it when it is missing, a directory, unreadable or cannot be mapped.
  static MappedFile open(const std::filesystem::path& path);
  // Holds `bytes` (moved in; nothing is mapped).
  static MappedFile hold(std::string bytes);

  MappedFile(MappedFile&& o) noexcept;
  MappedFile& operator=(MappedFile&& o) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile();

  std::string_view bytes() const { return {data_, size_}; }
  std::size_t size() const { return size_; }
  bool mapped() const { return map_ != nullptr; }

  // Drops the whole pages inside [offset, offset + n) (clamped to the file) from this process's resident set;
  // the bytes stay readable. Nothing happens for held bytes. Never fails (it is advice to the kernel).
  void release(std::size_t offset, std::size_t n) const;
  static std::size_t page_size();

 private:
  void unmap() noexcept;
  const char* data_ = nullptr;
  std::size_t size_ = 0;
  void* map_ = nullptr;  // the mapping (size_ bytes), or null
  std::unique_ptr<std::string> held_;  // bytes held in memory (stable address across moves), or null
};

}  // namespace stretch
