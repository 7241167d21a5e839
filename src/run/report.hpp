// Reports of an evaluation sweep: a terminal table, JSON, CSV and a PNG plot drawn by gnuplot
// (perplexity vs length, log-log axes, one line per model, a dashed mark at each model's training length).
#pragma once
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "run/evaluator.hpp"

namespace stretch {

struct ModelReport {
  std::string name;        // as given on the command line
  std::string position;    // position method
  int train_length = 0;
  bool byte_level = false;
  std::vector<LengthResult> results;
};

struct SweepReport {
  std::string text;
  EvalProtocol protocol = EvalProtocol::nonoverlapping;
  int stride = 0;
  std::vector<ModelReport> models;
};

std::string table_header();
std::string table_row(const ModelReport& m, const LengthResult& r);
nlohmann::json to_json(const SweepReport& s);
std::string to_csv(const SweepReport& s);
// A CSV field: as it is, or in double quotes with quotes doubled when it holds a comma, quote or line break
// (RFC 4180), so a run folder named a,b"c stays one column.
std::string csv_field(const std::string& s);
// Refuses (UsageError naming `flag`) an output path that could not be written: a control character in it (a
// newline in a name reaching a gnuplot script was a way to run commands), a path that is a folder, a folder that
// does not exist or is not writable. Commands check --json / --csv / --plot with it before any work, so a long
// evaluation never ends in a failed write.
void check_output_path(const std::filesystem::path& p, const std::string& flag);
// Draws the plot with gnuplot into `png` (atomically: a temporary file renamed). IoError when gnuplot is
// missing or fails, with its message.
void plot_png(const SweepReport& s, const std::filesystem::path& png);

// The gnuplot string literal of s: single-quoted, a quote doubled (gnuplot's escape inside '...'), control
// characters (a newline would end the script's line) replaced by spaces. Every string that reaches a script
// goes through it; no string reaches a shell: gnuplot is started with posix_spawnp, its arguments being only the
// path of the script in a fresh mkdtemp folder. Gnuplot expands neither backquotes nor @macros inside '...'.
std::string gnuplot_quote(const std::string& s);
// Draws a PNG with gnuplot: make_script(out, dir) writes any data files into the temporary folder `dir` and
// returns the script, which must draw into `out` (a temporary beside png, renamed to png when gnuplot succeeds).
// IoError naming `flag` when gnuplot is missing or fails (with its message).
void run_gnuplot(const std::filesystem::path& png, const std::string& flag,
                 const std::function<std::string(const std::filesystem::path& out, const std::filesystem::path& dir)>&
                     make_script);

}  // namespace stretch
