// tokenizer_from_json: rebuilds a tokenizer from its describe() JSON (as stored in a checkpoint): byte, gpt2, llama2c,
// sentencepiece, hf (io/tokenizer_hf.hpp: {"type": "hf", "dir", "hash"}).
#include <string>

#include "core/error.hpp"
#include "io/tokenizer_hf.hpp"
#include "io/tokenizer_llama2c.hpp"
#include "io/tokenizer.hpp"

namespace stretch {

std::unique_ptr<Tokenizer> tokenizer_from_json(const nlohmann::json& j, const std::string& source) {
  auto bad = [&](const std::string& field, const std::string& what) {
    return InputError(source + ": tokenizer." + field + ": " + what);
  };
  if (!j.is_object()) throw InputError(source + ": tokenizer: expected a JSON object with a \"type\" field");
  auto t = j.find("type");
  const std::string types = "\"byte\", \"gpt2\", \"llama2c\", \"sentencepiece\" or \"hf\"";
  if (t == j.end() || !t->is_string()) throw bad("type", "missing (expected " + types + ")");
  const std::string type = t->get<std::string>();
  if (type == "byte") return make_byte_tokenizer();
  if (type == "llama2c") return llama2c_tokenizer_from_json(j, source);
  if (type == "hf") {
    auto d = j.find("dir");
    if (d == j.end() || !d->is_string() || d->get<std::string>().empty())
      throw bad("dir", "missing (expected the folder holding the Hugging Face tokenizer.json)");
    const std::filesystem::path dir = d->get<std::string>();
    std::error_code ec;
    if (!std::filesystem::is_directory(dir, ec))
      throw bad("dir", "folder " + dir.string() + " not found (the tokenizer folder must stay where it was when "
                       "the checkpoint was written)");
    auto h = j.find("hash");
    if (h == j.end() || !h->is_string()) throw bad("hash", "missing (expected the hash of tokenizer.json and "
                                                          "tokenizer_config.json)");
    auto tok = load_hf_tokenizer(dir);
    if (tok->identity() != "hf:" + h->get<std::string>())
      throw bad("hash", "the files in " + dir.string() + " hash to " + tok->describe()["hash"].get<std::string>() +
                            ", but the description says " + h->get<std::string>() + " (the tokenizer files changed)");
    return tok;
  }
  if (type == "sentencepiece") {
    auto m = j.find("model");
    if (m == j.end() || !m->is_string() || m->get<std::string>().empty())
      throw bad("model", "missing (expected the path of the SentencePiece .model file)");
    const std::filesystem::path model = m->get<std::string>();
    std::error_code ec;
    if (!std::filesystem::is_regular_file(model, ec))
      throw bad("model", "file " + model.string() + " not found (the tokenizer file must stay where it was when "
                         "the checkpoint was written)");
    auto h = j.find("hash");
    if (h == j.end() || !h->is_string()) throw bad("hash", "missing (expected the hash of the .model file)");
    auto tok = load_sentencepiece_tokenizer(model);
    if (tok->identity() != "sentencepiece:" + h->get<std::string>())
      throw bad("hash", "the file " + model.string() + " hashes to " + tok->describe()["hash"].get<std::string>() +
                            ", but the description says " + h->get<std::string>() + " (the tokenizer file changed)");
    return tok;
  }
  if (type != "gpt2")
    throw bad("type", "unknown tokenizer type \"" + type + "\" (expected " + types + ")");

  auto path_field = [&](const char* field) {
    auto f = j.find(field);
    if (f == j.end() || !f->is_string() || f->get<std::string>().empty())
      throw bad(field, "missing (expected the path of GPT-2's " +
                           std::string(std::string(field) == "encoder" ? "encoder.json" : "vocab.bpe") + ")");
    std::filesystem::path p = f->get<std::string>();
    std::error_code ec;
    if (!std::filesystem::is_regular_file(p, ec))
      throw bad(field, "file " + p.string() + " not found (the tokenizer files must stay where they were when the "
                       "checkpoint was written)");
    return p;
  };
  const auto enc = path_field("encoder");
  const auto vocab = path_field("vocab");
  auto h = j.find("hash");
  if (h == j.end() || !h->is_string()) throw bad("hash", "missing (expected the hash of the tokenizer files)");
  auto tok = load_gpt2_tokenizer(enc, vocab);
  const std::string want = "gpt2:" + h->get<std::string>();
  if (tok->identity() != want)
    throw bad("hash", "the files " + enc.string() + " and " + vocab.string() + " hash to " +
                          tok->describe()["hash"].get<std::string>() + ", but the description says " +
                          h->get<std::string>() + " (the tokenizer files changed)");
  return tok;
}

}  // namespace stretch
