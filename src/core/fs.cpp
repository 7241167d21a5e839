#include "core/fs.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "core/error.hpp"

namespace stretch {
namespace fs = std::filesystem;

std::string read_file(const fs::path& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) throw InputError(path.string() + ": no such file");
  if (fs::is_directory(path, ec)) throw InputError(path.string() + ": is a directory, expected a file");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(path.string() + ": cannot open for reading: " + std::strerror(errno));
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) throw InputError(path.string() + ": read failed");
  return std::move(ss).str();
}

void fsync_directory(const fs::path& dir) {
  int fd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;  // best effort: some filesystems do not allow opening directories
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  // EINVAL / ENOTSUP / EROFS: the filesystem does not sync directories (nothing to report); anything else (EIO,
  // ENOSPC, EDQUOT) means the rename may not be durable
  if (rc != 0 && err != EINVAL && err != ENOTSUP && err != EROFS && err != EBADF)
    throw IoError((dir.empty() ? std::string(".") : dir.string()) + ": fsync of the folder failed: " +
                  std::strerror(err));
}

void write_file_atomic_streamed(const fs::path& path, const std::function<void(const ByteSink&)>& fill) {
  fs::path dir = path.parent_path();
  std::string base = path.filename().string();
  base.insert(0, 1, '.');
  base.append(".tmp-XXXXXX");
  std::string tmpl = (dir / base).string();
  std::vector<char> name(tmpl.begin(), tmpl.end());
  name.push_back('\0');
  int fd = ::mkostemp(name.data(), O_CLOEXEC);
  if (fd < 0) throw IoError(path.string() + ": cannot create temporary file: " + std::strerror(errno));
  const std::string tmp(name.data());
  // every failure below closes the descriptor (once) and removes the temporary, so no debris is left
  auto discard = [&] {
    if (fd >= 0) ::close(fd);
    fd = -1;
    ::unlink(tmp.c_str());
  };
  auto fail = [&](const std::string& what, int err) {
    discard();
    throw IoError(path.string() + ": " + what + ": " + std::strerror(err));
  };
  ByteSink sink = [&](const void* data, std::size_t n) {
    if (fd < 0) throw IoError(path.string() + ": write after a failed write");
    const char* p = static_cast<const char*>(data);
    while (n > 0) {
      ssize_t w = ::write(fd, p, n);  // a short write is retried; the retry reports the error (EFBIG, ENOSPC)
      if (w < 0) {
        if (errno == EINTR) continue;
        fail("write failed", errno);
      }
      if (w == 0) fail("write failed", EIO);
      p += w;
      n -= static_cast<std::size_t>(w);
    }
  };
  try {
    fill(sink);
  } catch (...) {
    discard();
    throw;
  }
  if (::fsync(fd) != 0) fail("fsync failed", errno);
  if (::fchmod(fd, 0644) != 0) fail("chmod failed", errno);
  {
    int rc = ::close(fd);
    fd = -1;
    if (rc != 0) fail("close failed", errno);
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) fail("rename failed", errno);
  fsync_directory(dir);
}

void write_file_atomic(const fs::path& path, std::string_view bytes) {
  write_file_atomic_streamed(path, [&](const ByteSink& w) { w(bytes.data(), bytes.size()); });
}

}  // namespace stretch
