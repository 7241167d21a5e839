// Reports of an evaluation sweep: a terminal table, JSON, CSV and a PNG plot drawn by gnuplot
// (perplexity vs length, log-log axes, one line per model, a dashed mark at each model's training length).
#pragma once
#include <filesystem>
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
// Draws the plot with gnuplot into `png` (atomically: a temporary file renamed). IoError when gnuplot is
// missing or fails, with its message.
void plot_png(const SweepReport& s, const std::filesystem::path& png);

}  // namespace stretch
