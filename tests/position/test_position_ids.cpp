// Position-id schemes (position/position_ids.hpp): the values of each scheme, its randomness, the textual and JSON
// forms, and the rejection of bad specs with messages naming the flag.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "core/rng.hpp"
#include "position/position_ids.hpp"

namespace stretch {
namespace {

std::vector<std::int32_t> fill(const PositionIds& s, int B, int T, Rng& rng, int start = 0) {
  std::vector<std::int32_t> p(static_cast<std::size_t>(B) * T, -12345);
  fill_position_ids(s, p.data(), B, T, rng, start);
  return p;
}

PositionIds ids(PositionIdsKind k, int param = 0) {
  PositionIds s;
  s.kind = k;
  s.param = param;
  return s;
}

TEST(PositionIds, PlainCountsFromStart) {
  Rng rng(1);
  const auto before = rng.state();
  for (int start : {0, 5, 1000}) {
    const auto p = fill(ids(PositionIdsKind::plain), 3, 17, rng, start);
    for (int b = 0; b < 3; b++)
      for (int t = 0; t < 17; t++) EXPECT_EQ(p[static_cast<std::size_t>(b) * 17 + t], start + t);
  }
  EXPECT_EQ(rng.state(), before);  // no draws
  EXPECT_FALSE(ids(PositionIdsKind::plain).needs_rng());
}

TEST(PositionIds, ModuloAndRepeatExact) {
  Rng rng(2);
  const auto before = rng.state();
  const int B = 2, T = 40;
  for (int start : {0, 7}) {
    const auto m = fill(ids(PositionIdsKind::modulo, 16), B, T, rng, start);
    const auto r = fill(ids(PositionIdsKind::repeat, 4), B, T, rng, start);
    for (int b = 0; b < B; b++)
      for (int t = 0; t < T; t++) {
        EXPECT_EQ(m[static_cast<std::size_t>(b) * T + t], (start + t) % 16);
        EXPECT_EQ(r[static_cast<std::size_t>(b) * T + t], (start + t) / 4);
      }
  }
  // repeat:4 from 0: 0 0 0 0 1 1 1 1 2 ...
  const auto r = fill(ids(PositionIdsKind::repeat, 4), 1, 9, rng);
  EXPECT_EQ(r, (std::vector<std::int32_t>{0, 0, 0, 0, 1, 1, 1, 1, 2}));
  const auto m = fill(ids(PositionIdsKind::modulo, 3), 1, 7, rng);
  EXPECT_EQ(m, (std::vector<std::int32_t>{0, 1, 2, 0, 1, 2, 0}));
  // modulo:1 and repeat:1 are degenerate but valid
  EXPECT_EQ(fill(ids(PositionIdsKind::modulo, 1), 1, 4, rng), (std::vector<std::int32_t>{0, 0, 0, 0}));
  EXPECT_EQ(fill(ids(PositionIdsKind::repeat, 1), 1, 4, rng), (std::vector<std::int32_t>{0, 1, 2, 3}));
  EXPECT_EQ(rng.state(), before);
  EXPECT_FALSE(ids(PositionIdsKind::modulo, 3).needs_rng());
  EXPECT_FALSE(ids(PositionIdsKind::repeat, 3).needs_rng());
}

TEST(PositionIds, ShiftedPerRowOffsetsInRange) {
  const int B = 64, T = 10, K = 5;
  Rng rng(3);
  const auto s = ids(PositionIdsKind::shifted, K);
  EXPECT_TRUE(s.needs_rng());
  std::set<int> offsets;
  for (int call = 0; call < 4; call++) {
    const auto p = fill(s, B, T, rng, 2);
    for (int b = 0; b < B; b++) {
      const int o = p[static_cast<std::size_t>(b) * T] - 2;
      EXPECT_GE(o, 0);
      EXPECT_LE(o, K);
      offsets.insert(o);
      for (int t = 0; t < T; t++) EXPECT_EQ(p[static_cast<std::size_t>(b) * T + t], 2 + t + o);
    }
  }
  // 256 draws from 6 values: every offset, both ends included, appears
  EXPECT_EQ(offsets.size(), 6u);
  // rows differ (per-row offsets), and the same Rng state gives the same ids
  Rng a(9), b(9);
  const auto pa = fill(s, B, T, a), pb = fill(s, B, T, b);
  EXPECT_EQ(pa, pb);
  std::set<int> firsts;
  for (int r = 0; r < B; r++) firsts.insert(pa[static_cast<std::size_t>(r) * T]);
  EXPECT_GT(firsts.size(), 1u);
}

TEST(PositionIds, RandomizedSortedDistinctSharedAndFresh) {
  const int B = 3, T = 50, N = 200;
  Rng rng(4);
  const auto s = ids(PositionIdsKind::randomized, N);
  EXPECT_TRUE(s.needs_rng());
  std::vector<std::vector<std::int32_t>> calls;
  std::vector<int> hits(N, 0);
  for (int call = 0; call < 200; call++) {
    const auto p = fill(s, B, T, rng);
    for (int t = 0; t < T; t++) {
      EXPECT_GE(p[t], 0);
      EXPECT_LT(p[t], N);
      if (t > 0) {
        EXPECT_LT(p[t - 1], p[t]);  // strictly increasing
      }
      hits[p[t]]++;
    }
    for (int b = 1; b < B; b++)  // one subset shared by all rows
      EXPECT_TRUE(std::equal(p.begin(), p.begin() + T, p.begin() + static_cast<std::ptrdiff_t>(b) * T));
    calls.emplace_back(p.begin(), p.begin() + T);
  }
  EXPECT_NE(calls[0], calls[1]);  // different across calls
  // roughly uniform: each position is chosen with probability T/N = 1/4, expected 50 hits in 200 calls (sd ~6)
  for (int i = 0; i < N; i++) {
    EXPECT_GT(hits[i], 20) << i;
    EXPECT_LT(hits[i], 85) << i;
  }
  // T == N is the identity; huge N works without O(N) memory
  const auto full = fill(ids(PositionIdsKind::randomized, 6), 1, 6, rng);
  EXPECT_EQ(full, (std::vector<std::int32_t>{0, 1, 2, 3, 4, 5}));
  const auto big = fill(ids(PositionIdsKind::randomized, 2000000000), 2, 1000, rng);
  EXPECT_TRUE(std::is_sorted(big.begin(), big.begin() + 1000));
  EXPECT_EQ(std::set<int>(big.begin(), big.begin() + 1000).size(), 1000u);
  EXPECT_GT(big[999], 1000000);
  // T > N is an error, start is ignored
  std::vector<std::int32_t> p(10);
  EXPECT_THROW(fill_position_ids(ids(PositionIdsKind::randomized, 9), p.data(), 1, 10, rng), ConfigError);
  Rng a(5), b(5);
  EXPECT_EQ(fill(s, 1, T, a, 0), fill(s, 1, T, b, 100));
}

TEST(PositionIds, InvalidShapesAndOverflowRejected) {
  Rng rng(6);
  std::vector<std::int32_t> p(4);
  EXPECT_THROW(fill_position_ids(ids(PositionIdsKind::plain), p.data(), -1, 4, rng), ConfigError);
  EXPECT_THROW(fill_position_ids(ids(PositionIdsKind::plain), p.data(), 1, 4, rng, -1), ConfigError);
  EXPECT_THROW(fill_position_ids(ids(PositionIdsKind::plain), p.data(), 1, 4, rng, 2147483646), ConfigError);
  EXPECT_THROW(fill_position_ids(ids(PositionIdsKind::shifted, 2147483647), p.data(), 1, 4, rng), ConfigError);
  EXPECT_THROW(fill_position_ids(ids(PositionIdsKind::modulo, 0), p.data(), 1, 4, rng), ConfigError);
  fill_position_ids(ids(PositionIdsKind::plain), p.data(), 0, 4, rng);  // empty: no-op
  fill_position_ids(ids(PositionIdsKind::randomized, 3), p.data(), 1, 0, rng);
}

TEST(PositionIds, ParseToStringRoundTrip) {
  for (const char* spec : {"plain", "shifted:1024", "randomized:2048", "modulo:512", "repeat:4", "shifted:1"}) {
    const auto s = PositionIds::parse(spec, "--position-ids");
    EXPECT_EQ(s.to_string(), spec);
    EXPECT_EQ(PositionIds::parse(s.to_string(), "--x"), s);
    EXPECT_EQ(PositionIds::from_json(s.to_json(), "options.json"), s);
  }
  const auto r = PositionIds::parse("randomized:2048", "--position-ids");
  EXPECT_EQ(r.kind, PositionIdsKind::randomized);
  EXPECT_EQ(r.param, 2048);
  EXPECT_EQ(r.to_json(), (nlohmann::json{{"kind", "randomized"}, {"param", 2048}}));
  EXPECT_EQ(PositionIds{}.to_json(), (nlohmann::json{{"kind", "plain"}}));
}

TEST(PositionIds, BadSpecsRejectedNamingTheFlag) {
  for (const char* spec : {"randomized:0", "modulo:x", "foo", "", "shifted", "repeat:", "repeat:-2", "modulo:3x",
                           "plain:3", "randomized:99999999999", "Plain", "modulo: 3"}) {
    try {
      PositionIds::parse(spec, "--position-ids");
      ADD_FAILURE() << "accepted '" << spec << "'";
    } catch (const ConfigError& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find("--position-ids"), std::string::npos) << msg;
      EXPECT_NE(msg.find("randomized:N"), std::string::npos) << msg;  // lists the valid forms
      EXPECT_NE(msg.find(std::string("'") + spec + "'"), std::string::npos) << msg;
    }
  }
}

TEST(PositionIds, BadJsonRejectedNamingTheSource) {
  const nlohmann::json bad[] = {nlohmann::json::array(),
                                {{"kind", "foo"}, {"param", 3}},
                                {{"kind", "modulo"}},
                                {{"kind", "modulo"}, {"param", "3"}},
                                {{"kind", "modulo"}, {"param", 0}},
                                {{"kind", "plain"}, {"param", 4}},
                                {{"kind", 3}}};
  for (const auto& j : bad) {
    try {
      PositionIds::from_json(j, "run/options.json: field 'position_ids'");
      ADD_FAILURE() << "accepted " << j.dump();
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find("run/options.json"), std::string::npos) << e.what();
    }
  }
}

}  // namespace
}  // namespace stretch
