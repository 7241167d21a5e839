// The extrapolation study in miniature (studies/extrapolation.sh with TINY=1: ALiBi and sinusoidal, 2 layers,
// width 64, L = 64, 300 steps on WikiText-2, evaluated on WikiText-103's validation text up to 16L): the
// expected ordering at 4L. ALiBi at 4L is no worse than at L; sinusoidal is worse at 4L than at L and worse
// than ALiBi there. Rerunning the finished study does nothing (it resumes, and everything is done).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "test_util.hpp"

namespace stretch {
namespace {
using test::TempDir;

double nll_at(const std::filesystem::path& json, int length) {
  auto j = nlohmann::json::parse(test::read_text(json));
  for (auto& r : j["models"][0]["results"])
    if (r["length"] == length) return r["nll"].get<double>();
  ADD_FAILURE() << json << " has no result at length " << length;
  return 0;
}

TEST(Study, TinyExtrapolationStudyShowsTheExpectedOrderingAt4L) {
  if (!std::filesystem::exists(test::shared_data() / "wikitext" / "wikitext-2" / "wiki.train.tokens"))
    GTEST_SKIP() << "needs ../shared/data/wikitext (WikiText-2 train, WikiText-103 valid)";
  TempDir t;
  const std::string cmd = "cd " + test::shell_quote(STRETCH_SOURCE_DIR) + " && TINY=1 THREADS=2 DATA=" +
                          test::shell_quote(test::shared_data().string()) + " STRETCH=" +
                          test::shell_quote(STRETCH_BINARY) + " studies/extrapolation.sh " +
                          test::shell_quote((t / "study").string()) + " > " + test::shell_quote((t / "log").string()) +
                          " 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << test::read_text(t / "log");
  for (const char* p : {"nonoverlapping", "sliding"}) {
    const auto alibi = t / "study" / (std::string("eval-alibi-") + p + ".json");
    const auto sin = t / "study" / (std::string("eval-sinusoidal-") + p + ".json");
    const double a1 = nll_at(alibi, 64), a4 = nll_at(alibi, 256), s1 = nll_at(sin, 64), s4 = nll_at(sin, 256);
    EXPECT_LE(a4, a1 + 0.01) << p << ": ALiBi at 4L " << a4 << " vs at L " << a1;
    EXPECT_GT(s4, s1) << p << ": sinusoidal at 4L " << s4 << " vs at L " << s1;
    EXPECT_LT(a4, s4) << p << ": ALiBi " << a4 << " vs sinusoidal " << s4 << " at 4L";
  }
  // a second run finds everything done
  const auto before = std::filesystem::last_write_time(t / "study" / "eval-alibi-sliding.json");
  ASSERT_EQ(std::system(cmd.c_str()), 0) << test::read_text(t / "log");
  EXPECT_EQ(std::filesystem::last_write_time(t / "study" / "eval-alibi-sliding.json"), before);
  EXPECT_EQ(test::read_text(t / "log").find("== training"), std::string::npos) << test::read_text(t / "log");
}

}  // namespace
}  // namespace stretch
