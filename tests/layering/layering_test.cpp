// The layering of docs/ARCHITECTURE.md, checked on the sources. Each layer is a CMake library linking only the
// layers below it, so a .cpp that calls upward fails to link; but header-only code (the attention kernels, every
// template) links whatever includes it, and nothing else would notice an include running back up. This test reads
// the layer graph from CMakeLists.txt (`stretch_layer(name deps...)` and `target_link_libraries(stretch_name ...)`),
// and fails when:
//   - a file in src/L includes a header of a layer that L does not reach through that graph;
//   - a file in src/L includes a third-party header whose library only a layer out of L's reach links
//     (oneDNN: kernels, MPI: distributed, CLI11: cli, SentencePiece / PCRE2 / zlib / ICU: io);
//   - a layer links another layer that none of its files include (a link that only blurs the graph);
//   - a folder of src/ is not a layer.
// The checker is first shown to find each of these in a small made-up tree.
// A second check: library code (every layer but cli) names option and config fields in its messages, never a
// command-line flag (core/error.hpp's field_ref; cli/field_flags renders them as flags). It fails on a string literal
// outside cli/ holding "--name", outside comments, unless the line says why it may (a note to the user, or another
// tool's flag).
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <cctype>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "test_util.hpp"

namespace stretch {
namespace {

namespace fs = std::filesystem;
using Graph = std::map<std::string, std::set<std::string>>;  // layer -> the layers it links directly

// Plain string parsing, no std::regex: GCC 12's <regex> trips -Wmaybe-uninitialized in the sanitized build.
bool is_name(const std::string& s) {
  return !s.empty() && s.find_first_not_of("abcdefghijklmnopqrstuvwxyz_") == std::string::npos;
}

// The words of every `call(...)` in the CMake text (comment lines skipped), e.g. {"core", "OpenMP::OpenMP_CXX"}.
std::vector<std::vector<std::string>> calls(const std::string& cmake, const std::string& call) {
  std::vector<std::vector<std::string>> out;
  std::istringstream lines(cmake);
  std::string text, line;
  while (std::getline(lines, line)) {
    const std::size_t first = line.find_first_not_of(" \t");
    if (first != std::string::npos && line[first] != '#') text += line + "\n";
  }
  const std::string open = call + "(";
  for (std::size_t at = text.find(open); at != std::string::npos; at = text.find(open, at + 1)) {
    if (at > 0 && (std::isalnum(static_cast<unsigned char>(text[at - 1])) || text[at - 1] == '_')) continue;
    const std::size_t close = text.find(')', at);
    if (close == std::string::npos) break;
    std::istringstream words(text.substr(at + open.size(), close - at - open.size()));
    std::vector<std::string> w;
    for (std::string word; words >> word;) w.push_back(word);
    out.push_back(w);
  }
  return out;
}

// The stretch_* libraries each stretch_* library links, from the CMake text: `stretch_layer(name deps...)` and
// `target_link_libraries(stretch_name PUBLIC|PRIVATE|INTERFACE deps...)`.
Graph parse_layers(const std::string& cmake) {
  Graph g;
  auto add_deps = [&](const std::string& layer, const std::vector<std::string>& w, std::size_t from) {
    auto& deps = g[layer];
    for (std::size_t i = from; i < w.size(); i++)
      if (w[i].rfind("stretch_", 0) == 0 && is_name(w[i].substr(8))) deps.insert(w[i].substr(8));
  };
  for (const auto& w : calls(cmake, "stretch_layer"))
    if (!w.empty() && is_name(w[0])) add_deps(w[0], w, 1);
  for (const auto& w : calls(cmake, "target_link_libraries"))
    if (w.size() >= 2 && w[0].rfind("stretch_", 0) == 0 && is_name(w[0].substr(8)) &&
        (w[1] == "PUBLIC" || w[1] == "PRIVATE" || w[1] == "INTERFACE"))
      add_deps(w[0].substr(8), w, 2);
  return g;
}

// The header an #include line names and its delimiter ('"' or '<'), or {"", 0} for any other line.
std::pair<std::string, char> included(const std::string& line) {
  std::size_t i = line.find_first_not_of(" \t");
  if (i == std::string::npos || line[i] != '#') return {"", 0};
  i = line.find_first_not_of(" \t", i + 1);
  if (i == std::string::npos || line.compare(i, 7, "include") != 0) return {"", 0};
  i = line.find_first_not_of(" \t", i + 7);
  if (i == std::string::npos || (line[i] != '"' && line[i] != '<')) return {"", 0};
  const char close = line[i] == '"' ? '"' : '>';
  const std::size_t end = line.find(close, i + 1);
  if (end == std::string::npos) return {"", 0};
  return {line.substr(i + 1, end - i - 1), line[i]};
}

// Everything `layer` reaches through the graph, itself included.
std::set<std::string> reach(const Graph& g, const std::string& layer) {
  std::set<std::string> seen{layer};
  std::vector<std::string> todo{layer};
  while (!todo.empty()) {
    const std::string l = todo.back();
    todo.pop_back();
    if (auto it = g.find(l); it != g.end())
      for (const auto& d : it->second)
        if (seen.insert(d).second) todo.push_back(d);
  }
  return seen;
}

std::string join(const std::set<std::string>& s) {
  std::string out;
  for (const auto& x : s) out += (out.empty() ? "" : ", ") + x;
  return out;
}

// Third-party headers and the layer whose CMake library links their library.
const std::vector<std::pair<std::string, std::string>> kLibraryHeaders = {
    {"oneapi/dnnl/", "kernels"}, {"dnnl.h", "kernels"},    {"mpi.h", "distributed"}, {"CLI/", "cli"},
    {"sentencepiece", "io"},     {"pcre2.h", "io"},        {"zlib.h", "io"},         {"unicode/", "io"}};

// Every violation in the tree at `root` (CMakeLists.txt and src/), one line each.
std::vector<std::string> layering_violations(const fs::path& root, int* files_scanned = nullptr) {
  std::vector<std::string> bad;
  const Graph g = parse_layers(test::read_text(root / "CMakeLists.txt"));
  std::map<std::string, std::set<std::string>> used;  // layer -> the other layers its files include
  int files = 0;
  for (const auto& dir : fs::directory_iterator(root / "src")) {
    if (!dir.is_directory()) continue;
    const std::string layer = dir.path().filename().string();
    if (!g.count(layer)) {
      bad.push_back("src/" + layer + " is not a layer: no stretch_" + layer + " library in CMakeLists.txt");
      continue;
    }
    const std::set<std::string> allowed = reach(g, layer);
    for (const auto& f : fs::recursive_directory_iterator(dir.path())) {
      const std::string ext = f.path().extension().string();
      if (!f.is_regular_file() || (ext != ".hpp" && ext != ".cpp" && ext != ".h")) continue;
      files++;
      std::istringstream in(test::read_text(f.path()));
      std::string line;
      for (int n = 1; std::getline(in, line); n++) {
        const std::string where = fs::relative(f.path(), root).string() + ":" + std::to_string(n);
        const auto [inc, delim] = included(line);
        if (delim == '"') {
          const std::size_t slash = inc.find('/');
          const std::string to = slash == std::string::npos ? layer : inc.substr(0, slash);
          if (to != layer) used[layer].insert(to);
          if (!allowed.count(to))
            bad.push_back(where + " includes \"" + inc + "\": src/" + layer + " may include " + join(allowed));
        } else if (delim == '<') {
          for (const auto& [prefix, owner] : kLibraryHeaders)
            if (inc.rfind(prefix, 0) == 0 && !allowed.count(owner))
              bad.push_back(where + " includes <" + inc + ">, whose library only stretch_" + owner +
                            " links: src/" + layer + " may include " + join(allowed));
        }
      }
    }
  }
  for (const auto& [layer, deps] : g) {
    if (!fs::is_directory(root / "src" / layer)) continue;
    for (const auto& d : deps)
      if (!used[layer].count(d))
        bad.push_back("stretch_" + layer + " links stretch_" + d + " but no file in src/" + layer +
                      " includes a header of it");
  }
  if (files_scanned) *files_scanned = files;
  return bad;
}

bool mentions(const std::vector<std::string>& v, const std::string& s) {
  for (const auto& x : v)
    if (x.find(s) != std::string::npos) return true;
  return false;
}

std::string lines(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& x : v) out += x + "\n";
  return out;
}

// "src/L/f.cpp:N: --flag" for each string literal of a library layer (not cli) that holds a "--name" (a letter after
// the dashes), outside comments, on a line that does not say it may: "a note to the user" or "its own" (another
// tool's flags, as llama.cpp's).
std::vector<std::string> flags_in_library_messages(const fs::path& root) {
  std::vector<std::string> out;
  for (const auto& dir : fs::directory_iterator(root / "src")) {
    if (!dir.is_directory() || dir.path().filename() == "cli") continue;
    std::vector<fs::path> files;
    for (const auto& f : fs::directory_iterator(dir.path())) files.push_back(f.path());
    std::sort(files.begin(), files.end());
    for (const auto& f : files) {
      std::istringstream text(test::read_text(f));
      std::string line;
      for (int n = 1; std::getline(text, line); n++) {
        if (line.find("a note to the user") != std::string::npos || line.find("its own") != std::string::npos)
          continue;
        bool in_string = false;
        for (std::size_t i = 0; i < line.size(); i++) {
          const char c = line[i];
          if (!in_string && c == '/' && i + 1 < line.size() && line[i + 1] == '/') break;  // a comment
          if (!in_string && c == '\'' ) {  // a character literal
            i += i + 2 < line.size() && line[i + 1] == '\\' ? 3 : 2;
            continue;
          }
          if (in_string && c == '\\') {
            i++;
            continue;
          }
          if (c == '"') in_string = !in_string;
          if (in_string && c == '-' && i + 2 < line.size() && line[i + 1] == '-' && std::islower(static_cast<unsigned char>(line[i + 2])) &&
              (i == 0 || line[i - 1] == ' ' || line[i - 1] == '"' || line[i - 1] == '(')) {
            std::size_t e = i + 2;
            while (e < line.size() && (std::islower(static_cast<unsigned char>(line[e])) || line[e] == '-')) e++;
            out.push_back((fs::relative(f, root)).string() + ":" + std::to_string(n) + ": " + line.substr(i, e - i));
            i = e;
          }
        }
      }
    }
  }
  return out;
}

TEST(Layering, LibraryMessagesNameFieldsNotFlagsShownOnAMadeUpTree) {
  test::TempDir t;
  auto put = [&](const std::string& rel, const std::string& text) {
    fs::create_directories((t.path / rel).parent_path());
    test::write_text(t.path / rel, text);
  };
  put("src/cli/train.cpp", "throw UsageError(\"--steps: expected a count\");\n");
  put("src/run/trainer.cpp",
      "// --steps in a comment\n"
      "throw UsageError(\"`steps`: expected a count\");  // --steps\n"
      "char c = '\"'; auto s = \"a - b -- c\";\n"
      "note(\"continue with --resume\");  // a note to the user, not an error\n"
      "throw UsageError(\"pass --other-base \" + x + \"(--keep N)\");\n");
  put("src/model/gguf.cpp", "throw InputError(\"llama.cpp has its own --grp-attn-n\");\n");
  const auto v = flags_in_library_messages(t.path);
  ASSERT_EQ(v.size(), 2u) << lines(v);
  EXPECT_EQ(v[0], "src/run/trainer.cpp:5: --other-base");
  EXPECT_EQ(v[1], "src/run/trainer.cpp:5: --keep");
}

TEST(Layering, LibraryMessagesNameFieldsNotFlags) {
  const auto v = flags_in_library_messages(STRETCH_SOURCE_DIR);
  EXPECT_TRUE(v.empty()) << "library code names a command-line flag; name the field with field_ref (\"`ctx`\") and "
                            "let cli/field_flags render it:\n" << lines(v);
}

TEST(Layering, TheCheckerFindsEachKindOfViolationInAMadeUpTree) {
  test::TempDir t;
  auto put = [&](const std::string& rel, const std::string& text) {
    fs::create_directories((t.path / rel).parent_path());
    test::write_text(t.path / rel, text);
  };
  put("CMakeLists.txt",
      "function(stretch_layer name)\nendfunction()\n"
      "stretch_layer(core OpenMP::OpenMP_CXX)\nstretch_layer(kernels stretch_core DNNL::dnnl)\n"
      "stretch_layer(io stretch_core)\nstretch_layer(model stretch_kernels stretch_io)\n"
      "add_library(stretch_cli STATIC x.cpp)\ntarget_link_libraries(stretch_cli PUBLIC stretch_model CLI11::CLI11)\n");
  put("src/core/error.hpp", "#pragma once\n#include <string>\n");
  put("src/kernels/matmul.hpp", "#include \"core/error.hpp\"\n#include <oneapi/dnnl/dnnl.hpp>\n");
  put("src/model/model.hpp", "#include \"kernels/matmul.hpp\"\n#include \"model_impl.hpp\"\n");
  put("src/model/model_impl.hpp", "#include \"core/error.hpp\"\n");
  put("src/cli/main.cpp", "#include \"model/model.hpp\"\n#include <CLI/CLI.hpp>\n");
  int files = 0;
  // a clean tree but for model's link to io, which none of its files uses
  auto v = layering_violations(t.path, &files);
  EXPECT_EQ(files, 5);
  ASSERT_EQ(v.size(), 1u) << lines(v);
  EXPECT_TRUE(mentions(v, "stretch_model links stretch_io but no file in src/model")) << lines(v);
  put("src/model/io_use.hpp", "#include \"io/reader.hpp\"\n");
  EXPECT_TRUE(layering_violations(t.path).empty()) << lines(layering_violations(t.path));

  // a header-only kernel reaching up into the model, and one into the command's parser library
  put("src/kernels/attention.hpp", "#pragma once\n  #  include \"model/model.hpp\"\n#include <CLI/CLI.hpp>\n");
  // a sibling: io does not reach kernels
  put("src/io/reader.hpp", "#include \"kernels/matmul.hpp\"\n#include <oneapi/dnnl/dnnl.h>\n#include \"core/error.hpp\"\n");
  // a folder that is no layer
  put("src/tools/x.cpp", "\n");
  v = layering_violations(t.path);
  EXPECT_EQ(v.size(), 5u) << lines(v);
  EXPECT_TRUE(mentions(v, "src/kernels/attention.hpp:2 includes \"model/model.hpp\": src/kernels may include core, "
                          "kernels")) << lines(v);
  EXPECT_TRUE(mentions(v, "src/kernels/attention.hpp:3 includes <CLI/CLI.hpp>, whose library only stretch_cli links"))
      << lines(v);
  EXPECT_TRUE(mentions(v, "src/io/reader.hpp:1 includes \"kernels/matmul.hpp\": src/io may include core, io"))
      << lines(v);
  EXPECT_TRUE(mentions(v, "src/io/reader.hpp:2 includes <oneapi/dnnl/dnnl.h>")) << lines(v);
  EXPECT_TRUE(mentions(v, "src/tools is not a layer")) << lines(v);
}

TEST(Layering, TheSourcesFollowTheLayersOfCMakeLists) {
  const fs::path root = STRETCH_SOURCE_DIR;
  const Graph g = parse_layers(test::read_text(root / "CMakeLists.txt"));
  // the graph of docs/ARCHITECTURE.md, as CMake states it
  const Graph expected = {{"core", {}},
                          {"io", {"core"}},
                          {"kernels", {"core"}},
                          {"position", {"core"}},
                          {"model", {"position", "kernels", "io"}},
                          {"distributed", {"core"}},
                          {"run", {"model", "distributed"}},
                          {"cli", {"run"}}};
  EXPECT_EQ(g, expected);
  int files = 0;
  const auto v = layering_violations(root, &files);
  EXPECT_GT(files, 100);
  EXPECT_TRUE(v.empty()) << lines(v);
}

}  // namespace
}  // namespace stretch
