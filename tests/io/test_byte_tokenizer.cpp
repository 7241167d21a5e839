#include <gtest/gtest.h>

#include "core/error.hpp"
#include "io/tokenizer.hpp"

namespace stretch {
namespace {

TEST(ByteTokenizer, RoundTripsEveryByte) {
  auto tok = make_byte_tokenizer();
  std::string text;
  for (int b = 0; b < 256; ++b) text.push_back(static_cast<char>(b));
  text += "héllo wörld 😀";
  const auto ids = tok->encode(text);
  ASSERT_EQ(ids.size(), text.size());
  for (std::size_t i = 0; i < 256; ++i) EXPECT_EQ(ids[i], static_cast<int>(i));
  EXPECT_EQ(tok->decode(ids), text);
  EXPECT_TRUE(tok->encode("").empty());
  EXPECT_EQ(tok->decode({}), "");
}

TEST(ByteTokenizer, Describes) {
  auto tok = make_byte_tokenizer();
  EXPECT_EQ(tok->vocab_size(), 256);
  EXPECT_EQ(tok->type(), "byte");
  EXPECT_EQ(tok->identity(), "byte");
  EXPECT_TRUE(tok->is_byte_level());
  EXPECT_EQ(tok->describe(), nlohmann::json({{"type", "byte"}}));
  auto again = tokenizer_from_json(tok->describe(), "ckpt.json");
  EXPECT_EQ(again->identity(), "byte");
}

TEST(ByteTokenizer, RejectsInvalidIds) {
  auto tok = make_byte_tokenizer();
  std::vector<std::int32_t> bad{65, 256};
  try {
    tok->decode(bad);
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("256"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("position 1"), std::string::npos) << e.what();
  }
  std::vector<std::int32_t> neg{-1};
  EXPECT_THROW(tok->decode(neg), InputError);
}

TEST(TokenizerFromJson, RejectsBadDescriptions) {
  auto expect_error = [](const nlohmann::json& j, const std::string& needle) {
    try {
      tokenizer_from_json(j, "run/ckpt.json");
      ADD_FAILURE() << "expected InputError for " << j.dump();
    } catch (const InputError& e) {
      const std::string m = e.what();
      EXPECT_EQ(m.rfind("run/ckpt.json", 0), 0u) << m;
      EXPECT_NE(m.find(needle), std::string::npos) << m;
    }
  };
  expect_error(nlohmann::json::array(), "tokenizer");
  expect_error({{"kind", "byte"}}, "tokenizer.type");
  expect_error({{"type", "wordpiece"}}, "unknown tokenizer type");
  expect_error({{"type", "gpt2"}}, "tokenizer.encoder");
  expect_error({{"type", "gpt2"}, {"encoder", "/nonexistent/encoder.json"}, {"vocab", "/nonexistent/vocab.bpe"},
                {"hash", "0"}},
               "tokenizer.encoder");
}

}  // namespace
}  // namespace stretch
