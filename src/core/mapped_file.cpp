#include "core/mapped_file.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <utility>

#include "core/error.hpp"

namespace stretch {

namespace {

// Closes a descriptor when the scope ends.
struct Fd {
  int fd;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

std::string read_all(int fd, const std::filesystem::path& path) {
  std::string out;
  char buf[1 << 16];
  for (;;) {
    const ssize_t r = ::read(fd, buf, sizeof buf);
    if (r < 0) {
      if (errno == EINTR) continue;
      throw InputError(path.string() + ": read failed: " + std::strerror(errno));
    }
    if (r == 0) return out;
    out.append(buf, static_cast<std::size_t>(r));
  }
}

}  // namespace

MappedFile MappedFile::open(const std::filesystem::path& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) throw InputError(path.string() + ": no such file");
  if (std::filesystem::is_directory(path, ec)) throw InputError(path.string() + ": is a directory, expected a file");
  Fd f{::open(path.c_str(), O_RDONLY | O_CLOEXEC)};
  if (f.fd < 0) throw InputError(path.string() + ": cannot open for reading: " + std::strerror(errno));
  struct stat st {};
  if (::fstat(f.fd, &st) != 0) throw InputError(path.string() + ": cannot stat: " + std::strerror(errno));
  if (S_ISDIR(st.st_mode)) throw InputError(path.string() + ": is a directory, expected a file");
  if (!S_ISREG(st.st_mode)) return hold(read_all(f.fd, path));  // a pipe or device: read what it gives
  MappedFile m;
  if (st.st_size == 0) return m;  // mmap refuses length 0; an empty file has no bytes
  const auto size = static_cast<std::size_t>(st.st_size);
  void* p = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, f.fd, 0);
  if (p == MAP_FAILED) throw InputError(path.string() + ": cannot map for reading: " + std::strerror(errno));
  m.map_ = p;
  m.data_ = static_cast<const char*>(p);
  m.size_ = size;
  return m;  // the mapping outlives the descriptor
}

MappedFile MappedFile::hold(std::string bytes) {
  MappedFile m;
  m.held_ = std::make_unique<std::string>(std::move(bytes));
  m.data_ = m.held_->data();
  m.size_ = m.held_->size();
  return m;
}

MappedFile::MappedFile(MappedFile&& o) noexcept
    : data_(std::exchange(o.data_, nullptr)),
      size_(std::exchange(o.size_, 0)),
      map_(std::exchange(o.map_, nullptr)),
      held_(std::move(o.held_)) {}

MappedFile& MappedFile::operator=(MappedFile&& o) noexcept {
  if (this != &o) {
    unmap();
    data_ = std::exchange(o.data_, nullptr);
    size_ = std::exchange(o.size_, 0);
    map_ = std::exchange(o.map_, nullptr);
    held_ = std::move(o.held_);
  }
  return *this;
}

MappedFile::~MappedFile() { unmap(); }

void MappedFile::unmap() noexcept {
  if (map_) ::munmap(map_, size_);
  map_ = nullptr;
  data_ = nullptr;
  size_ = 0;
  held_.reset();
}

std::size_t MappedFile::page_size() {
  static const auto page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  return page;
}

void MappedFile::release(std::size_t offset, std::size_t n) const {
  if (!map_ || offset >= size_) return;
  if (n > size_ - offset) n = size_ - offset;
  const std::uintptr_t page = page_size();
  const auto base = reinterpret_cast<std::uintptr_t>(map_);  // page-aligned
  const std::uintptr_t begin = (base + offset + page - 1) / page * page;
  std::uintptr_t end = (base + offset + n) / page * page;
  // the file's last page is the mapping's own, whatever of it lies past the end: release it whole
  if (offset + n == size_) end = (base + size_ + page - 1) / page * page;
  if (end <= begin) return;
  ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
}

}  // namespace stretch
