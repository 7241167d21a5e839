// The byte tokenizer: one token per byte, id = byte value, vocabulary 256. Stateless, so thread-safe.
#include <string>

#include "core/error.hpp"
#include "io/tokenizer.hpp"

namespace stretch {
namespace {

class ByteTokenizer final : public Tokenizer {
 public:
  std::vector<std::int32_t> encode(std::string_view text) const override {
    std::vector<std::int32_t> ids(text.size());
    for (std::size_t i = 0; i < text.size(); ++i) ids[i] = static_cast<unsigned char>(text[i]);
    return ids;
  }
  std::string decode(std::span<const std::int32_t> ids) const override {
    std::string out(ids.size(), '\0');
    for (std::size_t i = 0; i < ids.size(); ++i) {
      if (ids[i] < 0 || ids[i] > 255)
        throw InputError("byte tokenizer: token id " + std::to_string(ids[i]) + " at position " + std::to_string(i) +
                         " is outside the vocabulary [0, 256)");
      out[i] = static_cast<char>(static_cast<unsigned char>(ids[i]));
    }
    return out;
  }
  int vocab_size() const override { return 256; }
  std::string type() const override { return "byte"; }
  std::string identity() const override { return "byte"; }
  nlohmann::json describe() const override { return {{"type", "byte"}}; }
  bool is_byte_level() const override { return true; }
};

}  // namespace

std::unique_ptr<Tokenizer> make_byte_tokenizer() { return std::make_unique<ByteTokenizer>(); }

}  // namespace stretch
