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
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "test_util.hpp"

namespace stretch {
namespace {

namespace fs = std::filesystem;
using Graph = std::map<std::string, std::set<std::string>>;  // layer -> the layers it links directly

// The stretch_* libraries each stretch_* library links, from the CMake text.
Graph parse_layers(const std::string& cmake) {
  Graph g;
  auto deps_of = [](const std::string& args) {
    std::set<std::string> d;
    static const std::regex dep(R"(\bstretch_([a-z_]+))");
    for (std::sregex_iterator it(args.begin(), args.end(), dep), end; it != end; ++it) d.insert((*it)[1]);
    return d;
  };
  static const std::regex layer(R"(\bstretch_layer\(\s*([a-z_]+)([^)]*)\))");
  for (std::sregex_iterator it(cmake.begin(), cmake.end(), layer), end; it != end; ++it) {
    const std::string name = (*it)[1];
    if (name == "name") continue;  // the function's own definition
    auto d = deps_of((*it)[2]);
    g[name].insert(d.begin(), d.end());
  }
  static const std::regex link(R"(\btarget_link_libraries\(\s*stretch_([a-z_]+)\s+(?:PUBLIC|PRIVATE|INTERFACE)([^)]*)\))");
  for (std::sregex_iterator it(cmake.begin(), cmake.end(), link), end; it != end; ++it) {
    auto d = deps_of((*it)[2]);
    g[(*it)[1]].insert(d.begin(), d.end());
  }
  return g;
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
  static const std::regex quoted(R"(^\s*#\s*include\s*"([^"]+)\")");
  static const std::regex angled(R"(^\s*#\s*include\s*<([^>]+)>)");
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
        std::smatch m;
        if (std::regex_search(line, m, quoted)) {
          const std::string inc = m[1];
          const std::size_t slash = inc.find('/');
          const std::string to = slash == std::string::npos ? layer : inc.substr(0, slash);
          if (to != layer) used[layer].insert(to);
          if (!allowed.count(to))
            bad.push_back(where + " includes \"" + inc + "\": src/" + layer + " may include " + join(allowed));
        } else if (std::regex_search(line, m, angled)) {
          const std::string inc = m[1];
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
