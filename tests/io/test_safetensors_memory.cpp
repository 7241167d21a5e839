// The memory claim of the mapped reader, measured without timing: a BF16 safetensors file (64 MB by default;
// STRETCH_PEAK_MEMORY_MB=1024 for a 1 GB one; eight tensors hold half of it, the last one the other half)
// converted tensor by tensor into one float slab of twice its size, in a fresh process (this binary re-run on a
// DISABLED_ test) whose peak resident set (the kernel's VmHWM) is compared with its resident set before loading.
// Releasing the pages as the conversion goes (SourcePages::release) keeps the growth near the slab's size
// (< 1.15x); keeping them (the control) shows the file's pages on top (> 1.4x), so the measurement does see them.
// Releasing each tensor only after its conversion (release(name)) is measured and printed too: its peak holds the
// largest tensor's pages (last in the file, when the slab is nearly full: the worst case).
#include <gtest/gtest.h>

#include <bit>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

#include "core/buffer.hpp"
#include "core/numeric.hpp"
#include "core/peak_memory.hpp"
#include "io/io_test_util.hpp"
#include "io/safetensors.hpp"

namespace stretch {
namespace {

constexpr int kTensors = 9;  // tensors 0 .. 7: a sixteenth of the file each; 8: half of it

// Element i of tensor t, a finite bf16 of either sign.
bf16_t value_bits(int t, std::size_t i) {
  return static_cast<bf16_t>(((i * 2654435761u + static_cast<std::size_t>(t) * 40503u) >> 7) & 0xff7fu);
}

std::size_t env_mb() {
  const char* s = std::getenv("STRETCH_PEAK_MEMORY_MB");
  return s ? std::strtoul(s, nullptr, 10) : 64;
}

struct Figures {
  double growth = 0;  // peak growth / slab bytes
  std::map<std::string, long long> raw;
};

Figures measure(const std::filesystem::path& file, const std::filesystem::path& out, const std::string& mode) {
  int status = -1;
  Figures f;
  f.raw = peak_memory::run_child("SafetensorsMemory.DISABLED_LoadInFreshProcess", out.string(),
                                 {"STRETCH_PEAK_MEMORY_FILE=" + file.string(), "STRETCH_PEAK_MEMORY_MODE=" + mode},
                                 &status);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "child status " << status;
  if (f.raw.count("slab") && f.raw["slab"] > 0)
    f.growth = static_cast<double>(f.raw["peak"] - f.raw["base"]) / static_cast<double>(f.raw["slab"]);
  return f;
}

TEST(SafetensorsMemory, ConvertingBf16IntoAFloatSlabPeaksAtTheSlab) {
  if (peak_memory::status_bytes("VmHWM") < 0) GTEST_SKIP() << "no VmHWM in /proc/self/status";
  testing::TempDir dir;
  const std::size_t values = (env_mb() << 20) / 2;  // bf16 values in the file
  {
    SafetensorsWriter w;
    std::vector<std::vector<bf16_t>> data(kTensors);
    for (int t = 0; t < kTensors; ++t) {
      data[t].resize(t == kTensors - 1 ? values / 2 : values / 16);
      for (std::size_t i = 0; i < data[t].size(); ++i) data[t][i] = value_bits(t, i);
      w.add_ref("layer." + std::to_string(t), DType::BF16, {static_cast<std::int64_t>(data[t].size() / 512), 512},
                data[t].data());
    }
    w.write(dir / "model.safetensors");
  }
  Figures rel = measure(dir / "model.safetensors", dir / "release.txt", "release");
  Figures after = measure(dir / "model.safetensors", dir / "after.txt", "after");
  Figures keep = measure(dir / "model.safetensors", dir / "keep.txt", "keep");
  for (auto* f : {&rel, &after, &keep}) ASSERT_EQ(f->raw["mismatches"], 0);
  std::printf("file %lld MB BF16 -> slab %lld MB fp32: peak growth / slab %.3fx releasing as converted (base %lld MB, "
              "peak %lld MB), %.3fx releasing each tensor after it, %.3fx keeping the pages\n",
              rel.raw["file"] >> 20, rel.raw["slab"] >> 20, rel.growth, rel.raw["base"] >> 20, rel.raw["peak"] >> 20,
              after.growth, keep.growth);
  EXPECT_GT(rel.growth, 0.95) << "the slab itself must show: the measurement works";
  EXPECT_LT(rel.growth, 1.15);
  EXPECT_GT(keep.growth, 1.4) << "without release the file's pages stay resident on top of the slab";
}

// The child: loads STRETCH_PEAK_MEMORY_FILE into one slab, releasing the pages as they are converted (mode
// "release"), each tensor's after it ("after") or none ("keep"), and writes base, peak, slab, file bytes and the
// number of wrong values.
TEST(SafetensorsMemory, DISABLED_LoadInFreshProcess) {
  if (!peak_memory::child_output()) GTEST_SKIP() << "run by ConvertingBf16IntoAFloatSlabPeaksAtTheSlab";
  const std::string path = std::getenv("STRETCH_PEAK_MEMORY_FILE");
  const std::string mode = std::getenv("STRETCH_PEAK_MEMORY_MODE");
  const long long base = peak_memory::baseline();
  const auto r = SafetensorsReader::open(path);
  std::size_t total = 0;
  for (const auto& e : r.tensors()) total += static_cast<std::size_t>(e.numel());
  Buffer<float> slab(total);
  std::size_t off = 0;
  for (const auto& e : r.tensors()) {
    r.read_into(e.name, e.shape, slab.data() + off, mode == "release" ? SourcePages::release : SourcePages::keep);
    if (mode == "after") r.release(e.name);
    off += static_cast<std::size_t>(e.numel());
  }
  const long long peak = peak_memory::status_bytes("VmHWM");
  // every value against the definition of bf16 (the upper half of an fp32)
  long long mismatches = 0;
  off = 0;
  for (const auto& e : r.tensors()) {
    const int t = std::stoi(e.name.substr(e.name.find('.') + 1));
    for (std::size_t i = 0; i < static_cast<std::size_t>(e.numel()); ++i)
      mismatches += std::bit_cast<std::uint32_t>(slab[off + i]) != static_cast<std::uint32_t>(value_bits(t, i)) << 16;
    off += static_cast<std::size_t>(e.numel());
  }
  peak_memory::write_figures({{"base", base},
                              {"peak", peak},
                              {"slab", static_cast<long long>(total * sizeof(float))},
                              {"file", static_cast<long long>(std::filesystem::file_size(path))},
                              {"mismatches", mismatches}});
}

}  // namespace
}  // namespace stretch
