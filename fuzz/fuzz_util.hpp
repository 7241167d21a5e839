// Shared by the fuzz targets (fuzz/<target>.cpp): each defines LLVMFuzzerTestOneInput, built either as a libFuzzer
// binary (-DSTRETCH_FUZZ=ON, clang) or, in the ordinary build, linked with replay_main.cpp to replay the seed
// corpus and the regression inputs as a ctest test.
//
// Expected outcome of a malformed input: one of stretch's typed errors (core/error.hpp), caught here. Anything
// else escaping a target (std::bad_alloc, std::out_of_range, a json exception, ...) terminates the process and
// is a finding, as are crashes, sanitizer reports, leaks and hangs.
#pragma once
#include <unistd.h>

#include <cstddef>
#include <cstdio>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

#include "core/error.hpp"

namespace stretch::fuzz {

// Runs f(), swallowing stretch's typed errors (the reader rejected the input cleanly).
// With STRETCH_FUZZ_VERBOSE set, prints the error (to check that seeds are accepted, or why not).
template <class F>
void expect_clean(F&& f) {
  try {
    f();
  } catch (const stretch::Error& e) {
    static const bool verbose = std::getenv("STRETCH_FUZZ_VERBOSE") != nullptr;
    if (verbose) std::fprintf(stderr, "rejected: %s\n", e.what());
  }
}

// A private scratch folder for readers that only take paths (removed at normal exit).
inline const std::filesystem::path& scratch_dir() {
  static const std::filesystem::path dir = [] {
    auto d = std::filesystem::temp_directory_path() / ("stretch-fuzz-" + std::to_string(::getpid()));
    std::filesystem::create_directories(d);
    std::atexit([] {
      std::error_code ec;
      std::filesystem::remove_all(std::filesystem::temp_directory_path() /
                                      ("stretch-fuzz-" + std::to_string(::getpid())),
                                  ec);
    });
    return d;
  }();
  return dir;
}

// Writes bytes to scratch_dir()/name and returns the path.
inline std::filesystem::path scratch_file(const std::string& name, std::string_view bytes) {
  const auto p = scratch_dir() / name;
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  out.close();
  if (!out) std::abort();  // the harness itself failed, not the reader
  return p;
}

// Takes a little-endian u32 from the front of `in` (0 when fewer than 4 bytes are left).
inline std::uint32_t take_u32(std::string_view& in) {
  if (in.size() < 4) {
    in = {};
    return 0;
  }
  std::uint32_t v = 0;
  for (int k = 3; k >= 0; --k) v = (v << 8) | static_cast<unsigned char>(in[static_cast<std::size_t>(k)]);
  in.remove_prefix(4);
  return v;
}

// Splits `in` into two files: a u32 length n, then n bytes (clamped to what is there), then the rest.
inline std::pair<std::string_view, std::string_view> split_two(std::string_view in) {
  const std::uint32_t n = take_u32(in);
  const std::size_t k = n < in.size() ? n : in.size();
  return {in.substr(0, k), in.substr(k)};
}

}  // namespace stretch::fuzz
