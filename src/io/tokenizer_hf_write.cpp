// write_hf_tokenizer (io/tokenizer_hf.hpp): our tokenizers as Hugging Face tokenizer.json + tokenizer_config.json.
//
// SentencePiece-style BPE (llama2c, sentencepiece): SentencePiece's BPE encoder, like llama2.c's, repeatedly merges
// the adjacent pair whose concatenation is the highest-scoring piece. tokenizers' BPE merges the pair of lowest
// rank instead, so the merges are every split of every piece into two pieces, ranked by the merged piece's score
// (highest first; ties by the merged piece's id, then the shorter left part). The two then agree except where
// two different pieces have the same score and compete at once (llama2.c takes the leftmost pair, tokenizers the
// lower rank). Differences that remain by design: "<unk>", "<s>", "</s>" in the text are special tokens for
// tokenizers (llama2.c encodes them as text), and "▁" (U+2581) in the text reads as a space for tokenizers.
#include <sentencepiece_processor.h>

#include <algorithm>
#include <unordered_map>

#include "core/error.hpp"
#include "core/fs.hpp"
#include "io/tokenizer_hf.hpp"
#include "io/tokenizer_hf_parts.hpp"
#include "io/tokenizer_llama2c.hpp"

namespace stretch {
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

const std::string kMeta = "\xE2\x96\x81";  // ▁ U+2581, SentencePiece's whitespace

json added_token(const std::string& content, std::int32_t id, bool special = true) {
  return {{"id", id},         {"content", content}, {"single_word", false}, {"lstrip", false},
          {"rstrip", false},  {"normalized", false}, {"special", special}};
}

json bos_template(const std::string& name, std::int32_t id) {
  auto special = [&](int type_id) { return json{{"SpecialToken", {{"id", name}, {"type_id", type_id}}}}; };
  auto seq = [&](const char* s, int type_id) { return json{{"Sequence", {{"id", s}, {"type_id", type_id}}}}; };
  return {{"type", "TemplateProcessing"},
          {"single", json::array({special(0), seq("A", 0)})},
          {"pair", json::array({special(0), seq("A", 0), special(1), seq("B", 1)})},
          {"special_tokens", {{name, {{"id", name}, {"ids", json::array({id})}, {"tokens", json::array({name})}}}}}};
}

json merges_json(const std::vector<std::pair<std::string, std::string>>& merges) {
  const bool spaces = std::any_of(merges.begin(), merges.end(), [](const auto& m) {
    return m.first.find(' ') != std::string::npos || m.second.find(' ') != std::string::npos;
  });
  json out = json::array();
  for (const auto& [a, b] : merges) out.push_back(spaces ? json::array({a, b}) : json(a + " " + b));
  return out;
}

json bpe_model(json vocab, json merges, const std::string& unk, bool byte_fallback) {
  return {{"type", "BPE"},
          {"dropout", nullptr},
          {"unk_token", unk.empty() ? json(nullptr) : json(unk)},
          {"continuing_subword_prefix", nullptr},
          {"end_of_word_suffix", nullptr},
          {"fuse_unk", byte_fallback},
          {"byte_fallback", byte_fallback},
          {"ignore_merges", false},
          {"vocab", std::move(vocab)},
          {"merges", std::move(merges)}};
}

json tokenizer_json(json model, json added, json normalizer, json pre, json post, json decoder) {
  return {{"version", "1.0"},          {"truncation", nullptr},         {"padding", nullptr},
          {"added_tokens", std::move(added)}, {"normalizer", std::move(normalizer)}, {"pre_tokenizer", std::move(pre)},
          {"post_processor", std::move(post)}, {"decoder", std::move(decoder)}, {"model", std::move(model)}};
}

struct Files {
  json tokenizer, config;
};

Files byte_level_files(const Tokenizer& tok) {
  const auto v = bpe_vocab(tok);
  if (!v) throw ConfigError("write_hf_tokenizer: the " + tok.type() + " tokenizer has no byte-level BPE vocabulary");
  json vocab = json::object();
  for (std::size_t i = 0; i < v->tokens.size(); ++i) vocab[v->tokens[i]] = i;
  std::vector<std::pair<std::string, std::string>> merges;
  for (const auto& m : v->merges) {
    const std::size_t sp = m.find(' ');
    merges.emplace_back(m.substr(0, sp), m.substr(sp + 1));
  }
  const bool gpt2 = tok.type() == "gpt2";
  json added = json::array();
  json config = {{"tokenizer_class", "PreTrainedTokenizerFast"}, {"add_bos_token", false}, {"add_eos_token", false},
                 {"clean_up_tokenization_spaces", false}};
  if (gpt2 && tok.eos_id() >= 0) {
    const std::string eos = v->tokens.at(static_cast<std::size_t>(tok.eos_id()));
    added.push_back(added_token(eos, tok.eos_id()));
    config["eos_token"] = eos;
  }
  const json pre = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", gpt2}};
  const json dec = {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", true}};
  return {tokenizer_json(bpe_model(std::move(vocab), merges_json(merges), "", false), std::move(added), nullptr, pre,
                         nullptr, dec),
          config};
}

// A SentencePiece-style BPE vocabulary.
struct SpVocab {
  std::vector<std::string> pieces;  // with "▁"
  std::vector<float> scores;
  std::vector<bool> mergeable;      // may be the result of a merge
  std::int32_t unk = -1, bos = -1, eos = -1;
  std::vector<std::int32_t> specials;  // control pieces and <unk>: special added tokens
  bool dummy_prefix = true;
};

Files sp_files(const SpVocab& v, const Tokenizer& tok, const std::string& source) {
  json vocab = json::object();
  std::unordered_map<std::string, std::int32_t> id_of;
  for (std::size_t i = 0; i < v.pieces.size(); ++i) {
    const std::string& p = v.pieces[i];
    if (!hf::valid_utf8(p))
      throw ConfigError(source + ": piece " + std::to_string(i) + " is not valid UTF-8 (tokenizer.json tokens are text)");
    if (!id_of.emplace(p, static_cast<std::int32_t>(i)).second)
      throw ConfigError(source + ": piece " + std::to_string(i) + " " + json(p).dump() + " is also piece " +
                        std::to_string(id_of[p]) + " (a tokenizer.json vocabulary maps each token to one id)");
    vocab[p] = i;
  }
  struct M {
    float score;
    std::int32_t target;
    std::size_t left_len;
    std::string l, r;
  };
  std::vector<M> ms;
  for (std::size_t t = 0; t < v.pieces.size(); ++t) {
    if (!v.mergeable[t]) continue;
    const std::string& s = v.pieces[t];
    for (std::size_t k = 1; k < s.size(); ++k) {
      const std::string l = s.substr(0, k), r = s.substr(k);
      if (id_of.count(l) && id_of.count(r)) ms.push_back({v.scores[t], static_cast<std::int32_t>(t), k, l, r});
    }
  }
  std::stable_sort(ms.begin(), ms.end(), [](const M& a, const M& b) {
    if (a.score != b.score) return a.score > b.score;
    if (a.target != b.target) return a.target < b.target;
    return a.left_len < b.left_len;
  });
  std::vector<std::pair<std::string, std::string>> merges;
  merges.reserve(ms.size());
  for (auto& m : ms) merges.emplace_back(std::move(m.l), std::move(m.r));

  json added = json::array();
  for (std::int32_t id : v.specials) added.push_back(added_token(v.pieces[static_cast<std::size_t>(id)], id));
  json normalizer = json::array();
  if (v.dummy_prefix) normalizer.push_back({{"type", "Prepend"}, {"prepend", kMeta}});
  normalizer.push_back({{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", kMeta}});
  json decoders = json::array({json{{"type", "Replace"}, {"pattern", {{"String", kMeta}}}, {"content", " "}},
                               json{{"type", "ByteFallback"}}, json{{"type", "Fuse"}}});
  if (v.dummy_prefix) decoders.push_back({{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}});
  const std::int32_t bos = tok.bos_id();
  const json post = bos >= 0 ? bos_template(v.pieces.at(static_cast<std::size_t>(bos)), bos) : json(nullptr);
  json config = {{"tokenizer_class", "PreTrainedTokenizerFast"}, {"add_bos_token", bos >= 0}, {"add_eos_token", false},
                 {"clean_up_tokenization_spaces", false}, {"legacy", true}};
  if (bos >= 0) config["bos_token"] = v.pieces.at(static_cast<std::size_t>(bos));
  if (tok.eos_id() >= 0) config["eos_token"] = v.pieces.at(static_cast<std::size_t>(tok.eos_id()));
  if (v.unk >= 0) config["unk_token"] = v.pieces[static_cast<std::size_t>(v.unk)];
  return {tokenizer_json(bpe_model(std::move(vocab), merges_json(merges), v.unk >= 0 ? v.pieces[static_cast<std::size_t>(v.unk)] : "", true),
                         std::move(added), {{"type", "Sequence"}, {"normalizers", normalizer}}, nullptr, post,
                         {{"type", "Sequence"}, {"decoders", decoders}}),
          config};
}

std::string with_meta(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == ' ')
      out += kMeta;
    else
      out.push_back(c);
  }
  return out;
}

Files llama2c_files(const Tokenizer& tok) {
  const Llama2cVocab* lv = llama2c_vocab(tok);
  if (!lv) throw ConfigError("write_hf_tokenizer: not a llama2c tokenizer");
  const std::string source = tok.describe().value("path", std::string("tokenizer.bin"));
  SpVocab v;
  const std::size_t n = lv->pieces.size();
  v.scores = lv->scores;
  v.mergeable.assign(n, false);
  for (std::size_t i = 0; i < n; ++i) {
    v.pieces.push_back(i == 0 ? "<unk>" : i == 1 ? "<s>" : i == 2 ? "</s>" : with_meta(lv->pieces[i]));
    v.mergeable[i] = i >= 3 && lv->scores[i] > -1e10f;  // run.c's floor; NaN never merges
  }
  v.unk = kLlama2cUnk;
  v.bos = kLlama2cBos;
  v.eos = kLlama2cEos;
  v.specials = {kLlama2cUnk, kLlama2cBos, kLlama2cEos};
  return sp_files(v, tok, source);
}

// The few ModelProto fields sentencepiece_processor.h does not expose: trainer_spec.model_type (2.3) and
// normalizer_spec.name / add_dummy_prefix (3.1 / 3.3). Protobuf wire format; nullopt-free: defaults when absent.
struct SpProtoFacts {
  int model_type = 1;  // UNIGRAM
  std::string normalizer = "nmt_nfkc";
  bool add_dummy_prefix = true;
};

bool read_varint(const std::string& b, std::size_t& off, std::uint64_t& v) {
  v = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (off >= b.size()) return false;
    const auto c = static_cast<unsigned char>(b[off++]);
    v |= static_cast<std::uint64_t>(c & 0x7F) << shift;
    if (c < 0x80) return true;
  }
  return false;
}

// Calls f(field, wire, varint, bytes) for each top-level field of `b`; false on a malformed message.
template <class F>
bool walk_proto(const std::string& b, F&& f) {
  std::size_t off = 0;
  while (off < b.size()) {
    std::uint64_t tag, v = 0;
    if (!read_varint(b, off, tag)) return false;
    const unsigned wire = tag & 7;
    std::string bytes;
    if (wire == 0) {
      if (!read_varint(b, off, v)) return false;
    } else if (wire == 1 || wire == 5) {
      const std::size_t n = wire == 1 ? 8 : 4;
      if (b.size() - off < n) return false;
      off += n;
    } else if (wire == 2) {
      if (!read_varint(b, off, v) || v > b.size() - off) return false;
      bytes = b.substr(off, v);
      off += v;
    } else {
      return false;
    }
    f(tag >> 3, wire, v, bytes);
  }
  return true;
}

SpProtoFacts sp_proto_facts(const std::string& bytes, const std::string& name) {
  SpProtoFacts facts;
  bool ok = walk_proto(bytes, [&](std::uint64_t field, unsigned wire, std::uint64_t, const std::string& sub) {
    if (wire != 2) return;
    if (field == 2)
      walk_proto(sub, [&](std::uint64_t f, unsigned w, std::uint64_t v, const std::string&) {
        if (f == 3 && w == 0) facts.model_type = static_cast<int>(v);
      });
    if (field == 3)
      walk_proto(sub, [&](std::uint64_t f, unsigned w, std::uint64_t v, const std::string& s) {
        if (f == 1 && w == 2) facts.normalizer = s;
        if (f == 3 && w == 0) facts.add_dummy_prefix = v != 0;
      });
  });
  if (!ok) throw InputError(name + ": not a SentencePiece model (malformed protobuf)");
  return facts;
}

Files sentencepiece_files(const Tokenizer& tok) {
  const std::string path = tok.describe().at("model").get<std::string>();
  const std::string bytes = read_file(path);
  const SpProtoFacts facts = sp_proto_facts(bytes, path);
  if (facts.model_type != 2)
    throw ConfigError(path + ": a SentencePiece model of type " +
                      std::string(facts.model_type == 1   ? "unigram"
                                  : facts.model_type == 3 ? "word"
                                  : facts.model_type == 4 ? "char"
                                                          : std::to_string(facts.model_type)) +
                      " cannot be written as a tokenizer.json BPE model (only BPE models can)");
  if (facts.normalizer != "identity")
    throw ConfigError(path + ": SentencePiece normalization rule \"" + facts.normalizer +
                      "\" cannot be written as a tokenizer.json normalizer (only \"identity\" can)");
  sentencepiece::SentencePieceProcessor sp;
  if (!sp.LoadFromSerializedProto(bytes).ok()) throw InputError(path + ": SentencePiece cannot load it");
  SpVocab v;
  const int n = sp.GetPieceSize();
  for (int i = 0; i < n; ++i) {
    v.pieces.push_back(sp.IdToPiece(i));
    v.scores.push_back(sp.GetScore(i));
    const bool special = sp.IsControl(i) || sp.IsUnknown(i);
    v.mergeable.push_back(!special && !sp.IsUnused(i) && !sp.IsByte(i));
    if (special) v.specials.push_back(i);
  }
  v.unk = sp.unk_id();
  v.bos = sp.bos_id();
  v.eos = sp.eos_id();
  v.dummy_prefix = facts.add_dummy_prefix;
  return sp_files(v, tok, path);
}

}  // namespace

void write_hf_tokenizer(const Tokenizer& tok, const fs::path& dir) {
  const std::string type = tok.type();
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw IoError(dir.string() + ": cannot create the folder: " + ec.message());
  if (type == "hf") {
    const fs::path* src = hf_tokenizer_dir(tok);
    if (!src) throw ConfigError("write_hf_tokenizer: the hf tokenizer's folder is unknown");
    if (fs::equivalent(*src, dir, ec)) return;
    for (const char* name : {"tokenizer.json", "tokenizer_config.json", "generation_config.json"})
      if (fs::exists(*src / name, ec)) write_file_atomic(dir / name, read_file(*src / name));
    return;
  }
  Files f;
  if (type == "byte" || type == "gpt2")
    f = byte_level_files(tok);
  else if (type == "llama2c")
    f = llama2c_files(tok);
  else if (type == "sentencepiece")
    f = sentencepiece_files(tok);
  else
    throw ConfigError("write_hf_tokenizer: a \"" + type +
                      "\" tokenizer cannot be written as a Hugging Face tokenizer.json (supported: byte, gpt2, "
                      "llama2c, sentencepiece, hf)");
  write_file_atomic(dir / "tokenizer.json", f.tokenizer.dump(-1, ' ', false) + "\n");
  write_file_atomic(dir / "tokenizer_config.json", f.config.dump(2) + "\n");
}

}  // namespace stretch
