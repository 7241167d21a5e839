// core/mapped_file.hpp: the bytes are the file's (regular files mapped, pipes read, empty files empty), errors
// name the file, moves keep the bytes, and release() drops resident pages (the mapping's own Rss in
// /proc/self/smaps falls by the released size) while the bytes stay readable.
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cinttypes>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include "core/error.hpp"
#include "core/fs.hpp"
#include "core/mapped_file.hpp"

namespace stretch {
namespace {
namespace fs = std::filesystem;

class TempDir {
 public:
  TempDir() {
    static std::atomic<int> counter{0};
    path_ = fs::temp_directory_path() /
            ("stretch-core-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  fs::path operator/(const std::string& name) const { return path_ / name; }

 private:
  fs::path path_;
};

std::string pattern(std::size_t n) {
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; i++) s[i] = static_cast<char>((i * 2654435761u) >> 13);
  return s;
}

void expect_input_error(const fs::path& p, const std::string& needle) {
  try {
    MappedFile::open(p);
    ADD_FAILURE() << "expected InputError for " << p;
  } catch (const InputError& e) {
    const std::string m = e.what();
    EXPECT_EQ(m.rfind(p.string() + ": ", 0), 0u) << m;
    EXPECT_NE(m.find(needle), std::string::npos) << m;
  }
}

TEST(MappedFile, BytesAreTheFilesAndSurviveMoves) {
  TempDir dir;
  const std::string content = pattern(3 * 4096 + 17);
  write_file_atomic(dir / "f.bin", content);
  MappedFile m = MappedFile::open(dir / "f.bin");
  EXPECT_TRUE(m.mapped());
  EXPECT_EQ(m.size(), content.size());
  EXPECT_EQ(m.bytes(), content);
  MappedFile moved(std::move(m));
  EXPECT_EQ(moved.bytes(), content);
  EXPECT_TRUE(m.bytes().empty());  // NOLINT: the moved-from object is empty
  MappedFile other = MappedFile::hold("small");  // move-assigning over a holder releases it
  other = std::move(moved);
  EXPECT_EQ(other.bytes(), content);
}

TEST(MappedFile, EmptyFileHasNoBytes) {
  TempDir dir;
  write_file_atomic(dir / "empty", "");
  const MappedFile m = MappedFile::open(dir / "empty");
  EXPECT_EQ(m.size(), 0u);
  EXPECT_TRUE(m.bytes().empty());
  m.release(0, 10);  // nothing to release: no effect, no error
}

TEST(MappedFile, HeldBytesSurviveMovesEvenWhenShort) {
  MappedFile a = MappedFile::hold("abc");  // short enough for the string's inline buffer
  MappedFile b(std::move(a));
  MappedFile c = MappedFile::hold(pattern(100000));
  c = std::move(b);
  EXPECT_FALSE(c.mapped());
  EXPECT_EQ(c.bytes(), "abc");
  c.release(0, 3);
  EXPECT_EQ(c.bytes(), "abc");
}

TEST(MappedFile, ErrorsNameTheFile) {
  TempDir dir;
  expect_input_error(dir / "missing.bin", "no such file");
  fs::create_directories(dir / "folder");
  expect_input_error(dir / "folder", "is a directory");
  write_file_atomic(dir / "secret.bin", "x");
  fs::permissions(dir / "secret.bin", fs::perms::none);
  if (::geteuid() != 0) expect_input_error(dir / "secret.bin", "cannot open for reading");  // root reads anyway
}

TEST(MappedFile, PipeIsReadWhole) {
  TempDir dir;
  const fs::path fifo = dir / "fifo";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  const std::string content = pattern(200000);  // more than a pipe buffer
  std::thread writer([&] {
    FILE* f = std::fopen(fifo.c_str(), "wb");
    if (!f) return;
    std::fwrite(content.data(), 1, content.size(), f);
    std::fclose(f);
  });
  const MappedFile m = MappedFile::open(fifo);
  writer.join();
  EXPECT_FALSE(m.mapped());
  EXPECT_EQ(m.bytes(), content);
}

// Resident bytes of the one mapping that holds `address`, from its /proc/self/smaps entry, or -1 when there is
// no such entry. Process-wide counters (RssFile) also move when other file pages (library code) fault in or are
// reclaimed, which made a page-exact check on them flaky.
long long mapping_rss(const void* address) {
  std::ifstream smaps("/proc/self/smaps");
  const auto where = reinterpret_cast<std::uintptr_t>(address);
  std::string line;
  bool inside = false;
  while (std::getline(smaps, line)) {
    std::uintptr_t lo = 0, hi = 0;
    if (std::sscanf(line.c_str(), "%" SCNxPTR "-%" SCNxPTR " ", &lo, &hi) == 2 && line.find(':') > line.find(' ')) {
      inside = lo <= where && where < hi;
      continue;
    }
    if (inside && line.rfind("Rss:", 0) == 0) {
      std::istringstream in(line.substr(4));
      long long kb = -1;
      in >> kb;
      return kb < 0 ? -1 : kb * 1024;
    }
  }
  return -1;
}

TEST(MappedFile, ReleaseDropsResidentPagesAndKeepsTheBytes) {
  TempDir dir;
  const std::size_t size = 32u << 20;
  const std::string content = pattern(size);
  write_file_atomic(dir / "big.bin", content);
  const MappedFile m = MappedFile::open(dir / "big.bin");
  ASSERT_TRUE(m.mapped());
  const void* data = m.bytes().data();
  const long long before = mapping_rss(data);
  if (before < 0) GTEST_SKIP() << "no Rss line for the mapping in /proc/self/smaps";
  std::uint64_t sum = 0;
  for (std::size_t i = 0; i < size; i += 512) sum += static_cast<unsigned char>(m.bytes()[i]);  // fault in
  const long long touched = mapping_rss(data);
  EXPECT_EQ(touched, static_cast<long long>(size)) << "reading the whole mapping made all of it resident";
  const long long page = ::sysconf(_SC_PAGESIZE);
  m.release(1, size - 2);  // whole pages inside [1, size - 1): all but the first and the last page
  // At most the first and the last page stay. Fewer may: where the kernel maps the file with huge pages (ext4's
  // large folios, Linux 6.18 here) a partial release drops the whole 2 MiB mapping at each end, to be faulted in
  // again from the page cache.
  EXPECT_LE(mapping_rss(data), 2 * page) << "all but the first and the last page released";
  EXPECT_EQ(m.bytes(), content);  // faulted in again from the file
  std::uint64_t again = 0;
  for (std::size_t i = 0; i < size; i += 512) again += static_cast<unsigned char>(m.bytes()[i]);
  EXPECT_EQ(again, sum);
  m.release(0, size);
  EXPECT_EQ(mapping_rss(data), 0);
}

}  // namespace
}  // namespace stretch
