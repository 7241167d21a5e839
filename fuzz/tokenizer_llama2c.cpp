// Fuzz target: llama2.c's tokenizer.bin (io/tokenizer_llama2c.hpp). Input: a little-endian u16 vocab_size (the
// model's, which the file format does not store), then the tokenizer.bin bytes. A tokenizer that loads then
// encodes and decodes a fixed text and the input's own bytes.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_util.hpp"
#include "io/tokenizer_llama2c.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace stretch;
  std::string_view in(reinterpret_cast<const char*>(data), size);
  if (in.size() < 2) return 0;
  const int vocab_size = static_cast<unsigned char>(in[0]) | (static_cast<unsigned char>(in[1]) << 8);
  in.remove_prefix(2);
  const auto path = fuzz::scratch_file("tokenizer.bin", in);
  fuzz::expect_clean([&] {
    const auto tok = load_llama2c_tokenizer(path, vocab_size);
    for (std::string_view text : {std::string_view("Once upon a time, there was a little girl.\n  \xc3\xa9\xe2\x82\xac!"),
                                  in.substr(0, 512)}) {
      const std::vector<std::int32_t> ids = llama2c_encode_with_bos(*tok, text);
      for (const auto id : ids)
        if (id < 0 || id >= tok->vocab_size()) std::abort();
      (void)tok->decode(ids);
    }
    std::vector<std::int32_t> all(static_cast<std::size_t>(tok->vocab_size()));
    for (std::size_t i = 0; i < all.size(); ++i) all[i] = static_cast<std::int32_t>(i);
    (void)tok->decode(all);
    (void)tok->describe();
    if (llama2c_vocab(*tok) == nullptr) std::abort();
  });
  return 0;
}
