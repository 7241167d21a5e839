// SentencePiece .model files (a serialized sentencepiece::ModelProto) through libsentencepiece's
// SentencePieceProcessor, e.g. tok512.model from llama2.c or Llama 2's tokenizer.model.
//
// encode() returns the pieces' ids exactly as SentencePieceProcessor::Encode gives them: no BOS and no EOS
// (callers add BOS themselves, as with the llama2c tokenizer). The model's normalizer applies: a model trained
// with the default remove_extra_whitespaces=true strips leading/trailing spaces and collapses runs of spaces
// before encoding, and its dummy prefix puts "▁" before the first piece. decode() is SentencePiece's Decode:
// control tokens (<s>, </s>) decode to nothing, <unk> to " ⁇ ", byte pieces <0xXX> to their bytes, and the
// dummy-prefix space is dropped, so decode(encode(s)) == s for text that normalization leaves unchanged.
//
// Loading reads the file ourselves (for the hash and for clear errors), walks its top-level protobuf fields
// (so a truncated or non-protobuf file is reported as such rather than as the library's "model file is broken"),
// requires at least one piece plus the trainer_spec and normalizer_spec that SentencePiece's trainer always
// writes (they follow the pieces, so a file cut at a field boundary is still caught), and then hands the bytes to
// SentencePieceProcessor::LoadFromSerializedProto.
//
// Thread safety: SentencePieceProcessor::Encode and Decode are const and keep no mutable state once loaded; the
// SentencePiece authors state that they may be called from several threads at once (google/sentencepiece issues
// 207 and 657).
#include <sentencepiece_processor.h>
#include <xxhash.h>

#include <string>
#include <type_traits>
#include <vector>

#include "core/error.hpp"
#include "core/fs.hpp"
#include "core/hex.hpp"
#include "io/tokenizer.hpp"

namespace stretch {
namespace fs = std::filesystem;

namespace {

static_assert(std::is_same_v<std::int32_t, int>, "token ids are passed to SentencePiece as int");

// ModelProto's top-level fields (sentencepiece_model.proto).
constexpr std::uint64_t kFieldPieces = 1;
constexpr std::uint64_t kFieldTrainerSpec = 2;
constexpr std::uint64_t kFieldNormalizerSpec = 3;

const char* const kExpected =
    " (expected a SentencePiece .model file: a serialized ModelProto, as written by spm_train)";

struct TopLevelFields {
  std::size_t pieces = 0;
  bool trainer_spec = false;
  bool normalizer_spec = false;
};

// Walks the protobuf wire format of the top-level message, without interpreting the fields' contents.
TopLevelFields scan_model_proto(const std::string& bytes, const std::string& name) {
  TopLevelFields out;
  const auto* b = reinterpret_cast<const unsigned char*>(bytes.data());
  const std::size_t n = bytes.size();
  std::size_t off = 0;
  auto read_varint = [&](const char* what) {
    const std::size_t start = off;
    std::uint64_t v = 0;
    for (int shift = 0;; shift += 7) {
      if (off >= n)
        throw InputError(name + ": truncated: the file ends inside the " + std::string(what) + " at byte " +
                         std::to_string(start) + kExpected);
      if (shift > 63)
        throw InputError(name + ": not a SentencePiece model: over-long varint (" + what + ") at byte " +
                         std::to_string(start) + kExpected);
      const unsigned char c = b[off++];
      v |= static_cast<std::uint64_t>(c & 0x7F) << shift;
      if (c < 0x80) break;
    }
    return v;
  };
  auto skip = [&](std::uint64_t field, std::size_t start, std::uint64_t len) {
    if (len > n - off)
      throw InputError(name + ": truncated: field " + std::to_string(field) + " at byte " + std::to_string(start) +
                       " needs " + std::to_string(len) + " bytes but only " + std::to_string(n - off) +
                       " remain (file size " + std::to_string(n) + ")" + kExpected);
    off += static_cast<std::size_t>(len);
  };
  while (off < n) {
    const std::size_t start = off;
    const std::uint64_t tag = read_varint("field tag");
    const std::uint64_t field = tag >> 3;
    const unsigned wire = static_cast<unsigned>(tag & 7);
    if (field == 0 || (wire != 0 && wire != 1 && wire != 2 && wire != 5))
      throw InputError(name + ": not a SentencePiece model: invalid protobuf field tag 0x" +
                       to_hex(b + start, off - start) + " (field " + std::to_string(field) + ", wire type " +
                       std::to_string(wire) + ") at byte " + std::to_string(start) + kExpected);
    switch (wire) {
      case 0: read_varint("varint field"); break;
      case 1: skip(field, start, 8); break;
      case 5: skip(field, start, 4); break;
      default: skip(field, start, read_varint("field length")); break;
    }
    if (wire == 2) {
      if (field == kFieldPieces) ++out.pieces;
      if (field == kFieldTrainerSpec) out.trainer_spec = true;
      if (field == kFieldNormalizerSpec) out.normalizer_spec = true;
    }
  }
  return out;
}

class SentencePieceTokenizer final : public Tokenizer {
 public:
  explicit SentencePieceTokenizer(const fs::path& path);

  std::vector<std::int32_t> encode(std::string_view text) const override;
  std::string decode(std::span<const std::int32_t> ids) const override;
  int vocab_size() const override { return vocab_size_; }
  std::string type() const override { return "sentencepiece"; }
  std::int32_t bos_id() const override { return sp_.bos_id(); }
  std::int32_t eos_id() const override { return sp_.eos_id(); }
  std::string identity() const override { return "sentencepiece:" + hash_; }
  nlohmann::json describe() const override {
    return {{"type", "sentencepiece"}, {"model", path_.string()}, {"hash", hash_}};
  }

 private:
  fs::path path_;
  std::string hash_;
  int vocab_size_ = 0;
  sentencepiece::SentencePieceProcessor sp_;
};

SentencePieceTokenizer::SentencePieceTokenizer(const fs::path& path)
    : path_(fs::absolute(path).lexically_normal()) {
  const std::string name = path.string();
  const std::string bytes = read_file(path);  // InputError naming the file when missing or unreadable
  {
    const XXH128_hash_t h = XXH3_128bits(bytes.data(), bytes.size());
    XXH128_canonical_t c;
    XXH128_canonicalFromHash(&c, h);
    hash_ = to_hex(c.digest, 8);  // 16 hex digits, as the llama2c and gpt2 tokenizers
  }
  if (bytes.empty()) throw InputError(name + ": empty file" + kExpected);
  const TopLevelFields f = scan_model_proto(bytes, name);
  if (f.pieces == 0 || !f.trainer_spec || !f.normalizer_spec) {
    std::string missing;
    auto add = [&](const char* s) { missing += (missing.empty() ? "" : ", ") + std::string(s); };
    if (f.pieces == 0) add("pieces (field 1)");
    if (!f.trainer_spec) add("trainer_spec (field 2)");
    if (!f.normalizer_spec) add("normalizer_spec (field 3)");
    throw InputError(name + ": truncated or not a SentencePiece model: no " + missing + " in its " +
                     std::to_string(bytes.size()) + " bytes (" + std::to_string(f.pieces) + " pieces found)" +
                     kExpected);
  }
  const auto status = sp_.LoadFromSerializedProto(bytes);
  if (!status.ok())
    throw InputError(name + ": SentencePiece cannot load it: " + status.ToString() + kExpected);
  vocab_size_ = sp_.GetPieceSize();
  if (vocab_size_ <= 0) throw InputError(name + ": the model has no pieces" + kExpected);
}

std::vector<std::int32_t> SentencePieceTokenizer::encode(std::string_view text) const {
  std::vector<int> ids;
  const auto status = sp_.Encode(text, &ids);
  if (!status.ok())
    throw InputError("sentencepiece tokenizer " + path_.string() + ": cannot encode " +
                     std::to_string(text.size()) + " bytes of text: " + status.ToString());
  return ids;
}

std::string SentencePieceTokenizer::decode(std::span<const std::int32_t> ids) const {
  for (std::size_t i = 0; i < ids.size(); ++i)
    if (ids[i] < 0 || ids[i] >= vocab_size_)
      throw InputError("sentencepiece tokenizer: token id " + std::to_string(ids[i]) + " at position " +
                       std::to_string(i) + " is not in the vocabulary (ids 0.." + std::to_string(vocab_size_ - 1) +
                       ")");
  std::string out;
  const auto status = sp_.Decode(std::vector<int>(ids.begin(), ids.end()), &out);
  if (!status.ok())
    throw InputError("sentencepiece tokenizer " + path_.string() + ": cannot decode " + std::to_string(ids.size()) +
                     " ids: " + status.ToString());
  return out;
}

}  // namespace

std::unique_ptr<Tokenizer> load_sentencepiece_tokenizer(const fs::path& model) {
  return std::make_unique<SentencePieceTokenizer>(model);
}

}  // namespace stretch
