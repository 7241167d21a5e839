// Fuzz target: R lazy-load databases, the default corpus's decoder (io/rdata.hpp janeausten_text,
// which reads every character vector with read_rdata_character_vectors). Input: a little-endian u32 n,
// then n bytes of the index (Rdata.rdx), then the database (Rdata.rdb, the rest).
#include <cstdint>
#include <string_view>

#include "fuzz_util.hpp"
#include "io/rdata.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace stretch;
  const auto [rdx, rdb] = fuzz::split_two(std::string_view(reinterpret_cast<const char*>(data), size));
  const auto rdx_path = fuzz::scratch_file("Rdata.rdx", rdx);
  const auto rdb_path = fuzz::scratch_file("Rdata.rdb", rdb);
  fuzz::expect_clean([&] { (void)janeausten_text(rdx_path.parent_path()); });  // read_rdata_character_vectors + selection
  return 0;
}
