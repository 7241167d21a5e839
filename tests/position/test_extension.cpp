// Self-Extend and ReRoPE's position maps (position/extension.hpp) by their properties: distances inside the window
// are exact, ReRoPE clamps at w, leaky ReRoPE grows with slope 1/k past w, Self-Extend's grouped distances continue
// from the window (exactly w at the boundary when G divides w) and stay below the trained length up to its reach
// (L - w + floor(w/G)) G tokens, G = 1 is the identity; the text and JSON forms round-trip; bad values are refused naming the flag.
#include <gtest/gtest.h>

#include <cmath>

#include "core/error.hpp"
#include "position/extension.hpp"

namespace stretch {
namespace {

TEST(Extension, ReRopeClampsAndLeakyReRopeHasSlopeOneOverK) {
  const PositionExtension r = PositionExtension::parse_rerope("8", "--rerope");
  const PositionExtension l = PositionExtension::parse_rerope("8,4", "--rerope");
  for (int i = 0; i < 200; i += 7)
    for (int j = 0; j <= i; j++) {
      const double d = i - j;
      EXPECT_DOUBLE_EQ(r.relative(i, j), std::min(d, 8.0)) << i << " " << j;
      EXPECT_NEAR(l.relative(i, j), d < 8 ? d : 8 + (d - 8) / 4, 1e-12) << i << " " << j;
    }
}

TEST(Extension, SelfExtendGroupsDistancesBeyondTheNeighbourWindow) {
  const int L = 64;
  for (auto [G, w] : {std::pair{4, 8}, std::pair{3, 5}, std::pair{1, 6}, std::pair{8, 32}}) {
    const PositionExtension e = PositionExtension::parse_self_extend(std::to_string(G) + "," + std::to_string(w),
                                                                     "--self-extend");
    const int reach = (L - w + w / G) * G;  // (L - w) G + w when G divides w
    for (int i = 0; i < reach; i += 5)
      for (int j = 0; j <= i; j++) {
        const double d = e.relative(i, j);
        if (i - j < w) {
          EXPECT_EQ(d, i - j);
        } else {
          // floor(i/G) - floor(j/G) + w - floor(w/G): between (i-j)/G - 1 and (i-j)/G + 1, shifted
          EXPECT_EQ(d, std::floor(static_cast<double>(i) / G) - std::floor(static_cast<double>(j) / G) + w - w / G);
          EXPECT_GE(d, w - w / G + std::ceil(static_cast<double>(i - j) / G) - 1);
          EXPECT_LT(d, L) << "G " << G << " w " << w << " i " << i << " j " << j << ": past the trained range";
        }
        if (G == 1) {
          EXPECT_EQ(d, i - j);  // G = 1: plain positions
        }
      }
    if (w % G == 0) {
      for (int i = w; i < 100; i++) EXPECT_EQ(e.relative(i, i - w), w) << "G " << G << " i " << i;  // continuous
    }
  }
}

TEST(Extension, TextAndJsonFormsRoundTrip) {
  for (const PositionExtension& e :
       {PositionExtension::parse_self_extend("4,128", "f"), PositionExtension::parse_rerope("256", "f"),
        PositionExtension::parse_rerope("256,16", "f"), PositionExtension{}}) {
    EXPECT_EQ(PositionExtension::from_json(e.to_json(), "test"), e) << e.to_string();
  }
  EXPECT_EQ(PositionExtension::parse_self_extend("4,128", "f").to_string(), "self-extend:4,128");
  EXPECT_EQ(PositionExtension::parse_rerope("256,16", "f").to_string(), "rerope:256,16");
}

TEST(Extension, BadValuesAreRefusedNamingTheFlag) {
  auto refused = [](auto&& fn, const std::string& flag) {
    try {
      fn();
      ADD_FAILURE() << "expected UsageError naming " << flag;
    } catch (const UsageError& e) {
      EXPECT_NE(std::string(e.what()).find(flag), std::string::npos) << e.what();
    }
  };
  refused([] { PositionExtension::parse_self_extend("0,128", "--self-extend"); }, "--self-extend");   // group 0
  refused([] { PositionExtension::parse_self_extend("4,0", "--self-extend"); }, "--self-extend");     // window 0
  refused([] { PositionExtension::parse_self_extend("4", "--self-extend"); }, "--self-extend");
  refused([] { PositionExtension::parse_self_extend("4,1.5", "--self-extend"); }, "--self-extend");
  refused([] { PositionExtension::parse_self_extend("a,b", "--self-extend"); }, "--self-extend");
  refused([] { PositionExtension::parse_rerope("0", "--rerope"); }, "--rerope");
  refused([] { PositionExtension::parse_rerope("8,1", "--rerope"); }, "--rerope");  // leaky k must be > 1
  refused([] { PositionExtension::parse_rerope("8,2,3", "--rerope"); }, "--rerope");
  EXPECT_THROW(PositionExtension::from_json({{"type", "self-extend"}, {"group", 0}, {"window", 8}}, "cfg"), InputError);
  EXPECT_THROW(PositionExtension::from_json({{"type", "yarn"}}, "cfg"), InputError);
}

}  // namespace
}  // namespace stretch
