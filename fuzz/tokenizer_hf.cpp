// Fuzz target: Hugging Face tokenizer folders (io/tokenizer_hf.hpp load_hf_tokenizer). Input: a little-endian u32 n,
// then n bytes of tokenizer.json, then tokenizer_config.json (the rest; no such file when empty). A tokenizer that
// loads then encodes a fixed text (added-token text, invalid UTF-8, whitespace runs, digits) and the input's own
// first bytes, checks every id against vocab_size(), and decodes the ids.
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_util.hpp"
#include "io/tokenizer_hf.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace stretch;
  const auto parts = fuzz::split_two(std::string_view(reinterpret_cast<const char*>(data), size));
  static const std::filesystem::path dir = [] {
    auto d = fuzz::scratch_dir() / "hf";
    std::filesystem::create_directories(d);
    return d;
  }();
  fuzz::scratch_file("hf/tokenizer.json", parts.first);
  std::error_code ec;
  if (parts.second.empty())
    std::filesystem::remove(dir / "tokenizer_config.json", ec);
  else
    fuzz::scratch_file("hf/tokenizer_config.json", parts.second);
  fuzz::expect_clean([&] {
    const auto tok = load_hf_tokenizer(dir);
    const std::string fixed =
        "Hello world! It's 2024:  caf\xc3\xa9 \xe2\x82\xac 12345\n\n  x<s>y </s> <|endoftext|><mask> \xe2\x96\x81"
        "bad \xff\xfe utf8 \xc3\t\r\n";
    for (std::string_view text : {std::string_view(fixed), parts.first.substr(0, 256)}) {
      const std::vector<std::int32_t> ids = tok->encode(text);
      for (const auto id : ids)
        if (id < 0 || id >= tok->vocab_size()) std::abort();
      (void)tok->decode(ids);
    }
    if (tok->bos_id() >= tok->vocab_size() || tok->eos_id() >= tok->vocab_size()) std::abort();
    (void)tok->describe();
  });
  return 0;
}
