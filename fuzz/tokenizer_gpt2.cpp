// Fuzz target: GPT-2's BPE files (io/tokenizer.hpp load_gpt2_tokenizer). Input: a little-endian u32 n, then n
// bytes of encoder.json, then vocab.bpe (the rest). A tokenizer that loads then encodes and decodes a fixed text
// and the input's own bytes, and gives its vocabulary back (bpe_vocab, check_gpt2_vocab).
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_util.hpp"
#include "io/tokenizer.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace stretch;
  const auto parts = fuzz::split_two(std::string_view(reinterpret_cast<const char*>(data), size));
  const std::string_view enc = parts.first, bpe = parts.second;
  const auto enc_path = fuzz::scratch_file("encoder.json", enc);
  const auto bpe_path = fuzz::scratch_file("vocab.bpe", bpe);
  fuzz::expect_clean([&] {
    const auto tok = load_gpt2_tokenizer(enc_path, bpe_path);
    for (std::string_view text : {std::string_view("Hello world! It's 2024:  caf\xc3\xa9 \xe2\x82\xac 12345\n\n  x"),
                                  bpe.substr(0, 512)}) {
      const std::vector<std::int32_t> ids = tok->encode(text);
      for (const auto id : ids)
        if (id < 0 || id >= tok->vocab_size()) std::abort();
      (void)tok->decode(ids);
    }
    (void)tok->describe();
    const auto v = bpe_vocab(*tok);
    if (!v) std::abort();
    fuzz::expect_clean([&] { check_gpt2_vocab(*v, "fuzz"); });
  });
  return 0;
}
