#include "run/report.hpp"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <cstdio>
#include <fstream>
#include <vector>

#include "core/error.hpp"
#include "core/fs.hpp"

namespace stretch {
namespace fs = std::filesystem;
using json = nlohmann::json;

std::string table_header() {
  char b[256];
  std::snprintf(b, sizeof b, "%-28s %-10s %6s %7s %10s %8s %10s %8s %7s %9s", "model", "position", "L", "length",
                "tokens", "nll", "ppl", "+/-", "bpb", "tok/s");
  return b;
}

std::string table_row(const ModelReport& m, const LengthResult& r) {
  char b[320];
  const double ppl = r.perplexity();
  std::string bpb = m.byte_level ? std::to_string(r.bits_per_byte).substr(0, 6) : "-";
  std::string name = m.name.size() > 28 ? "..." + m.name.substr(m.name.size() - 25) : m.name;
  std::snprintf(b, sizeof b, "%-28s %-10s %6d %7d %10ld %8.4f %10.3f %8.3f %7s %9.0f", name.c_str(),
                m.position.c_str(), m.train_length, r.length, r.tokens, r.mean_nll(), ppl, ppl * r.stderr_nll(),
                bpb.c_str(), r.seconds > 0 ? static_cast<double>(r.tokens) / r.seconds : 0.0);
  return b;
}

json to_json(const SweepReport& s) {
  json models = json::array();
  for (auto& m : s.models) {
    json rows = json::array();
    for (auto& r : m.results) {
      json row = {{"length", r.length},
                  {"tokens", r.tokens},
                  {"nll", r.mean_nll()},
                  {"ppl", r.perplexity()},
                  {"stderr_nll", r.stderr_nll()},
                  {"seconds", r.seconds},
                  {"nll_by_position", r.bucket_nll}};
      if (m.byte_level) row["bits_per_byte"] = r.bits_per_byte;
      rows.push_back(row);
    }
    models.push_back({{"model", m.name},
                      {"position", m.position},
                      {"train_length", m.train_length},
                      {"results", rows}});
  }
  json j = {{"text", s.text}, {"protocol", std::string(to_string(s.protocol))}, {"models", models}};
  if (s.protocol == EvalProtocol::sliding) j["stride"] = s.stride;
  return j;
}

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n\r") == std::string::npos) return s;
  std::string o = "\"";
  for (char ch : s) o += ch == '"' ? std::string("\"\"") : std::string(1, ch);
  return o + "\"";
}

std::string to_csv(const SweepReport& s) {
  std::string out = "model,position,train_length,length,protocol,tokens,nll,ppl,stderr_nll,bits_per_byte,seconds\n";
  char b[512];
  for (auto& m : s.models)
    for (auto& r : m.results) {
      std::snprintf(b, sizeof b, ",%d,%d,%s,%ld,%.6f,%.6f,%.6f,%s,%.3f\n", m.train_length, r.length,
                    std::string(to_string(s.protocol)).c_str(), r.tokens, r.mean_nll(), r.perplexity(),
                    r.stderr_nll(), m.byte_level ? std::to_string(r.bits_per_byte).c_str() : "", r.seconds);
      out += csv_field(m.name) + "," + csv_field(m.position) + b;
    }
  return out;
}

void check_output_path(const fs::path& p, const std::string& flag) {
  const std::string s = p.string();
  for (char c : s)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f)
      throw UsageError(flag + ": the path contains a control character (byte " + std::to_string(static_cast<int>(c)) +
                       "); expected a plain file name");
  std::error_code ec;
  if (fs::is_directory(p, ec)) throw UsageError(flag + ": " + s + " is a folder; expected a file name");
  const fs::path parent = p.has_parent_path() ? p.parent_path() : fs::path(".");
  if (!fs::is_directory(parent, ec))
    throw UsageError(flag + ": the folder " + parent.string() + " does not exist (create it first)");
  if (::access(parent.c_str(), W_OK) != 0)
    throw UsageError(flag + ": the folder " + parent.string() + " is not writable");
}

std::string gnuplot_quote(const std::string& s) {
  std::string o = "'";
  for (char c : s) {
    if (c == '\'') o += "''";
    else if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) o += ' ';
    else o += c;
  }
  return o + "'";
}

void run_gnuplot(const fs::path& png, const std::string& flag,
                 const std::function<std::string(const fs::path& out, const fs::path& dir)>& make_script) {
  check_output_path(png, flag);
  std::error_code tec;
  std::string tmpl = (fs::temp_directory_path(tec) / "stretch-plot-XXXXXX").string();
  if (tec) tmpl = "/tmp/stretch-plot-XXXXXX";
  if (!::mkdtemp(tmpl.data())) throw IoError(flag + ": cannot create a temporary folder: " + std::strerror(errno));
  const fs::path dir(tmpl);
  const fs::path out_tmp = png.parent_path() / ("." + png.filename().string() + ".tmp.png");
  std::string script;
  try {
    script = make_script(out_tmp, dir);
  } catch (...) {
    std::error_code ec;
    fs::remove_all(dir, ec);
    throw;
  }
  const fs::path sp = dir / "plot.gp";
  std::ofstream(sp) << script;
  // gnuplot runs without a shell (posix_spawnp, argv {"gnuplot", script}): no string of the user's is ever
  // parsed as a command; inside the script every string is a single-quoted gnuplot literal (gnuplot_quote)
  std::string output;
  int status = -1;
  bool missing = false;
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) == 0) {
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
    posix_spawn_file_actions_adddup2(&actions, fds[1], STDERR_FILENO);
    const std::string script_path = sp.string();
    char arg0[] = "gnuplot";
    std::vector<char> arg1(script_path.begin(), script_path.end());
    arg1.push_back('\0');
    char* argv[] = {arg0, arg1.data(), nullptr};
    pid_t pid = -1;
    const int err = ::posix_spawnp(&pid, "gnuplot", &actions, nullptr, argv, environ);
    posix_spawn_file_actions_destroy(&actions);
    ::close(fds[1]);
    if (err == 0) {
      std::array<char, 512> buf;
      ssize_t n;
      while ((n = ::read(fds[0], buf.data(), buf.size())) > 0 || (n < 0 && errno == EINTR))
        if (n > 0) output.append(buf.data(), static_cast<std::size_t>(n));
      while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
      }
    } else {
      missing = err == ENOENT;
      output = std::strerror(err);
    }
    ::close(fds[0]);
  }
  std::error_code ec;
  fs::remove_all(dir, ec);
  if (status != 0 || !fs::exists(out_tmp)) {
    fs::remove(out_tmp, ec);
    if (missing) throw IoError(flag + ": gnuplot is not installed (apt-get install gnuplot-nox)");
    throw IoError(flag + ": gnuplot failed: " + output);
  }
  fs::rename(out_tmp, png, ec);
  if (ec) throw IoError(png.string() + ": cannot write the plot: " + ec.message());
}

void plot_png(const SweepReport& s, const fs::path& png) {
  run_gnuplot(png, "`plot`", [&](const fs::path& out, const fs::path& dir) {
    std::string script =
        "set terminal png size 1000,640\n"
        "set output " + gnuplot_quote(out.string()) + "\n"
        "set logscale x 2\nset logscale y\nset grid\nset key top left\n"
        "set xlabel 'evaluation length (tokens)'\nset ylabel 'perplexity'\n"
        "set title " + gnuplot_quote("perplexity vs length (" + std::string(to_string(s.protocol)) + ")") + "\n";
    std::string plot = "plot ";
    for (std::size_t i = 0; i < s.models.size(); i++) {
      const ModelReport& m = s.models[i];
      const fs::path data = dir / ("m" + std::to_string(i) + ".dat");
      std::ofstream d(data);
      for (auto& r : m.results) d << r.length << " " << r.perplexity() << "\n";
      script += "set arrow from " + std::to_string(m.train_length) + ", graph 0 to " +
                std::to_string(m.train_length) + ", graph 1 nohead dashtype 2 linecolor " + std::to_string(i + 1) + "\n";
      plot += (i ? ", " : "") + gnuplot_quote(data.string()) + " using 1:2 with linespoints linewidth 2 linecolor " +
              std::to_string(i + 1) + " title " +
              gnuplot_quote(m.name + " (" + m.position + ", L=" + std::to_string(m.train_length) + ")");
    }
    return script + plot + "\n";
  });
}

}  // namespace stretch
