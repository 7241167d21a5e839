// `stretch import` and `stretch export`: other formats <-> stretch checkpoints (run/checkpoint.hpp).
//   import llama2c MODEL.bin --tokenizer tokenizer.bin|tokenizer.model --out RUN_DIR
//   import gguf MODEL.gguf [--tokenizer ...] --out RUN_DIR     (llama or mpt architecture; the GGUF's
//                  vocabulary becomes RUN_DIR/tokenizer.bin (llama-style), RUN_DIR/encoder.json + vocab.bpe
//                  (gpt2-style BPE) or the byte tokenizer (a gpt2-style vocabulary of the 256 bytes, no merges))
//   export llama2c CHECKPOINT --out MODEL.bin
//   export gguf CHECKPOINT --out MODEL.gguf [--type f32|f16|bf16|q8_0]
//   import hf DIR [--tokenizer TOKDIR] --out RUN_DIR   and   export hf CHECKPOINT --out DIR [--as ...] [--dtype ...]
//                  [--shard-size ...]: Hugging Face folders (cli/convert_hf.cpp, docs/HF.md)
#include <CLI/CLI.hpp>
#include <cstdio>
#include <filesystem>
#include <memory>

#include "cli/commands.hpp"
#include "cli/convert_gguf.hpp"
#include "cli/convert_hf.hpp"
#include "core/error.hpp"
#include "io/gguf.hpp"
#include "io/llama2c.hpp"
#include "io/tokenizer.hpp"
#include "io/tokenizer_llama2c.hpp"
#include "model/gguf_convert.hpp"
#include "model/llama2c_convert.hpp"
#include "run/checkpoint.hpp"
#include "run/run_lock.hpp"

namespace stretch::cli {

namespace fs = std::filesystem;

namespace {
struct ConvertCli {
  std::string format, type = "f32", as = "auto", dtype = "f32", shard_size = "0";
  fs::path input, tokenizer, out;
};

void check_format(const std::string& f) {
  if (f != "llama2c" && f != "gguf" && f != "hf")
    throw UsageError("format: expected 'llama2c', 'gguf' or 'hf', got '" + f + "'");
}

std::unique_ptr<Tokenizer> load_tokenizer_file(const fs::path& path, int vocab_size, const fs::path& model) {
  std::unique_ptr<Tokenizer> tok;
  if (path.extension() == ".model") {
    tok = load_sentencepiece_tokenizer(fs::absolute(path));
  } else {
    tok = load_llama2c_tokenizer(fs::absolute(path), vocab_size);
  }
  if (tok->vocab_size() != vocab_size)
    throw InputError(path.string() + ": has " + std::to_string(tok->vocab_size()) + " tokens, but the model " +
                     model.string() + " has a vocabulary of " + std::to_string(vocab_size));
  return tok;
}

// A GGUF's llama-style vocabulary as llama2.c's tokenizer.bin pieces: SentencePiece's "\u2581" back to " ",
// control pieces (<s>, </s>) wrapped in newlines as llama2.c's export does, so text can never merge into them.
Llama2cVocab vocab_from_gguf(const GgufModel& g, const fs::path& source) {
  if (g.tokens.empty())
    throw InputError(source.string() + ": has no tokenizer.ggml.tokens (pass --tokenizer)");
  Llama2cVocab v;
  for (std::size_t i = 0; i < g.tokens.size(); i++) {
    std::string piece;
    const std::string& t = g.tokens[i];
    for (std::size_t k = 0; k < t.size(); k++) {
      if (t.compare(k, 3, "\xe2\x96\x81") == 0) {
        piece += ' ';
        k += 2;
      } else {
        piece += t[k];
      }
    }
    if (i < g.token_types.size() && g.token_types[i] == 3) piece = "\n" + piece + "\n";
    v.pieces.push_back(piece);
    v.scores.push_back(i < g.scores.size() ? g.scores[i] : 0.0f);
  }
  return v;
}

// A GGUF's tokenizer as one of ours, checked before anything is written.
struct GgufTokenizer {
  enum class Kind { byte, llama2c, gpt2 } kind = Kind::byte;
  Llama2cVocab llama;
  BpeVocab bpe;
};

GgufTokenizer tokenizer_from_gguf(const GgufModel& g, const fs::path& source) {
  const std::string src = source.string();
  GgufTokenizer t;
  if (g.tokenizer_model.empty() && g.tokens.empty())
    throw InputError(src + ": has no tokenizer (tokenizer.ggml.model); pass --tokenizer");
  if (g.tokenizer_model == "llama" || (g.tokenizer_model.empty() && !g.tokens.empty())) {
    t.kind = GgufTokenizer::Kind::llama2c;
    t.llama = vocab_from_gguf(g, source);
    return t;
  }
  if (g.tokenizer_model != "gpt2")
    throw InputError(src + ": tokenizer.ggml.model is \"" + g.tokenizer_model +
                     "\" (supported: llama, gpt2; or pass --tokenizer)");
  t.bpe = BpeVocab{g.tokens, g.merges};
  if (is_byte_vocab(t.bpe)) return t;  // the byte tokenizer: no merges, so the pre-tokenizer does not matter
  if (g.tokenizer_pre != "gpt-2")
    throw InputError(src + ": tokenizer.ggml.pre is \"" + g.tokenizer_pre +
                     "\" (supported for gpt2-style vocabularies with merges: \"gpt-2\", GPT-2's pre-tokenizer)");
  check_gpt2_vocab(t.bpe, src + ": tokenizer.ggml.tokens / merges");
  t.kind = GgufTokenizer::Kind::gpt2;
  return t;
}

}  // namespace

std::uint32_t parse_ggml_type(const std::string& t) {
  if (t == "f32") return ggml_type::F32;
  if (t == "f16") return ggml_type::F16;
  if (t == "bf16") return ggml_type::BF16;
  if (t == "q8_0") return ggml_type::Q8_0;
  throw UsageError("--type: expected f32, f16, bf16 or q8_0, got '" + t + "'");
}

Runner add_import(CLI::App& app) {
  auto o = std::make_shared<ConvertCli>();
  app.add_option("format", o->format, "Input format: llama2c | gguf | hf (a Hugging Face folder)")->required();
  app.add_option("model", o->input,
                 "The model (llama2c: a .bin checkpoint; gguf: a llama- or mpt-architecture .gguf; hf: a folder with "
                 "config.json, the safetensors weights and tokenizer.json)")
      ->required()
      ->check(CLI::ExistingPath);
  app.add_option("--tokenizer", o->tokenizer,
                 "Its tokenizer: llama2.c tokenizer.bin or a SentencePiece .model (needed for llama2c; a GGUF "
                 "carries its own); hf: a folder with tokenizer.json when the model folder has none")
      ->check(CLI::ExistingPath);
  app.add_option("--out", o->out, "Run directory to create (holds checkpoints/step-00000000)")->required();
  return [o]() -> int {
    check_format(o->format);
    std::error_code ec;
    if (fs::exists(o->out / "checkpoints", ec))  // checked again under the lock (NewRunFolder)
      throw UsageError("--out: " + o->out.string() + " already holds a run (checkpoints/); choose another folder");
    if (o->format == "hf") return import_hf(o->input, o->tokenizer, o->out);
    if (fs::is_directory(o->input, ec))
      throw UsageError("model: " + o->input.string() + " is a folder; " + o->format + " models are files");
    if (!o->tokenizer.empty() && fs::is_directory(o->tokenizer, ec))
      throw UsageError("--tokenizer: " + o->tokenizer.string() + " is a folder; expected a tokenizer file");
    if (o->format == "gguf") {
      GgufModel g = model_from_gguf(GgufReader::open(o->input));
      const int V = g.model->config().vocab_size;
      std::unique_ptr<Tokenizer> tok;
      GgufTokenizer gt;
      if (!o->tokenizer.empty()) tok = load_tokenizer_file(o->tokenizer, V, o->input);
      else gt = tokenizer_from_gguf(g, o->input);  // before anything is written
      NewRunFolder out(o->out, "--out");
      if (!tok) {
        switch (gt.kind) {
          case GgufTokenizer::Kind::byte:
            tok = make_byte_tokenizer();
            break;
          case GgufTokenizer::Kind::llama2c:
            out.wrote(o->out / "tokenizer.bin");
            write_llama2c_tokenizer(o->out / "tokenizer.bin", gt.llama);
            tok = load_llama2c_tokenizer(fs::absolute(o->out / "tokenizer.bin"), V);
            break;
          case GgufTokenizer::Kind::gpt2:
            out.wrote(o->out / "encoder.json");
            out.wrote(o->out / "vocab.bpe");
            write_gpt2_files(o->out / "encoder.json", o->out / "vocab.bpe", gt.bpe, o->input.string());
            tok = load_gpt2_tokenizer(o->out / "encoder.json", o->out / "vocab.bpe");
            break;
        }
      }
      TrainState st;
      st.options = {{"imported_from", fs::absolute(o->input).string()}, {"format", "gguf"}};
      save_checkpoint(o->out, *g.model, tok->describe(), g.model->config().block_size, st, 1);  // zero moments
      out.keep();
      const ModelConfig& c = g.model->config();
      std::printf("imported %s: %s (%s), %zu parameters, %d layers, width %d, %d heads (%d kv), vocabulary %d (%s), "
                  "context %d%s\ncheckpoint: %s\n",
                  o->input.c_str(), std::string(to_string(c.arch)).c_str(), std::string(to_string(c.position)).c_str(), g.model->num_parameters(), c.n_layer, c.n_embd, c.n_head, c.kv_heads(), V,
                  tok->type().c_str(), c.block_size, c.rope_scaling.is_none() ? "" : (", rope " + c.rope_scaling.to_string()).c_str(),
                  (o->out / "checkpoints").c_str());
      return 0;
    }
    if (o->tokenizer.empty()) throw UsageError("--tokenizer: a llama2.c checkpoint needs its tokenizer file");
    Llama2cWeights w = read_llama2c(o->input);
    auto model = model_from_llama2c(w);
    std::unique_ptr<Tokenizer> tok = load_tokenizer_file(o->tokenizer, w.config.vocab_size, o->input);
    NewRunFolder out(o->out, "--out");
    TrainState st;
    st.options = {{"imported_from", fs::absolute(o->input).string()}, {"format", "llama2c"}};
    save_checkpoint(o->out, *model, tok->describe(), w.config.seq_len, st, 1);  // zero moments
    out.keep();
    std::printf("imported %s: llama, %zu parameters, %d layers, width %d, %d heads (%d kv), vocabulary %d, trained "
                "length %d, %s classifier\ncheckpoint: %s\n",
                o->input.c_str(), model->num_parameters(), w.config.n_layers, w.config.dim, w.config.n_heads,
                w.config.n_kv_heads, w.config.vocab_size, w.config.seq_len,
                w.config.shared_classifier ? "shared" : "separate", (o->out / "checkpoints").c_str());
    return 0;
  };
}

Runner add_export(CLI::App& app) {
  auto o = std::make_shared<ConvertCli>();
  app.add_option("format", o->format, "Output format: llama2c | gguf (llama.cpp) | hf (a Hugging Face folder)")
      ->required();
  app.add_option("checkpoint", o->input, "Run directory or checkpoint folder")->required();
  app.add_option("--out", o->out, "The file to write (atomically); hf: the folder to create")->required();
  app.add_option("--type", o->type, "gguf: type of the matrices, f32 | f16 | bf16 | q8_0 (norms stay f32)")
      ->capture_default_str();
  app.add_option("--as", o->as,
                 "hf: the transformers class, auto | llama | mistral | qwen2 | gpt2 | mpt | bloom (auto: the one that "
                 "computes this model exactly)")
      ->capture_default_str();
  app.add_option("--dtype", o->dtype, "hf: weights dtype, f32 | f16 | bf16")->capture_default_str();
  app.add_option("--shard-size", o->shard_size, "hf: largest shard, e.g. 2GB (0: one model.safetensors)")
      ->capture_default_str();
  return [o]() -> int {
    check_format(o->format);
    if (o->format == "hf") return export_hf(o->input, o->out, o->as, o->dtype, o->shard_size);
    CheckpointMeta meta = read_checkpoint_meta(o->input);
    auto model = load_model_merged(meta);
    if (o->format == "gguf") {
      const std::uint32_t type = parse_ggml_type(o->type);
      auto tok = tokenizer_from_json(meta.tokenizer, (meta.dir / "config.json").string() + ": tokenizer");
      model_to_gguf(*model, *tok, type).write(o->out);
      std::printf("wrote %s\n", o->out.c_str());
      return 0;
    }
    write_llama2c(o->out, model_to_llama2c(*model));
    std::printf("wrote %s\n", o->out.c_str());
    return 0;
  };
}

}  // namespace stretch::cli
