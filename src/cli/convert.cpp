// `stretch import` and `stretch export`: other formats <-> stretch checkpoints (run/checkpoint.hpp).
//   import llama2c MODEL.bin --tokenizer tokenizer.bin|tokenizer.model --out RUN_DIR
//   export llama2c CHECKPOINT --out MODEL.bin
#include <CLI/CLI.hpp>
#include <cstdio>
#include <filesystem>
#include <memory>

#include "cli/commands.hpp"
#include "core/error.hpp"
#include "io/llama2c.hpp"
#include "io/tokenizer.hpp"
#include "io/tokenizer_llama2c.hpp"
#include "model/llama2c_convert.hpp"
#include "run/checkpoint.hpp"

namespace stretch::cli {

namespace fs = std::filesystem;

namespace {
struct ConvertCli {
  std::string format;
  fs::path input, tokenizer, out;
};

void check_format(const std::string& f) {
  if (f != "llama2c") throw UsageError("format: expected 'llama2c', got '" + f + "' (GGUF is planned)");
}
}  // namespace

Runner add_import(CLI::App& app) {
  auto o = std::make_shared<ConvertCli>();
  app.add_option("format", o->format, "Input format: llama2c")->required();
  app.add_option("model", o->input, "The model file (llama2c: a .bin checkpoint)")->required()->check(CLI::ExistingFile);
  app.add_option("--tokenizer", o->tokenizer,
                 "Its tokenizer: llama2.c tokenizer.bin or a SentencePiece .model")
      ->required()
      ->check(CLI::ExistingFile);
  app.add_option("--out", o->out, "Run directory to create (holds checkpoints/step-00000000)")->required();
  return [o]() -> int {
    check_format(o->format);
    std::error_code ec;
    if (fs::exists(o->out / "checkpoints", ec))
      throw UsageError("--out: " + o->out.string() + " already holds a run (checkpoints/); choose another folder");
    Llama2cWeights w = read_llama2c(o->input);
    auto model = model_from_llama2c(w);
    std::unique_ptr<Tokenizer> tok;
    if (o->tokenizer.extension() == ".model") {
      tok = load_sentencepiece_tokenizer(fs::absolute(o->tokenizer));
      if (tok->vocab_size() != w.config.vocab_size)
        throw InputError(o->tokenizer.string() + ": has " + std::to_string(tok->vocab_size()) +
                         " tokens, but the model " + o->input.string() + " has a vocabulary of " +
                         std::to_string(w.config.vocab_size));
    } else {
      tok = load_llama2c_tokenizer(fs::absolute(o->tokenizer), w.config.vocab_size);
    }
    fs::create_directories(o->out, ec);
    if (ec) throw IoError(o->out.string() + ": cannot create the run directory: " + ec.message());
    TrainState st;
    st.options = {{"imported_from", fs::absolute(o->input).string()}, {"format", "llama2c"}};
    Buffer<float> m(model->params().size()), v(model->params().size());
    save_checkpoint(o->out, *model, tok->describe(), w.config.seq_len, st, m, v, 1);
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
  app.add_option("format", o->format, "Output format: llama2c")->required();
  app.add_option("checkpoint", o->input, "Run directory or checkpoint folder")->required();
  app.add_option("--out", o->out, "The file to write (atomically)")->required();
  return [o]() -> int {
    check_format(o->format);
    CheckpointMeta meta = read_checkpoint_meta(o->input);
    auto model = load_model(meta);
    write_llama2c(o->out, model_to_llama2c(*model));
    std::printf("wrote %s\n", o->out.c_str());
    return 0;
  };
}

}  // namespace stretch::cli
