#include "run/train_data.hpp"

#include "core/error.hpp"
#include "run/trainer.hpp"

namespace stretch {

std::unique_ptr<Tokenizer> named_tokenizer(const std::string& name, const std::filesystem::path& bpe_dir) {
  if (name == "byte") return make_byte_tokenizer();
  if (name != "gpt2") throw UsageError("`tokenizer`: expected 'byte' or 'gpt2', got '" + name + "'");
  if (bpe_dir.empty()) throw UsageError("`bpe_dir`: `tokenizer` gpt2 needs the folder of encoder.json and vocab.bpe");
  return load_gpt2_tokenizer(bpe_dir / "encoder.json", bpe_dir / "vocab.bpe");
}

TrainData load_train_data(const TrainOptions& opt, const Tokenizer& tok) {
  const std::filesystem::path cache = opt.cache_dir.empty() ? default_cache_dir() : opt.cache_dir;
  Segmenting seg;
  seg.separator = opt.doc_separator;
  seg.bos = tok.bos_id();
  TrainData d;
  d.train = load_corpus_tokens(opt.text, tok, cache, &d.stats, seg);
  if (!opt.valid_text.empty()) {
    d.val = load_corpus_tokens({opt.valid_text}, tok, cache, nullptr, seg);
  } else {
    const auto n_val = static_cast<std::size_t>(static_cast<double>(d.train.size()) * opt.valid_fraction);
    d.val.assign(d.train.end() - static_cast<long>(n_val), d.train.end());
    d.train.resize(d.train.size() - n_val);
  }
  const int T = opt.model.block_size;
  if (d.train.size() < static_cast<std::size_t>(T) + 1)
    throw InputError((opt.text.size() == 1 ? opt.text[0].string() : std::string("the training corpus")) + ": has " +
                     std::to_string(d.train.size()) + " training tokens; training length " + std::to_string(T) +
                     " needs at least " + std::to_string(T + 1));
  if (d.val.size() < 2)
    throw InputError("validation split has " + std::to_string(d.val.size()) +
                     " tokens; at least 2 are needed (give a longer text, `valid_fraction` or `valid_text`)");
  return d;
}

void draw_windows(const std::vector<std::int32_t>& tokens, int T, int batch, int local, int rank, Rng& rng,
                  std::vector<std::int32_t>& x, std::vector<std::int32_t>& y) {
  const std::size_t range = tokens.size() - static_cast<std::size_t>(T);  // a start in [0, range)
  for (int gb = 0; gb < batch; gb++) {
    const std::size_t s = rng.below(range);
    const int b = gb - rank * local;
    if (b < 0 || b >= local) continue;
    const auto from = tokens.begin() + static_cast<long>(s);
    std::copy(from, from + T, x.begin() + static_cast<long>(b) * T);
    std::copy(from + 1, from + T + 1, y.begin() + static_cast<long>(b) * T);
  }
}

}  // namespace stretch
