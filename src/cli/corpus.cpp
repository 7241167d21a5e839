// `stretch corpus`: writes a built-in corpus to a text file. Today: janeausten, Jane Austen's six novels read
// from the data folder of Debian's r-cran-janeaustenr (no R needed).
#include <CLI/CLI.hpp>
#include <cstdio>
#include <memory>

#include "cli/commands.hpp"
#include "core/error.hpp"
#include "core/fs.hpp"
#include "io/rdata.hpp"

namespace stretch::cli {

Runner add_corpus(CLI::App& app) {
  auto name = std::make_shared<std::string>();
  auto data_dir = std::make_shared<std::filesystem::path>("/usr/lib/R/site-library/janeaustenr/data");
  auto out = std::make_shared<std::filesystem::path>();
  app.add_option("name", *name, "Corpus name: janeausten")->required();
  app.add_option("--data-dir", *data_dir, "janeaustenr's data folder (holding Rdata.rdb and Rdata.rdx)")
      ->capture_default_str();
  app.add_option("--out", *out, "Text file to write")->required();
  return [=]() -> int {
    if (*name != "janeausten") throw UsageError("corpus: unknown corpus '" + *name + "' (expected: janeausten)");
    const std::string text = janeausten_text(*data_dir);
    write_file_atomic(*out, text);
    std::printf("wrote %s: %zu bytes of Jane Austen's novels\n", out->c_str(), text.size());
    return 0;
  };
}

}  // namespace stretch::cli
