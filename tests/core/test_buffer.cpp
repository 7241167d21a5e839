// core/buffer.hpp: zero-initialised and 64-byte aligned on both sides of the mapping threshold, copies and moves
// keep the contents, and a large buffer costs resident memory only once written (the kernel's RssAnon counter).
#include <gtest/gtest.h>

#include <cstdint>

#include "core/buffer.hpp"
#include "core/peak_memory.hpp"

namespace stretch {
namespace {

TEST(Buffer, ZeroedAlignedAndCopiedOnBothSidesOfTheMappingThreshold) {
  const std::size_t threshold = Buffer<float>::kMapBytes / sizeof(float);
  for (const std::size_t n : {std::size_t{2}, std::size_t{1000}, threshold - 1, threshold, threshold + 3}) {
    Buffer<float> b(n);
    ASSERT_EQ(b.size(), n);
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(b.data()) % Buffer<float>::kAlign, 0u) << n;
    bool zero = true;
    for (std::size_t i = 0; i < n; i += 997) zero = zero && b[i] == 0.0f;
    EXPECT_TRUE(zero && b[n - 1] == 0.0f) << n;
    b[0] = 1.5f;
    b[n - 1] = -2.5f;
    Buffer<float> c = b;  // copy
    EXPECT_EQ(c[0], 1.5f);
    EXPECT_EQ(c[n - 1], -2.5f);
    Buffer<float> d = std::move(c);
    EXPECT_EQ(d[n - 1], -2.5f);
    EXPECT_EQ(c.size(), 0u);  // NOLINT: moved-from is empty
    b.resize(n);              // contents not kept: zero again
    EXPECT_EQ(b[0], 0.0f);
    EXPECT_EQ(b[n - 1], 0.0f);
    b.resize(0);
    EXPECT_EQ(b.size(), 0u);
    EXPECT_EQ(b.data(), nullptr);
  }
}

TEST(Buffer, LargeBufferIsResidentOnlyOnceWritten) {
  if (peak_memory::status_bytes("RssAnon") < 0) GTEST_SKIP() << "no RssAnon in /proc/self/status";
  const std::size_t n = std::size_t{64} << 20 >> 2;  // 64 MB of floats
  const long long before = peak_memory::status_bytes("RssAnon");
  Buffer<float> b(n);
  const long long allocated = peak_memory::status_bytes("RssAnon");
  EXPECT_LT(allocated - before, 4ll << 20) << "an unwritten 64 MB buffer should not be resident";
  for (std::size_t i = 0; i < n; i += 1024) b[i] = 1.0f;  // one write per 4 KiB page
  const long long written = peak_memory::status_bytes("RssAnon");
  EXPECT_GE(written - before, 60ll << 20);
}

// release(i, n): the range reads zero, everything else is kept, and a mapping's whole pages inside it leave memory;
// a small buffer is zeroed; past the end is an error.
TEST(Buffer, ReleasedRangeIsZeroAndLeavesMemory) {
  const std::size_t n = std::size_t{64} << 20 >> 2;  // 64 MB of floats: a mapping
  Buffer<float> b(n);
  for (std::size_t i = 0; i < n; i++) b[i] = 1.0f;
  const long long written = peak_memory::status_bytes("RssAnon");
  const std::size_t lo = 1001, len = n / 2 + 77;  // edges not on page boundaries
  b.release(lo, len);
  const long long released = peak_memory::status_bytes("RssAnon");
  for (std::size_t i = 0; i < n; i += (i + 1 >= lo && i <= lo + len + 1) ? 1 : 4096)
    ASSERT_EQ(b[i], (i >= lo && i < lo + len) ? 0.0f : 1.0f) << i;
  if (written >= 0) {
    EXPECT_GE(written - released, 30ll << 20) << "half of 64 MB should leave memory";
  }
  Buffer<float> small(1000);
  for (std::size_t i = 0; i < 1000; i++) small[i] = 2.0f;
  small.release(10, 20);
  for (std::size_t i = 0; i < 1000; i++) ASSERT_EQ(small[i], (i >= 10 && i < 30) ? 0.0f : 2.0f) << i;
  EXPECT_THROW(small.release(990, 11), std::out_of_range);
  EXPECT_THROW(small.release(1001, 0), std::out_of_range);
}

}  // namespace
}  // namespace stretch
